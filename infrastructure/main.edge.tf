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

# ---------------------------------------------------------------------------------------------
# Registry password rotation (modules/edge/locals.tf): a new password every
# edge_registry_password_rotation_days, alternately in two tokens, each valid for two periods.
# Two pipeline schedules carry it, read here from the pipelines themselves: the IaC pipeline's
# scheduled plan and apply creates the new password and points the key vault secret at it, and
# the edge deployment pipeline's scheduled run re-reads the secret into a new deployment, because
# edgeAgent pulls with the registryCredentials of its desired properties
# (https://learn.microsoft.com/azure/iot-edge/module-composition). A schedule runs only when its
# `always` is true if nothing was committed since its last run
# (https://learn.microsoft.com/azure/devops/pipelines/yaml-schema/schedules-cron).
# In the worst case the new password reaches the devices
#   gap(iac) + allowance + gap(edge) + allowance
# days after its generation starts, and the previous one expires one period after that start.
# The precondition on output edge_registry_password_rotation keeps margin_days in between.
# ---------------------------------------------------------------------------------------------

locals {
  edge_password_schedules = {
    iac  = lookup(yamldecode(file("${path.module}/../ado_pipelines/iac_pipeline.yml")), "schedules", [])
    edge = lookup(yamldecode(file("${path.module}/../ado_pipelines/edge_deployment_pipeline.yml")), "schedules", [])
  }
  # The longest time between two runs of each pipeline's single schedule, in days: daily
  # ("m h * * *"), weekly ("m h * * d") or monthly on a day that every month has ("m h d * *",
  # d <= 28); null for anything else, or for a schedule that could skip runs or another branch.
  edge_password_schedule_gap_days = {
    for pipeline, schedules in local.edge_password_schedules : pipeline => (
      length(schedules) != 1 ? null :
      lookup(schedules[0], "always", false) != true ? null :
      !anytrue([for branch in lookup(lookup(schedules[0], "branches", {}), "include", []) : contains([var.ado_default_branch, trimprefix(var.ado_default_branch, "refs/heads/")], branch)]) ? null :
      can(regex("^[0-9]{1,2} [0-9]{1,2} \\* \\* \\*$", schedules[0].cron)) ? 1 :
      can(regex("^[0-9]{1,2} [0-9]{1,2} \\* \\* [0-6]$", schedules[0].cron)) ? 7 :
      can(regex("^[0-9]{1,2} [0-9]{1,2} ([1-9]|1[0-9]|2[0-8]) \\* \\*$", schedules[0].cron)) ? 31 : null
    )
  }
  edge_password_schedules_valid = alltrue([for gap in values(local.edge_password_schedule_gap_days) : gap != null])
  # Days from the start of a generation until its password is on every device, at the latest.
  edge_password_days_to_devices = local.edge_password_schedules_valid ? (
    local.edge_password_schedule_gap_days.iac + local.edge_password_schedule_gap_days.edge
    + 2 * var.edge_registry_rollout_allowance_days
  ) : null
}
