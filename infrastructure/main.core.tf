data "azurerm_client_config" "current" {}

data "azurerm_subscription" "current" {}

resource "azurerm_resource_group" "this" {
  name     = local.names.resource_group
  location = var.location
  tags     = local.tags
}

# ---------------------------------------------------------------------------------------------
# Monitoring: one Log Analytics workspace behind Application Insights (workspace-based).
# ---------------------------------------------------------------------------------------------

resource "azurerm_log_analytics_workspace" "this" {
  name                = local.names.log_analytics
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

resource "azurerm_application_insights" "this" {
  name                = local.names.application_insight
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  workspace_id        = azurerm_log_analytics_workspace.this.id
  application_type    = "other"
  retention_in_days   = var.log_retention_days
  tags                = local.tags
}

# ---------------------------------------------------------------------------------------------
# Key vault: RBAC authorisation, purge protection, firewall that follows allowed_ip_ranges.
# ---------------------------------------------------------------------------------------------

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109:The firewall denies by default as soon as allowed_ip_ranges is set; the quick start leaves it open so a laptop and hosted agents can reach it.
  #checkov:skip=CKV_AZURE_189:Public network access stays on so hosted Azure DevOps agents (no private network) can read the edge registry secret; access is RBAC-only.
  #checkov:skip=CKV2_AZURE_32:Private endpoints are offered for the Azure ML workspace only; a private key vault needs self-hosted agents inside the network.
  name                          = local.names.key_vault
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = var.key_vault_soft_delete_retention_days
  public_network_access_enabled = true
  tags                          = local.tags

  network_acls {
    bypass         = "AzureServices"
    default_action = length(var.allowed_ip_ranges) > 0 ? "Deny" : "Allow"
    ip_rules       = var.allowed_ip_ranges
  }
}

# Terraform itself reads (every plan's refresh) and writes the edge registry password secret: a
# data-plane call, which control-plane roles such as Owner do not cover. The grant goes to fixed
# principals, the IaC identity and the operators listed by object ID, never to "whoever runs
# Terraform" (data.azurerm_client_config), which changes between a laptop and the pipeline.
resource "azurerm_role_assignment" "iac_key_vault_secrets" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = var.iac_principal_id
  principal_type       = "ServicePrincipal"
  description          = "The IaC identity refreshes and writes the edge registry token password secret."
}

resource "azurerm_role_assignment" "operator_key_vault_secrets" {
  for_each = var.operator_principal_ids

  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = each.value
  description          = "An operator runs terraform plan/apply from a workstation."
}

# Role assignments reach the key vault's data plane minutes after they are created (Azure RBAC
# caches; https://learn.microsoft.com/azure/role-based-access-control/troubleshooting). The edge
# module writes the secret only after this wait, which reruns whenever the principals change.
resource "time_sleep" "key_vault_rbac" {
  create_duration = local.rbac_propagation_wait

  triggers = {
    principals = join(",", sort(concat([var.iac_principal_id], tolist(var.operator_principal_ids))))
  }

  depends_on = [
    azurerm_role_assignment.iac_key_vault_secrets,
    azurerm_role_assignment.operator_key_vault_secrets,
  ]
}

# ---------------------------------------------------------------------------------------------
# Storage account: the Azure ML default datastore (training data, job outputs, models).
# ---------------------------------------------------------------------------------------------

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV_AZURE_35:The firewall denies by default as soon as allowed_ip_ranges is set; the quick start leaves it open so the AML service, a laptop and hosted agents can upload data.
  #checkov:skip=CKV_AZURE_59:Public network access is needed by hosted agents and laptops that upload datasets; blobs are never anonymous (allow_nested_items_to_be_public = false).
  #checkov:skip=CKV2_AZURE_33:Private endpoints are offered for the Azure ML workspace only; a private storage account needs the whole workspace on a private network.
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys are used; customer-managed keys add a key vault key lifecycle this template does not own.
  #checkov:skip=CKV2_AZURE_40:Azure ML system datastores use the account key unless the workspace sets systemDatastoresAuthMode = identity, an ARM property azurerm 4.55's machine_learning_workspace does not expose (no azapi here).
  #checkov:skip=CKV_AZURE_33:No queues are used; queue logging would only add cost.
  name                            = local.names.storage_account
  location                        = azurerm_resource_group.this.location
  resource_group_name             = azurerm_resource_group.this.name
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = var.storage_replication_type
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = true
  default_to_oauth_authentication = true
  local_user_enabled              = false
  public_network_access_enabled   = true
  tags                            = local.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = 7
    }

    container_delete_retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "1.00:00:00"
    expiration_action = "Log"
  }

  network_rules {
    default_action = length(var.allowed_ip_ranges) > 0 ? "Deny" : "Allow"
    bypass         = ["AzureServices"]
    ip_rules       = [for range in var.allowed_ip_ranges : trimsuffix(range, "/32")]
  }
}

# ---------------------------------------------------------------------------------------------
# Container registry: AML environment images and the edge module images. No admin user; edge
# devices pull with a repository-scoped token (modules/edge), everything else uses Entra ID.
# ---------------------------------------------------------------------------------------------

resource "azurerm_container_registry" "this" {
  #checkov:skip=CKV_AZURE_139:Edge devices on site networks and hosted agents pull and push over the internet; a private registry needs Premium and private networking end to end.
  #checkov:skip=CKV_AZURE_163:Vulnerability scanning is Microsoft Defender for Containers, a subscription-level plan, not a registry argument.
  #checkov:skip=CKV_AZURE_164:Content trust (Docker Content Trust) is deprecated by Microsoft in favour of Notary v2 signing and needs Premium.
  #checkov:skip=CKV_AZURE_165:Geo-replication needs Premium and a second region; set container_registry_sku = "Premium" and add it for production fleets.
  #checkov:skip=CKV_AZURE_166:Image quarantine is a Premium preview feature that blocks pulls until a scanner releases images; no scanner is part of this template.
  #checkov:skip=CKV_AZURE_233:Every tier is zone redundant by default in regions with zones (learn.microsoft.com/azure/container-registry/zone-redundancy); azurerm rejects zone_redundancy_enabled below Premium and it forces a new registry, so it stays unset.
  #checkov:skip=CKV_AZURE_237:Dedicated data endpoints need Premium; they only matter behind client firewalls that allow-list registry endpoints.
  #checkov:skip=CKV_AZURE_167:Untagged-manifest retention is a Premium feature.
  name                          = local.names.container_registry
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = var.container_registry_sku
  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = true
  tags                          = local.tags

  # Registry network rules exist only on the Premium tier
  # (https://learn.microsoft.com/azure/container-registry/container-registry-access-selected-networks).
  dynamic "network_rule_set" {
    for_each = var.container_registry_sku == "Premium" && length(var.allowed_ip_ranges) > 0 ? [var.allowed_ip_ranges] : []

    content {
      default_action = "Deny"

      dynamic "ip_rule" {
        for_each = network_rule_set.value

        content {
          action   = "Allow"
          ip_range = ip_rule.value
        }
      }
    }
  }
}
