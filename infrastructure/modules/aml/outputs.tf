output "workspace_id" {
  description = "Resource ID of the Azure ML workspace."
  value       = azurerm_machine_learning_workspace.this.id
}

output "workspace_name" {
  description = "Name of the Azure ML workspace."
  value       = azurerm_machine_learning_workspace.this.name
}

output "workspace_principal_id" {
  description = "Object ID of the workspace's system-assigned identity."
  value       = azurerm_machine_learning_workspace.this.identity[0].principal_id
}

output "gpu_cluster_name" {
  description = "Compute name of the GPU cluster (what AML jobs put in `compute:`)."
  value       = azurerm_machine_learning_compute_cluster.gpu.name
}

output "cpu_cluster_name" {
  description = "Compute name of the CPU cluster."
  value       = azurerm_machine_learning_compute_cluster.cpu.name
}

output "compute_identity_principal_id" {
  description = "Object ID of the identity the clusters run as."
  value       = azurerm_user_assigned_identity.compute.principal_id
}

output "compute_identity_client_id" {
  description = "Client ID of the identity the clusters run as (DEFAULT_IDENTITY_CLIENT_ID in jobs)."
  value       = azurerm_user_assigned_identity.compute.client_id
}
