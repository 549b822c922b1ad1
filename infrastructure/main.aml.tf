module "aml" {
  source = "./modules/aml"

  workspace_name                 = local.names.aml_workspace
  compute_identity_name          = local.names.compute_identity
  location                       = azurerm_resource_group.this.location
  resource_group_name            = azurerm_resource_group.this.name
  tags                           = local.tags
  application_insights_id        = azurerm_application_insights.this.id
  key_vault_id                   = azurerm_key_vault.this.id
  storage_account_id             = azurerm_storage_account.this.id
  container_registry_id          = azurerm_container_registry.this.id
  public_network_access_enabled  = var.aml_public_network_access_enabled
  private_endpoints              = var.aml_private_endpoints
  idle_minutes_before_scale_down = var.cluster_idle_minutes_before_scale_down

  gpu_cluster = {
    name                 = local.names.gpu_cluster
    vm_size              = var.gpu_cluster_vm_size
    max_nodes            = var.gpu_cluster_max_nodes
    low_priority_enabled = var.gpu_cluster_low_priority_enabled
  }

  cpu_cluster = {
    name      = local.names.cpu_cluster
    vm_size   = var.cpu_cluster_vm_size
    max_nodes = var.cpu_cluster_max_nodes
  }
}
