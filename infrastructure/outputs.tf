# Every name the rest of the repository reads. `pipeline_variables` is the contract: it fills the
# Azure DevOps variable group and, through scripts/write_env.py, the local .env; the keys are
# listed in testing/integration/infrastructure/contract.py.

output "pipeline_variables" {
  description = "Non-secret names read by the pipelines, the Azure ML jobs and the ppe CLI (map of string)."
  value       = local.pipeline_variables
}

output "resource_group_name" {
  description = "Resource group that holds every Azure resource of the platform."
  value       = azurerm_resource_group.this.name
}

output "aml_workspace_name" {
  description = "Azure ML workspace name."
  value       = module.aml.workspace_name
}

output "aml_workspace_id" {
  description = "Azure ML workspace resource ID."
  value       = module.aml.workspace_id
}

output "aml_gpu_cluster_name" {
  description = "GPU compute cluster name."
  value       = module.aml.gpu_cluster_name
}

output "aml_cpu_cluster_name" {
  description = "CPU compute cluster name."
  value       = module.aml.cpu_cluster_name
}

output "aml_compute_identity_client_id" {
  description = "Client ID of the identity the clusters run as (for DefaultAzureCredential inside jobs)."
  value       = module.aml.compute_identity_client_id
}

output "container_registry_login_server" {
  description = "Login server of the container registry (<name>.azurecr.io)."
  value       = azurerm_container_registry.this.login_server
}

output "key_vault_name" {
  description = "Key vault name."
  value       = azurerm_key_vault.this.name
}

output "storage_account_name" {
  description = "Storage account behind the default datastore."
  value       = azurerm_storage_account.this.name
}

output "iothub_name" {
  description = "IoT Hub name."
  value       = module.edge.iothub_name
}

output "iothub_hostname" {
  description = "IoT Hub host name."
  value       = module.edge.iothub_hostname
}

output "dps_name" {
  description = "Name of the Device Provisioning Service (null unless dps_enabled)."
  value       = module.edge.dps_name
}

output "dps_id_scope" {
  description = "ID scope of the Device Provisioning Service (null unless dps_enabled)."
  value       = module.edge.dps_id_scope
}

output "edge_registry_token_name" {
  description = "User name of the edge devices' pull-only registry token."
  value       = module.edge.registry_token_name
}

output "edge_registry_password_secret_name" {
  description = "Key vault secret that holds the edge registry token password."
  value       = module.edge.registry_password_secret_name
}

output "pipeline_identity_client_id" {
  description = "Client ID of the managed identity behind the Azure DevOps service connection."
  value       = azurerm_user_assigned_identity.pipeline.client_id
}

output "ado_project_id" {
  description = "Azure DevOps project ID."
  value       = module.devops.project_id
}

output "ado_repository_url" {
  description = "Clone URL of the Azure Repos repository (push this template there)."
  value       = module.devops.repository_url
}

output "ado_service_connection_name" {
  description = "Name of the Azure service connection the pipelines use."
  value       = module.devops.service_connection_name
}

output "ado_build_definition_ids" {
  description = "Build definition IDs keyed ci, iac, model_training, edge_deployment."
  value       = module.devops.build_definition_ids
}

# ---------------------------------------------------------------------------------------------
# Edge delivery and alerts (main.edge.tf, main.alerts.tf)
# ---------------------------------------------------------------------------------------------

output "edge_deployments_to_keep" {
  description = "Superseded layered deployments the edge pipeline keeps per platform and environment (EDGE_DEPLOYMENTS_TO_KEEP)."
  value       = local.edge_deployments_to_keep

  precondition {
    condition     = local.edge_peak_configurations <= local.iothub_max_configurations[var.iothub_sku_name]
    error_message = "edge_deployments_to_keep is too large for the IoT Hub tier: a rollout would hold more deployments than the tier allows (10 on F1, 100 on paid tiers). On F1 set edge_deployments_to_keep = 0, or choose S1."
  }
}

output "edge_registry_password_rotation" {
  description = "How the edge registry password rotates: the period, the days until a new password is on every device at the latest, and the margin left before the previous one expires."
  value = {
    period_days          = var.edge_registry_password_rotation_days
    days_to_devices      = local.edge_password_days_to_devices
    margin_days          = local.edge_password_schedules_valid ? var.edge_registry_password_rotation_days - local.edge_password_days_to_devices : null
    required_margin_days = var.edge_registry_password_margin_days
  }

  precondition {
    condition     = local.edge_password_schedules_valid
    error_message = "ado_pipelines/iac_pipeline.yml and ado_pipelines/edge_deployment_pipeline.yml must each have exactly one schedule with `always: true`, on the default branch (ado_default_branch), running daily (\"m h * * *\"), weekly (\"m h * * d\") or monthly (\"m h d * *\" with d <= 28): they apply and deploy the rotating edge registry password."
  }
  precondition {
    condition     = local.edge_password_schedules_valid ? var.edge_registry_password_rotation_days >= local.edge_password_days_to_devices + var.edge_registry_password_margin_days : true
    error_message = "edge_registry_password_rotation_days is too short for the pipelines' schedules: a new password can take (IaC schedule gap + edge schedule gap + 2 x edge_registry_rollout_allowance_days) days to reach the devices, and the previous one must stay valid edge_registry_password_margin_days longer. Lengthen the period, lower the allowance or margin, or schedule the pipelines more often."
  }
}

output "alerts_function_app_name" {
  description = "Name of the alert consumer function app; deploy its code with environments/functions/alerts/package.sh and az functionapp deployment source config-zip."
  value       = module.alerts.function_app_name
}

output "alert_records_container_url" {
  description = "Blob container with one record per alert id (the audit trail of notifications)."
  value       = module.alerts.records_container_url
}
