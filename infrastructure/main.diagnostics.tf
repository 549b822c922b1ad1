# ---------------------------------------------------------------------------------------------
# Diagnostics: every data service sends its resource logs (category group allLogs: audit, data
# access, job and device events) and its metrics to the Log Analytics workspace. Storage logs
# belong to the blob service, not to the account
# (https://learn.microsoft.com/azure/storage/blobs/monitor-blob-storage).
# ---------------------------------------------------------------------------------------------

locals {
  diagnostic_targets = {
    key_vault          = azurerm_key_vault.this.id
    storage_blob       = "${azurerm_storage_account.this.id}/blobServices/default"
    container_registry = azurerm_container_registry.this.id
    aml_workspace      = module.aml.workspace_id
    iothub             = module.edge.iothub_id
  }
}

resource "azurerm_monitor_diagnostic_setting" "this" {
  for_each = local.diagnostic_targets

  name                       = "to-${local.names.log_analytics}"
  target_resource_id         = each.value
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  enabled_log {
    category_group = "allLogs"
  }

  enabled_metric {
    category = "AllMetrics"
  }
}
