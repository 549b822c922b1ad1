variable "subscription_id" {
  type        = string
  description = "Azure subscription ID (a GUID) that holds the Terraform state."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "`subscription_id` must be a subscription GUID such as 00000000-0000-0000-0000-000000000000."
  }
}

variable "location" {
  type        = string
  description = "Azure region of the state storage account (lower-case programmatic name)."
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "`location` must be a programmatic region name in lower case without spaces, such as \"westeurope\"."
  }
}

variable "resource_group_name" {
  type        = string
  description = "Resource group for the state storage account."
  default     = "rg-ppe-tfstate"

  validation {
    condition     = can(regex("^[-\\w._()]{1,89}[-\\w_()]$", var.resource_group_name))
    error_message = "`resource_group_name` must be 1 to 90 letters, digits, '-', '_', '.', '(' or ')', not ending with '.'."
  }
}

variable "storage_account_name" {
  type        = string
  description = "Globally unique name of the state storage account (3 to 24 lower-case letters and digits)."

  validation {
    condition     = can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "`storage_account_name` must be 3 to 24 lower-case letters and digits, unique across Azure (for example \"stppetfstate\" plus a few digits)."
  }
}

variable "state_key" {
  type        = string
  description = "Blob name of the platform's state file, printed in backend_config."
  default     = "ppe-dev.tfstate"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+\\.tfstate$", var.state_key))
    error_message = "`state_key` must end in .tfstate and use only letters, digits, '.', '_', '-' and '/'."
  }
}

variable "allowed_ip_ranges" {
  type        = list(string)
  description = "Public IPv4 addresses or CIDR ranges allowed through the storage firewall. Empty: open to every network (authentication is still Entra ID only)."
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for range in var.allowed_ip_ranges : can(cidrhost(range, 0)) && can(regex("^[0-9.]+/[0-9]+$", range))])
    error_message = "`allowed_ip_ranges` must be IPv4 CIDR blocks such as \"203.0.113.0/24\" or \"198.51.100.7/32\"."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags merged into every resource."
  default     = {}
  nullable    = false

  validation {
    condition     = length(var.tags) <= 48 && alltrue([for key, value in var.tags : length(key) <= 512 && length(value) <= 256])
    error_message = "`tags` must have at most 48 entries, keys up to 512 characters, values up to 256 characters."
  }
}

variable "iac_identity_name" {
  type        = string
  description = "Name of the user-assigned identity the IaC pipeline's service connection signs in as (Owner on the subscription, data access to the state)."
  default     = "id-ppe-iac"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$", var.iac_identity_name))
    error_message = "`iac_identity_name` must be 3 to 128 letters, digits, '-' or '_', starting with a letter or digit."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Days the state access logs are kept (30 to 730)."
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "`log_retention_days` must be a whole number from 30 to 730."
  }
}
