variable "subscription_id" {
  type        = string
  description = "Azure subscription ID (a GUID) to deploy into."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "`subscription_id` must be a subscription GUID such as 00000000-0000-0000-0000-000000000000."
  }
}

variable "ado_org_service_url" {
  type        = string
  description = "URL of the Azure DevOps organisation, https://dev.azure.com/<organisation>."

  validation {
    condition     = can(regex("^https://dev\\.azure\\.com/[A-Za-z0-9][A-Za-z0-9-]{0,48}[A-Za-z0-9]?/?$", var.ado_org_service_url))
    error_message = "`ado_org_service_url` must look like https://dev.azure.com/<organisation>."
  }
}

variable "ado_production_approver_ids" {
  type        = list(string)
  description = "IDs (GUIDs) of the users or groups that approve production deployments."
  nullable    = false

  validation {
    condition     = length(var.ado_production_approver_ids) >= 1
    error_message = "`ado_production_approver_ids` must list at least one approver ID."
  }
}

variable "iac_principal_id" {
  type        = string
  description = "Object ID of the IaC identity (`terraform -chdir=../../bootstrap output -raw iac_principal_id`)."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.iac_principal_id))
    error_message = "`iac_principal_id` must be an object ID GUID: terraform -chdir=../../bootstrap output -raw iac_principal_id."
  }
}
