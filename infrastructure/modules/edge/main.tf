# ---------------------------------------------------------------------------------------------
# IoT Hub and (optionally) the Device Provisioning Service. Device identities are data-plane
# objects that Terraform cannot manage: see scripts/create_edge_device.sh.
# ---------------------------------------------------------------------------------------------

resource "azurerm_iothub" "this" {
  #checkov:skip=CKV_AZURE_108:Edge devices on customer sites connect over the internet (MQTT/AMQP over TLS 1.2, per-device credentials); a private hub needs private connectivity to every site.
  name                          = var.iothub_name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  min_tls_version               = "1.2"
  public_network_access_enabled = true
  # SAS policies stay available: the DPS link and per-device symmetric keys need them.
  local_authentication_enabled = true
  tags                         = var.tags

  sku {
    name     = var.iothub_sku.name
    capacity = var.iothub_sku.capacity
  }

  identity {
    type = "SystemAssigned"
  }

  lifecycle {
    precondition {
      condition     = var.iothub_sku.name != "F1" || var.iothub_sku.capacity == 1
      error_message = "The free F1 IoT Hub tier allows exactly one unit: set iothub_capacity = 1 or choose S1."
    }
  }
}

# The provisioning service registers devices through this policy (registry write + device connect).
resource "azurerm_iothub_shared_access_policy" "dps" {
  count = var.dps_enabled ? 1 : 0

  name                = "dps-provisioning"
  resource_group_name = var.resource_group_name
  iothub_name         = azurerm_iothub.this.name
  registry_read       = true
  registry_write      = true
  device_connect      = true
}

resource "azurerm_iothub_dps" "this" {
  count = var.dps_enabled ? 1 : 0

  name                          = var.dps_name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  allocation_policy             = "Hashed"
  public_network_access_enabled = true
  tags                          = var.tags

  sku {
    name     = "S1"
    capacity = 1
  }

  linked_hub {
    connection_string       = azurerm_iothub_shared_access_policy.dps[0].primary_connection_string
    location                = var.location
    apply_allocation_policy = true
  }
}

# ---------------------------------------------------------------------------------------------
# Pull-only registry tokens for the edge devices, two of them used alternately (locals.tf): the
# current one's password goes into the key vault secret, with the token's name in the secret's
# `acr-token` tag, where the edge deployment pipeline reads both to fill the manifest's
# registryCredentials.
# ---------------------------------------------------------------------------------------------

resource "azurerm_container_registry_scope_map" "edge_pull" {
  name                    = "${var.registry_token_name}-scope"
  container_registry_name = var.container_registry_name
  resource_group_name     = var.container_registry_resource_group_name
  description             = "Pull-only access for IoT Edge devices."
  actions = flatten([
    for repository in var.image_repositories : [
      "repositories/${repository}/content/read",
      "repositories/${repository}/metadata/read",
    ]
  ])
}

resource "azurerm_container_registry_token" "edge_pull" {
  for_each = local.password_slots

  name                    = "${var.registry_token_name}-${each.key}"
  container_registry_name = var.container_registry_name
  resource_group_name     = var.container_registry_resource_group_name
  scope_map_id            = azurerm_container_registry_scope_map.edge_pull.id
  enabled                 = true
}

# A new expiry replaces the resource: the slot's previous password (two generations old, no
# longer on any device) is deleted and a new one generated. The other slot is untouched.
resource "azurerm_container_registry_token_password" "edge_pull" {
  for_each = local.password_slots

  container_registry_token_id = azurerm_container_registry_token.edge_pull[each.key].id

  password1 {
    expiry = local.password_slot_expiry[each.key]
  }
}

resource "azurerm_key_vault_secret" "edge_pull_password" {
  name            = var.password_secret_name
  key_vault_id    = var.key_vault_id
  value           = azurerm_container_registry_token_password.edge_pull[local.password_current_slot].password1[0].value
  content_type    = "text/plain"
  expiration_date = local.password_slot_expiry[local.password_current_slot]
  tags            = merge(var.tags, { "acr-token" = azurerm_container_registry_token.edge_pull[local.password_current_slot].name })
}
