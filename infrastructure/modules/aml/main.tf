locals {
  gpu_family_pattern = "^Standard_N(C|D|G|V)[0-9]+[a-z]*(_[A-Z][A-Z0-9]*)?(_v[0-9]+)?$"
  idle_duration      = "PT${var.idle_minutes_before_scale_down}M"
  # Creating the workspace with its managed network, and the clusters inside it, outlasts the
  # provider's 30-minute default.
  managed_network_timeout = "90m"
}

# Both clusters run as this identity: it pulls environment images and reads/writes job data.
resource "azurerm_user_assigned_identity" "compute" {
  name                = var.compute_identity_name
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_machine_learning_workspace" "this" {
  #checkov:skip=CKV_AZURE_144:Public access is a variable (public_network_access_enabled); the quick start needs it for laptops and hosted agents, production sets false with private_endpoints.
  #checkov:skip=CKV2_AZURE_49:Same switch as CKV_AZURE_144; the managed network isolates compute outbound traffic.
  #checkov:skip=CKV2_AZURE_50:The default datastore's account keeps public network access for hosted agents and laptops (see its skips); blobs are never anonymous and access is RBAC-scoped.
  name                          = var.workspace_name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  application_insights_id       = var.application_insights_id
  key_vault_id                  = var.key_vault_id
  storage_account_id            = var.storage_account_id
  container_registry_id         = var.container_registry_id
  public_network_access_enabled = var.public_network_access_enabled
  image_build_compute_name      = var.cpu_cluster.name
  v1_legacy_mode_enabled        = false
  high_business_impact          = true
  sku_name                      = "Basic"
  tags                          = var.tags

  identity {
    type = "SystemAssigned"
  }

  # Provision the managed network with the workspace, not lazily with the first compute: that takes
  # about 30 minutes, as long as azurerm's default create timeout of the cluster that would wait
  # for it (https://learn.microsoft.com/azure/machine-learning/how-to-managed-network).
  managed_network {
    isolation_mode                = "AllowInternetOutbound"
    provision_on_creation_enabled = true
  }

  timeouts {
    create = local.managed_network_timeout
    update = local.managed_network_timeout
  }

  lifecycle {
    precondition {
      condition     = var.public_network_access_enabled || length(var.private_endpoints) > 0
      error_message = "A workspace without public network access is unreachable without private endpoints: set private_endpoints, or public_network_access_enabled = true."
    }
  }
}

resource "azurerm_private_endpoint" "workspace" {
  for_each = var.private_endpoints

  name                = "pe-${var.workspace_name}-${each.key}"
  location            = var.location
  resource_group_name = var.resource_group_name
  subnet_id           = each.value.subnet_resource_id
  tags                = var.tags

  private_service_connection {
    name                           = "psc-${var.workspace_name}-${each.key}"
    private_connection_resource_id = azurerm_machine_learning_workspace.this.id
    subresource_names              = ["amlworkspace"]
    is_manual_connection           = false
  }

  dynamic "private_dns_zone_group" {
    for_each = length(each.value.private_dns_zone_resource_ids) > 0 ? [each.value.private_dns_zone_resource_ids] : []

    content {
      name                 = "default"
      private_dns_zone_ids = private_dns_zone_group.value
    }
  }
}

resource "azurerm_machine_learning_compute_cluster" "gpu" {
  name                          = var.gpu_cluster.name
  location                      = var.location
  machine_learning_workspace_id = azurerm_machine_learning_workspace.this.id
  vm_size                       = var.gpu_cluster.vm_size
  vm_priority                   = var.gpu_cluster.low_priority_enabled ? "LowPriority" : "Dedicated"
  local_auth_enabled            = false
  ssh_public_access_enabled     = false
  description                   = "GPU training cluster (scales to zero)."
  tags                          = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.compute.id]
  }

  scale_settings {
    min_node_count                       = 0
    max_node_count                       = var.gpu_cluster.max_nodes
    scale_down_nodes_after_idle_duration = local.idle_duration
  }

  lifecycle {
    # Every argument of a compute cluster forces a new cluster, tags included; tags follow the
    # global `tags` input, so a tag edit would destroy the cluster (and any running job).
    ignore_changes = [tags]

    precondition {
      condition     = can(regex(local.gpu_family_pattern, var.gpu_cluster.vm_size))
      error_message = "`gpu_cluster.vm_size` must be an N-series GPU size such as Standard_NC4as_T4_v3."
    }
  }

  depends_on = [
    azurerm_role_assignment.compute_registry_pull,
    azurerm_role_assignment.compute_storage_blob,
  ]
}

resource "azurerm_machine_learning_compute_cluster" "cpu" {
  name                          = var.cpu_cluster.name
  location                      = var.location
  machine_learning_workspace_id = azurerm_machine_learning_workspace.this.id
  vm_size                       = var.cpu_cluster.vm_size
  vm_priority                   = "Dedicated"
  local_auth_enabled            = false
  ssh_public_access_enabled     = false
  description                   = "CPU cluster for data preparation, evaluation and image builds (scales to zero)."
  tags                          = var.tags

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.compute.id]
  }

  scale_settings {
    min_node_count                       = 0
    max_node_count                       = var.cpu_cluster.max_nodes
    scale_down_nodes_after_idle_duration = local.idle_duration
  }

  lifecycle {
    # As for the GPU cluster: a tag edit must not replace the cluster.
    ignore_changes = [tags]
  }

  depends_on = [
    azurerm_role_assignment.compute_registry_pull,
    azurerm_role_assignment.compute_storage_blob,
  ]
}
