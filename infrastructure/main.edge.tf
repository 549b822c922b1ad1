module "edge" {
  source = "./modules/edge"

  iothub_name                            = local.names.iothub
  dps_name                               = local.names.dps
  location                               = azurerm_resource_group.this.location
  resource_group_name                    = azurerm_resource_group.this.name
  tags                                   = local.tags
  dps_enabled                            = var.dps_enabled
  container_registry_name                = azurerm_container_registry.this.name
  container_registry_resource_group_name = azurerm_resource_group.this.name
  registry_token_name                    = local.names.edge_registry_token
  image_repositories                     = var.edge_image_repositories
  password_rotation_days                 = var.edge_registry_password_rotation_days
  key_vault_id                           = azurerm_key_vault.this.id
  password_secret_name                   = local.names.edge_registry_kv_name

  iothub_sku = {
    name     = var.iothub_sku_name
    capacity = var.iothub_capacity
  }

  # Terraform needs its data-plane role on the vault, propagated, before it writes the secret.
  depends_on = [time_sleep.key_vault_rbac]
}

# ---------------------------------------------------------------------------------------------
# The edge pipeline builds the module images with ACR Tasks (`az acr build`). AcrPush is a data
# plane role and has none of the management actions a quick build calls: upload the source
# (listBuildSourceUploadUrl), queue the run (scheduleRun), follow it (runs/read) and stream its
# log (runs/listLogSasUrl) (https://learn.microsoft.com/azure/container-registry/container-registry-roles,
# https://learn.microsoft.com/azure/container-registry/container-registry-tasks-overview#quick-task).
# The built-in "Container Registry Tasks Contributor" would also let the pipeline create and edit
# tasks, which run with registry-wide rights; this custom role grants only the quick build.
# ---------------------------------------------------------------------------------------------

resource "azurerm_role_definition" "acr_quick_build" {
  name        = "ACR quick build (${azurerm_container_registry.this.name})"
  scope       = azurerm_container_registry.this.id
  description = "Run ACR Tasks quick builds (az acr build) in one registry and read their logs; no task definitions."

  permissions {
    actions = [
      "Microsoft.ContainerRegistry/registries/read",
      "Microsoft.ContainerRegistry/registries/listBuildSourceUploadUrl/action",
      "Microsoft.ContainerRegistry/registries/scheduleRun/action",
      "Microsoft.ContainerRegistry/registries/runs/read",
      "Microsoft.ContainerRegistry/registries/runs/listLogSasUrl/action",
    ]
    not_actions = []
  }

  assignable_scopes = [azurerm_container_registry.this.id]
}

resource "azurerm_role_assignment" "pipeline_acr_quick_build" {
  scope              = azurerm_container_registry.this.id
  role_definition_id = azurerm_role_definition.acr_quick_build.role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.pipeline.principal_id
  principal_type     = "ServicePrincipal"
  description        = "The edge pipeline builds the module images with az acr build (ACR Tasks)."
}

# ---------------------------------------------------------------------------------------------
# How many superseded layered deployments the edge pipeline keeps per platform and environment
# (its rollback targets; EDGE_DEPLOYMENTS_TO_KEEP in the variable group). A hub holds at most 100
# configurations, the free tier 10 (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling).
# At the peak of a rollout the pipeline holds, for E environments and P platforms,
# E + 1 base deployments (the new base of one environment beside the one it supersedes) and
# E * P * (keep + 1) layered ones: with 2 environments and 2 platforms the free tier allows keep = 0
# (the precondition on output edge_deployments_to_keep stops a plan that would exceed the tier).
# ---------------------------------------------------------------------------------------------

locals {
  iothub_max_configurations = {
    F1 = 10
    S1 = 100
    S2 = 100
    S3 = 100
  }
  edge_deployments_to_keep = var.edge_deployments_to_keep
  # Environments and platforms the edge pipeline rolls out to (the platforms are read from the
  # pipeline itself, so the two cannot drift apart).
  edge_rollout_environments = length(local.ado_environments)
  edge_rollout_platforms    = length(yamldecode(file("${path.module}/../ado_pipelines/edge_deployment_pipeline.yml")).extends.parameters.platforms)
  edge_peak_configurations  = local.edge_rollout_environments + 1 + local.edge_rollout_environments * local.edge_rollout_platforms * (local.edge_deployments_to_keep + 1)
}
