variable "project_name" {
  type        = string
  description = "Name of the Azure DevOps project to create."
}

variable "repository_name" {
  type        = string
  description = "Name of the Azure Repos repository."
}

variable "repository_import_url" {
  type        = string
  description = "Public HTTPS clone URL imported into the repository; null starts it empty."
  default     = null
}

variable "default_branch" {
  type        = string
  description = "Default branch as a full ref (refs/heads/main)."
  default     = "refs/heads/main"
}

variable "branch_policy" {
  type = object({
    enabled             = bool
    minimum_reviewers   = number
    allow_self_approval = bool
  })
  description = <<-EOT
    Protection of the default branch:
    - `enabled` (Required): create the policies. A protected branch refuses direct pushes, the
      repository's first push included, so enable them after that push.
    - `minimum_reviewers` (Required): approvals a pull request needs; 0 creates no reviewer policy
      (pull requests still need the validation builds).
    - `allow_self_approval` (Required): the author and the last pusher may approve, so that a
      one-person team can merge.
  EOT
  nullable    = false
}

variable "service_connection" {
  type = object({
    name              = string
    tenant_id         = string
    subscription_id   = string
    subscription_name = string
    client_id         = string
  })
  description = <<-EOT
    The Azure Resource Manager service connection (workload identity federation, no secret):
    - `name` (Required): service connection name the pipelines use.
    - `tenant_id` (Required): Entra tenant of the identity.
    - `subscription_id` (Required) / `subscription_name` (Required): the subscription it targets.
    - `client_id` (Required): client ID of the user-assigned managed identity behind it.
  EOT
  nullable    = false
}

variable "variable_group_name" {
  type        = string
  description = "Name of the variable group the pipelines link."
}

variable "pipeline_variables" {
  type        = map(string)
  description = "Non-secret name/value pairs written into the variable group."
  nullable    = false
}

variable "pipelines" {
  type = map(object({
    name                     = string
    yml_path                 = string
    uses_workload_connection = bool
    deploys                  = bool
    pull_request_paths       = optional(list(string))
  }))
  description = <<-EOT
    Build definitions to create, keyed by a stable identifier:
    - `name` (Required): pipeline name shown in Azure DevOps.
    - `yml_path` (Required): path of the YAML file in the repository.
    - `uses_workload_connection` (Required): authorise the pipeline to use the workload service
      connection this module creates (`service_connection`). The IaC pipeline uses a privileged
      connection that an administrator creates outside Terraform instead, so it sets `false`.
    - `deploys` (Required): authorise the pipeline to deploy to the environments.
    - `pull_request_paths` (Optional): run the pipeline as build validation of pull requests into
      the default branch that change these paths (`["*"]`: every path); null: no validation.
  EOT
  nullable    = false
}

variable "environments" {
  type        = map(string)
  description = "Environments to create: key `staging` and key `production` (the one with the approval check) mapped to their names."
  nullable    = false

  validation {
    condition     = contains(keys(var.environments), "staging") && contains(keys(var.environments), "production")
    error_message = "`environments` needs the keys \"staging\" and \"production\"."
  }
}

variable "production_approver_ids" {
  type        = list(string)
  description = "User or group IDs that approve production deployments."
  nullable    = false
}

variable "product_pipelines" {
  type = map(object({
    pipeline_id = number
    deploys     = bool
  }))
  description = <<-EOT
    Pipelines of product repositories in this project that reuse the templates, keyed by a stable
    name; each is authorised for the templates repository, the service connection and the
    variable group:
    - `pipeline_id` (Required): the pipeline's definition ID.
    - `deploys` (Required): also authorise it for the environments.
  EOT
  default     = {}
  nullable    = false
}
