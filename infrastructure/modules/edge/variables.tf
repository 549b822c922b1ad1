variable "iothub_name" {
  type        = string
  description = "Name of the IoT Hub."
}

variable "dps_name" {
  type        = string
  description = "Name of the Device Provisioning Service (used when dps_enabled is true)."
}

variable "location" {
  type        = string
  description = "Azure region of the hub and the provisioning service."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group to create the IoT resources in."
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every resource of the module."
  default     = {}
  nullable    = false
}

variable "iothub_sku" {
  type = object({
    name     = string
    capacity = number
  })
  description = <<-EOT
    IoT Hub tier and units:
    - `name` (Required): F1, S1, S2 or S3 (Basic tiers have no IoT Edge support).
    - `capacity` (Required): number of units.
  EOT
  default = {
    name     = "S1"
    capacity = 1
  }
  nullable = false
}

variable "dps_enabled" {
  type        = bool
  description = "Create a Device Provisioning Service linked to the hub."
  default     = false
}

variable "container_registry_name" {
  type        = string
  description = "Name of the registry that holds the edge module images."
}

variable "container_registry_resource_group_name" {
  type        = string
  description = "Resource group of that registry."
}

variable "registry_token_name" {
  type        = string
  description = "Name prefix of the two pull-only registry tokens the edge devices use alternately (`<prefix>-even`, `<prefix>-odd`) and of their scope map."
}

variable "image_repositories" {
  type        = list(string)
  description = "Repositories (or `namespace/*`) the edge token may pull."
  nullable    = false
}

variable "password_rotation_days" {
  type        = number
  description = "Days between two generations of the devices' registry password; each password lives two of them (see locals.tf)."
  default     = 90
  nullable    = false

  validation {
    condition     = var.password_rotation_days >= 1 && floor(var.password_rotation_days) == var.password_rotation_days
    error_message = "`password_rotation_days` must be a whole number of days, at least 1."
  }
}

variable "key_vault_id" {
  type        = string
  description = "Key vault that receives the token password."
}

variable "password_secret_name" {
  type        = string
  description = "Name of the key vault secret holding the token password."
}
