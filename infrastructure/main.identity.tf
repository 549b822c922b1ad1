# ---------------------------------------------------------------------------------------------
# The identity behind the Azure DevOps service connection: a user-assigned managed identity with
# a federated credential for the connection's OIDC issuer/subject. No client secret exists.
# ---------------------------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "pipeline" {
  name                = local.names.pipeline_identity
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "pipeline" {
  name                = "ado-${local.names.service_connection}"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.pipeline.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = module.devops.workload_identity_federation_issuer
  subject             = module.devops.workload_identity_federation_subject
}

# ---------------------------------------------------------------------------------------------
# What the pipelines do, and nothing more:
#   model training:  submit Azure ML jobs, register models, upload datasets  -> AzureML Data Scientist, Storage Blob Data Contributor
#   edge deployment: push module images, deploy to devices, read the token password
#                                                                          -> AcrPush, IoT Hub Data Contributor, Key Vault Secrets User (one secret)
#   any pipeline:    find resources by name                                 -> Reader on the resource group
# The IaC pipeline applies this configuration with its own, broader connection, created by an
# administrator (see README): an identity cannot be granted the rights that create it.
# ---------------------------------------------------------------------------------------------

locals {
  pipeline_role_assignments = {
    resource_group_reader = {
      scope = azurerm_resource_group.this.id
      role  = "Reader"
      why   = "Pipelines look resources up by name."
    }
    workspace_data_scientist = {
      scope = module.aml.workspace_id
      role  = "AzureML Data Scientist"
      why   = "The training pipeline submits jobs and registers models."
    }
    storage_blob = {
      scope = azurerm_storage_account.this.id
      role  = "Storage Blob Data Contributor"
      why   = "The training pipeline uploads datasets to the default datastore."
    }
    registry_push = {
      scope = azurerm_container_registry.this.id
      role  = "AcrPush"
      why   = "The edge pipeline pushes module images."
    }
    iothub_data = {
      scope = module.edge.iothub_id
      role  = "IoT Hub Data Contributor"
      why   = "The edge pipeline creates edge device identities and deployments."
    }
    edge_password_secret = {
      scope = module.edge.registry_password_secret_id
      role  = "Key Vault Secrets User"
      why   = "The edge pipeline reads the registry token password into the deployment manifest."
    }
  }
}

resource "azurerm_role_assignment" "pipeline" {
  for_each = local.pipeline_role_assignments

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.pipeline.principal_id
  principal_type       = "ServicePrincipal"
  description          = each.value.why
}
