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
