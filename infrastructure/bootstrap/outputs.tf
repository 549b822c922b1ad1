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
  description = "Resource ID of the state storage account."
  value       = azurerm_storage_account.state.id
}

output "iac_principal_id" {
  description = "Object ID of the IaC identity: the platform root's `iac_principal_id` input."
  value       = azurerm_user_assigned_identity.iac.principal_id
}

output "iac_client_id" {
  description = "Client ID of the IaC identity: what the sc-ppe-iac service connection is created with."
  value       = azurerm_user_assigned_identity.iac.client_id
}
