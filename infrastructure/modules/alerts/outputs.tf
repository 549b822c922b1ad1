output "function_app_name" {
  description = "Name of the alert consumer function app (deploy its code with az functionapp deployment source config-zip)."
  value       = azurerm_function_app_flex_consumption.this.name
}

output "queue_id" {
  description = "Resource ID of the Service Bus queue IoT Hub routes alerts to."
  value       = azurerm_servicebus_queue.alerts.id
}

output "records_container_url" {
  description = "URL of the blob container holding one record per alert id."
  value       = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.records.name}"
}

output "consumer_principal_id" {
  description = "Object ID of the consumer's managed identity."
  value       = azurerm_user_assigned_identity.consumer.principal_id
}
