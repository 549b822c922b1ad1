# Least privilege for the workspace and the clusters. The workspace's own identity builds
# environment images (push) and manages datastore secrets; the clusters only pull images and
# read/write job data. Storage Blob Data Contributor on the default storage account is not assigned
# here: the Azure ML resource provider grants it to the workspace identity itself when it creates
# the workspace, so a second assignment fails with RoleAssignmentExists.

resource "azurerm_role_assignment" "workspace_registry_push" {
  scope                = var.container_registry_id
  role_definition_name = "AcrPush"
  principal_id         = azurerm_machine_learning_workspace.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Azure ML workspace builds and pushes environment images."
}

resource "azurerm_role_assignment" "workspace_key_vault_secrets" {
  scope                = var.key_vault_id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = azurerm_machine_learning_workspace.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "Azure ML workspace stores datastore and connection secrets."
}

resource "azurerm_role_assignment" "compute_registry_pull" {
  scope                = var.container_registry_id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.compute.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Azure ML clusters pull environment images."
}

resource "azurerm_role_assignment" "compute_storage_blob" {
  scope                = var.storage_account_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.compute.principal_id
  principal_type       = "ServicePrincipal"
  description          = "Azure ML jobs read training data and write outputs and models."
}
