# ---------------------------------------------------------------------------------------------
# Edge alerts reach people (modules/alerts): IoT Hub routes -> Service Bus queue -> function app
# (src/ppe/alerts) -> one record per alert id + one webhook notification per alert id.
# ---------------------------------------------------------------------------------------------

locals {
  alert_names = {
    servicebus_namespace = "sbns-${local.base_name}-${local.suffix}"
    queue                = "edge-alerts"
    storage_account      = "st${local.compact_name}al" # 3-24, lower-case letters and digits
    identity             = "id-${local.base_name}-alerts"
    service_plan         = "asp-${local.base_name}-alerts"
    function_app         = "func-${local.base_name}-alerts-${local.suffix}"
  }
}

module "alerts" {
  source = "./modules/alerts"

  names               = local.alert_names
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  iothub_id           = module.edge.iothub_id
  iothub_name         = module.edge.iothub_name
  iothub_principal_id = module.edge.iothub_principal_id

  key_vault_id                           = azurerm_key_vault.this.id
  application_insights_connection_string = azurerm_application_insights.this.connection_string

  # Terraform needs its data-plane role on the vault (and its propagation) before it writes the
  # webhook secret.
  depends_on = [time_sleep.key_vault_rbac]
}
