output "backend_config" {
  description = "Contents for infrastructure/backend.hcl (terraform init -backend-config=backend.hcl)."
  value       = <<-EOT
    resource_group_name  = "${azurerm_resource_group.state.name}"
    storage_account_name = "${azurerm_storage_account.state.name}"
    container_name       = "${azurerm_storage_container.state.name}"
    key                  = "${var.state_key}"
    use_azuread_auth     = true
  EOT
}

output "storage_account_id" {
  description = "Resource ID of the state storage account (grant the IaC pipeline identity Storage Blob Data Contributor here)."
  value       = azurerm_storage_account.state.id
}
