variable "names" {
  type = object({
    servicebus_namespace = string
    queue                = string
    storage_account      = string
    identity             = string
    service_plan         = string
    function_app         = string
  })
  description = <<-EOT
    Names of what the module creates (computed by the root's naming scheme):
    - `servicebus_namespace` (Required): Service Bus namespace, globally unique.
    - `queue` (Required): the queue IoT Hub routes alerts to.
    - `storage_account` (Required): the function app's storage and the alert records, globally unique.
    - `identity` (Required): the consumer's user-assigned managed identity.
    - `service_plan` (Required): the Flex Consumption plan.
    - `function_app` (Required): the consumer, globally unique.
  EOT
  nullable    = false
}

variable "location" {
  type        = string
  description = "Azure region of every resource of the module."
}

variable "resource_group_name" {
  type        = string
  description = "Resource group to create the resources in."
}

variable "tags" {
  type        = map(string)
  description = "Tags applied to every resource of the module."
  default     = {}
  nullable    = false
}

variable "iothub_id" {
  type        = string
  description = "Resource ID of the IoT Hub whose device messages are routed."
}

variable "iothub_name" {
  type        = string
  description = "Name of that IoT Hub."
}

variable "iothub_principal_id" {
  type        = string
  description = "Object ID of the hub's system-assigned identity (it sends to the queue)."
}

variable "module_id" {
  type        = string
  description = "IoT Edge module whose `alerts` output is routed ($connectionModuleId)."
  default     = "ppedetector"
}

variable "key_vault_id" {
  type        = string
  description = "Key vault that keeps the webhook URL (a secret: it carries its own signature, so it never passes through a Terraform variable)."
}

variable "application_insights_connection_string" {
  type        = string
  description = "Application Insights the function app logs to (its connection string is an ingestion address, not a credential)."
}
