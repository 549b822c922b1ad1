output "project_id" {
  description = "ID of the Azure DevOps project."
  value       = azuredevops_project.this.id
}

output "repository_url" {
  description = "HTTPS clone URL of the repository."
  value       = azuredevops_git_repository.this.remote_url
}

output "service_connection_id" {
  description = "ID of the Azure service connection."
  value       = azuredevops_serviceendpoint_azurerm.this.id
}

output "service_connection_name" {
  description = "Name of the Azure service connection."
  value       = azuredevops_serviceendpoint_azurerm.this.service_endpoint_name
}

output "workload_identity_federation_issuer" {
  description = "OIDC issuer of the service connection (for the federated credential)."
  value       = azuredevops_serviceendpoint_azurerm.this.workload_identity_federation_issuer
}

output "workload_identity_federation_subject" {
  description = "OIDC subject of the service connection (for the federated credential)."
  value       = azuredevops_serviceendpoint_azurerm.this.workload_identity_federation_subject
}

output "variable_group_id" {
  description = "ID of the variable group."
  value       = azuredevops_variable_group.this.id
}

output "build_definition_ids" {
  description = "Build definition IDs keyed like var.pipelines."
  value       = { for key, definition in azuredevops_build_definition.this : key => definition.id }
}

output "environment_ids" {
  description = "Environment IDs keyed like var.environments."
  value       = { for key, environment in azuredevops_environment.this : key => environment.id }
}
