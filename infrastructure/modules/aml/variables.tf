variable "workspace_name" {
  type        = string
  description = "Name of the Azure ML workspace."
}

variable "compute_identity_name" {
  type        = string
  description = "Name of the user-assigned identity both compute clusters run as."
}

variable "location" {
  type        = string
  description = "Azure region of the workspace and its clusters."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group to create the workspace, clusters and identity in."
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every resource of the module."
  default     = {}
  nullable    = false
}

variable "application_insights_id" {
  type        = string
  description = "Resource ID of the Application Insights component the workspace logs to."
}

variable "key_vault_id" {
  type        = string
  description = "Resource ID of the (RBAC-mode) key vault the workspace uses."
}

variable "storage_account_id" {
  type        = string
  description = "Resource ID of the storage account that becomes the workspace's default datastore."
}

variable "container_registry_id" {
  type        = string
  description = "Resource ID of the container registry for environment images."
}

variable "public_network_access_enabled" {
  type        = bool
  description = "Whether the workspace is reachable from public networks."
  default     = true
}

variable "private_endpoints" {
  type = map(object({
    subnet_resource_id            = string
    private_dns_zone_resource_ids = optional(set(string), [])
  }))
  description = <<-EOT
    Private endpoints for the workspace (sub-resource `amlworkspace`), keyed by a short name:
    - `subnet_resource_id` (Required): subnet for the endpoint's network interface.
    - `private_dns_zone_resource_ids` (Optional): private DNS zones to register the endpoint in.
  EOT
  default     = {}
  nullable    = false
}

variable "gpu_cluster" {
  type = object({
    name                 = string
    vm_size              = string
    max_nodes            = number
    low_priority_enabled = optional(bool, false)
  })
  description = <<-EOT
    The GPU training cluster (it always scales down to 0 nodes):
    - `name` (Required): compute name, 2 to 16 characters.
    - `vm_size` (Required): an N-series GPU size such as Standard_NC4as_T4_v3.
    - `max_nodes` (Required): upper bound of the autoscaler.
    - `low_priority_enabled` (Optional): pre-emptible nodes; default false.
  EOT
  nullable    = false
}

variable "cpu_cluster" {
  type = object({
    name      = string
    vm_size   = string
    max_nodes = number
  })
  description = <<-EOT
    The small CPU cluster (data preparation, evaluation, image builds; scales down to 0 nodes):
    - `name` (Required): compute name, 2 to 16 characters.
    - `vm_size` (Required): a general-purpose size such as Standard_D4s_v5.
    - `max_nodes` (Required): upper bound of the autoscaler.
  EOT
  nullable    = false
}

variable "idle_minutes_before_scale_down" {
  type        = number
  description = "Minutes an idle node waits before it is released."
  default     = 15
}
