module "devops" {
  source = "./modules/devops"

  project_name            = local.names.ado_project
  repository_name         = var.ado_repository_name
  repository_import_url   = var.ado_repository_import_url
  default_branch          = var.ado_default_branch
  variable_group_name     = local.names.variable_group
  pipeline_variables      = local.pipeline_variables
  pipelines               = local.pipelines
  environments            = local.ado_environments
  production_approver_ids = var.ado_production_approver_ids
  product_pipelines       = var.ado_product_pipelines

  branch_policy = {
    enabled             = var.ado_branch_policies_enabled
    minimum_reviewers   = var.ado_minimum_reviewers
    allow_self_approval = var.ado_allow_self_approval
  }

  service_connection = {
    name              = local.names.service_connection
    tenant_id         = data.azurerm_client_config.current.tenant_id
    subscription_id   = var.subscription_id
    subscription_name = data.azurerm_subscription.current.display_name
    client_id         = azurerm_user_assigned_identity.pipeline.client_id
  }
}
