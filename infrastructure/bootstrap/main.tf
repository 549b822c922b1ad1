data "azurerm_client_config" "current" {}

data "azurerm_subscription" "current" {}

locals {
  tags = merge(var.tags, {
    workload   = "terraform-state"
    managed-by = "terraform"
  })
  container_name = "tfstate"
}

resource "azurerm_resource_group" "state" {
  name     = var.resource_group_name
  location = var.location
  tags     = local.tags
}

resource "azurerm_storage_account" "state" {
  #checkov:skip=CKV_AZURE_35:The firewall denies by default as soon as allowed_ip_ranges is set; hosted agents have no fixed addresses, and access needs Entra ID (shared keys are off).
  #checkov:skip=CKV_AZURE_59:Hosted Azure DevOps agents reach the state over the internet; shared keys and anonymous access are disabled, so only Entra principals with a data role get in.
  #checkov:skip=CKV2_AZURE_33:A private endpoint would need self-hosted agents inside a virtual network.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; a customer-managed key would need a key vault that itself needs state.
  #checkov:skip=CKV_AZURE_33:No queues are used in the state account; queue logging would only add cost.
  name                            = var.storage_account_name
  location                        = azurerm_resource_group.state.location
  resource_group_name             = azurerm_resource_group.state.name
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "GRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  local_user_enabled              = false
  public_network_access_enabled   = true
  tags                            = local.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = 30
    }

    container_delete_retention_policy {
      days = 30
    }
  }

  sas_policy {
    expiration_period = "0.01:00:00"
    expiration_action = "Block"
  }

  network_rules {
    default_action = length(var.allowed_ip_ranges) > 0 ? "Deny" : "Allow"
    bypass         = ["AzureServices"]
    ip_rules       = [for range in var.allowed_ip_ranges : trimsuffix(range, "/32")]
  }
}

resource "azurerm_storage_container" "state" {
  #checkov:skip=CKV2_AZURE_21:Blob reads are logged by azurerm_monitor_diagnostic_setting.state_blob (StorageRead to Log Analytics); the check only recognises azurerm_log_analytics_storage_insights, which needs the account key this account disables.
  name                  = local.container_name
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

# The state holds secrets (the edge registry password, the DPS keys): every read, write and delete
# of its blobs goes to a Log Analytics workspace next to it.
resource "azurerm_log_analytics_workspace" "state" {
  name                = "log-${var.storage_account_name}"
  location            = azurerm_resource_group.state.location
  resource_group_name = azurerm_resource_group.state.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_monitor_diagnostic_setting" "state_blob" {
  name                       = "state-access"
  target_resource_id         = "${azurerm_storage_account.state.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.state.id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

# Whoever runs the bootstrap can read and write the state with Entra ID (use_azuread_auth).
resource "azurerm_role_assignment" "state_owner" {
  scope                = azurerm_storage_account.state.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
  description          = "Terraform state read/write for the identity that ran the bootstrap."
}

# ---------------------------------------------------------------------------------------------
# The IaC identity: what the IaC pipeline's service connection signs in as. It lives here, outside
# the platform it manages, so no apply or destroy of infrastructure/ can touch it, and its roles
# are Terraform code that the permission matrix (infrastructure/permissions/) checks.
# ---------------------------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "iac" {
  name                = var.iac_identity_name
  location            = azurerm_resource_group.state.location
  resource_group_name = azurerm_resource_group.state.name
  tags                = local.tags
}

locals {
  iac_role_assignments = {
    subscription_owner = {
      scope = data.azurerm_subscription.current.id
      role  = "Owner"
      why   = "terraform apply creates the platform's resource group and its role assignments."
    }
    state = {
      scope = azurerm_storage_account.state.id
      role  = "Storage Blob Data Contributor"
      why   = "The azurerm backend reads, locks and writes the state with Entra ID."
    }
  }
}

resource "azurerm_role_assignment" "iac" {
  for_each = local.iac_role_assignments

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.iac.principal_id
  principal_type       = "ServicePrincipal"
  description          = each.value.why
}
