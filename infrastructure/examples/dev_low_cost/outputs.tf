output "pipeline_variables" {
  description = "Names for the Azure DevOps variable group and the local .env."
  value       = module.platform.pipeline_variables
}

output "ado_repository_url" {
  description = "Push this template here to run the pipelines."
  value       = module.platform.ado_repository_url
}
