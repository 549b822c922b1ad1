output "iothub_id" {
  description = "Resource ID of the IoT Hub."
  value       = azurerm_iothub.this.id
}

output "iothub_name" {
  description = "Name of the IoT Hub."
  value       = azurerm_iothub.this.name
}

output "iothub_hostname" {
  description = "Host name devices and the CLI connect to (<name>.azure-devices.net)."
  value       = azurerm_iothub.this.hostname
}

output "dps_id_scope" {
  description = "ID scope of the provisioning service (null when dps_enabled is false)."
  value       = var.dps_enabled ? azurerm_iothub_dps.this[0].id_scope : null
}

output "dps_name" {
  description = "Name of the provisioning service (null when dps_enabled is false)."
  value       = var.dps_enabled ? azurerm_iothub_dps.this[0].name : null
}

output "registry_token_name" {
  description = "User name of the current generation's token (the key vault secret's `acr-token` tag); the next rotation switches to the other token."
  value       = azurerm_container_registry_token.edge_pull[local.password_current_slot].name
}

output "registry_password_secret_name" {
  description = "Name of the key vault secret holding the token password."
  value       = azurerm_key_vault_secret.edge_pull_password.name
}

output "registry_password_secret_id" {
  description = "Versionless resource ID of that secret (the scope of the pipeline's read role)."
  value       = azurerm_key_vault_secret.edge_pull_password.resource_versionless_id
}

output "iothub_principal_id" {
  description = "Object ID of the hub's system-assigned identity (it sends routed messages to custom endpoints)."
  value       = azurerm_iothub.this.identity[0].principal_id
}
