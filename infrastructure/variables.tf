# ---------------------------------------------------------------------------------------------
# Where and what
# ---------------------------------------------------------------------------------------------

variable "subscription_id" {
  type        = string
  description = "Azure subscription ID (a GUID) to deploy into. `az account show --query id -o tsv` prints the current one."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "`subscription_id` must be a subscription GUID such as 00000000-0000-0000-0000-000000000000, not its display name."
  }
}

variable "location" {
  type        = string
  description = "Azure region for every resource, as a lower-case programmatic name (for example `westeurope`, `eastus2`). Pick one with NCasT4_v3 quota for the GPU cluster."
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "`location` must be a programmatic region name in lower case without spaces, such as \"westeurope\" (not \"West Europe\"); `az account list-locations -o table` lists them."
  }
}

variable "workload" {
  type        = string
  description = "Short workload name used in every resource name (2 to 8 lower-case letters or digits, starting with a letter)."
  default     = "ppe"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,7}$", var.workload))
    error_message = "`workload` must be 2 to 8 lower-case letters or digits starting with a letter (it ends up in storage account and registry names, which allow nothing else)."
  }
}

variable "environment" {
  type        = string
  description = "Deployment stage used in every resource name: one of `dev`, `test`, `stage`, `prod`."
  default     = "dev"

  validation {
    condition     = contains(["dev", "test", "stage", "prod"], var.environment)
    error_message = "`environment` must be one of \"dev\", \"test\", \"stage\" or \"prod\"."
  }
}

variable "name_suffix" {
  type        = string
  description = "Suffix that makes the globally unique names (storage account, key vault, registry, IoT Hub) unique. Empty: 4 characters derived from the subscription, workload, environment and location."
  default     = ""
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9]{0,6}$", var.name_suffix))
    error_message = "`name_suffix` must be at most 6 lower-case letters or digits (or empty for the derived suffix)."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags merged into every resource, on top of the template's own (workload, environment, managed-by, repository). The compute clusters take them at creation only: a tag change on a cluster would replace it."
  default     = {}
  nullable    = false

  validation {
    condition     = length(var.tags) <= 45 && alltrue([for key, value in var.tags : length(key) <= 512 && length(value) <= 256 && !can(regex("[<>%&\\\\?/]", key))])
    error_message = "`tags` must have at most 45 entries (Azure allows 50 and the template adds its own), keys up to 512 characters without < > % & \\ ? /, values up to 256 characters."
  }
}

# ---------------------------------------------------------------------------------------------
# Who runs Terraform
# ---------------------------------------------------------------------------------------------

variable "iac_principal_id" {
  type        = string
  description = "Object (principal) ID of the IaC identity that the IaC pipeline's connection signs in as: `terraform -chdir=bootstrap output -raw iac_principal_id`. It gets the key vault data role that every plan needs to refresh the secret this configuration writes."

  validation {
    condition     = can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", var.iac_principal_id))
    error_message = "`iac_principal_id` must be the object (principal) ID GUID of the IaC identity: terraform -chdir=bootstrap output -raw iac_principal_id (not its client ID or name)."
  }
}

variable "operator_principal_ids" {
  type        = set(string)
  description = "Object IDs of the people who run terraform plan/apply from a workstation (`az ad signed-in-user show --query id -o tsv`), such as whoever makes the first apply. They get the same key vault data role as the IaC identity."
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for id in var.operator_principal_ids : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", id))])
    error_message = "`operator_principal_ids` must list object ID GUIDs (az ad signed-in-user show --query id -o tsv)."
  }
}

# ---------------------------------------------------------------------------------------------
# Network exposure
# ---------------------------------------------------------------------------------------------

variable "allowed_ip_ranges" {
  type        = list(string)
  description = "Public IPv4 CIDR ranges allowed through the key vault and storage account firewalls and, with `container_registry_sku = \"Premium\"`, the registry's (Basic and Standard registries have no network rules). Empty: the firewalls allow every network (the quick-start default)."
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for range in var.allowed_ip_ranges : can(cidrhost(range, 0)) && can(regex("^[0-9.]+/[0-9]+$", range))])
    error_message = "`allowed_ip_ranges` must be IPv4 CIDR blocks such as \"203.0.113.0/24\" or \"198.51.100.7/32\"."
  }
}

variable "aml_public_network_access_enabled" {
  type        = bool
  description = "Whether the Azure ML workspace is reachable from public networks. Set to false together with `aml_private_endpoints` for a private workspace."
  default     = true
}

variable "aml_private_endpoints" {
  type = map(object({
    subnet_resource_id            = string
    private_dns_zone_resource_ids = optional(set(string), [])
  }))
  description = <<-EOT
    Private endpoints for the Azure ML workspace, keyed by a short name. Each object has:
    - `subnet_resource_id` (Required): resource ID of the subnet the endpoint's NIC is placed in.
    - `private_dns_zone_resource_ids` (Optional): IDs of the `privatelink.api.azureml.ms` and `privatelink.notebooks.azure.net` zones to register in.
  EOT
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for endpoint in values(var.aml_private_endpoints) : can(regex("^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", endpoint.subnet_resource_id))])
    error_message = "`aml_private_endpoints`: each subnet_resource_id must be a full subnet ID: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>."
  }
}

# ---------------------------------------------------------------------------------------------
# Data, registry and key vault
# ---------------------------------------------------------------------------------------------

variable "storage_replication_type" {
  type        = string
  description = "Replication of the workspace storage account: `GRS` (default), `RAGRS`, `GZRS`, `RAGZRS`, `ZRS` or `LRS`."
  default     = "GRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "`storage_replication_type` must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS (upper case)."
  }
}

variable "container_registry_sku" {
  type        = string
  description = "Azure Container Registry tier: `Basic`, `Standard` (default) or `Premium`."
  default     = "Standard"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.container_registry_sku)
    error_message = "`container_registry_sku` must be \"Basic\", \"Standard\" or \"Premium\" (capitalised)."
  }
}

variable "key_vault_soft_delete_retention_days" {
  type        = number
  description = "Days a deleted key vault (and its secrets) can be recovered (7 to 90)."
  default     = 90

  validation {
    condition     = var.key_vault_soft_delete_retention_days >= 7 && var.key_vault_soft_delete_retention_days <= 90 && floor(var.key_vault_soft_delete_retention_days) == var.key_vault_soft_delete_retention_days
    error_message = "`key_vault_soft_delete_retention_days` must be a whole number from 7 to 90."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Log Analytics workspace and Application Insights data, in days (30 to 730)."
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "`log_retention_days` must be a whole number from 30 to 730."
  }
}

# ---------------------------------------------------------------------------------------------
# Azure ML compute
# ---------------------------------------------------------------------------------------------

variable "gpu_cluster_vm_size" {
  type        = string
  description = "VM size of the GPU training cluster. Default `Standard_NC4as_T4_v3` (1 x T4); larger: `Standard_NC8as_T4_v3`, `Standard_NC24ads_A100_v4`."
  default     = "Standard_NC4as_T4_v3"

  validation {
    condition     = can(regex("^Standard_N(C|D|G|V)[0-9]+[a-z]*(_[A-Z][A-Z0-9]*)?(_v[0-9]+)?$", var.gpu_cluster_vm_size))
    error_message = "`gpu_cluster_vm_size` must be a GPU size (N-series: NC, ND, NG or NV), such as \"Standard_NC4as_T4_v3\" or \"Standard_NC24ads_A100_v4\"."
  }

  validation {
    condition     = !can(regex("^Standard_(NC[0-9]+r?s_v[23]|NC[0-9]+r?|ND[0-9]+r?s|NV[0-9]+)$", var.gpu_cluster_vm_size))
    error_message = "`gpu_cluster_vm_size` names a retired size: NCv3 (e.g. Standard_NC6s_v3) was retired on 2025-09-30, NC/NCv2/ND/NV v1 before that. Use Standard_NC4as_T4_v3 (T4) or an NC A100 v4 size."
  }
}

variable "gpu_cluster_max_nodes" {
  type        = number
  description = "Maximum number of GPU nodes (1 to 100). The cluster scales to 0 when idle."
  default     = 2

  validation {
    condition     = var.gpu_cluster_max_nodes >= 1 && var.gpu_cluster_max_nodes <= 100 && floor(var.gpu_cluster_max_nodes) == var.gpu_cluster_max_nodes
    error_message = "`gpu_cluster_max_nodes` must be a whole number from 1 to 100 (check your NCasT4_v3 vCPU quota: 4 vCPUs per node)."
  }
}

variable "gpu_cluster_low_priority_enabled" {
  type        = bool
  description = "Use low-priority (pre-emptible, much cheaper) GPU nodes instead of dedicated ones."
  default     = false
}

variable "cpu_cluster_vm_size" {
  type        = string
  description = "VM size of the small CPU cluster used for data preparation, evaluation and environment image builds."
  default     = "Standard_D4s_v5"

  validation {
    condition     = can(regex("^Standard_(D|DS|E|F)[0-9]+[a-z]*(_v[2-6])?$", var.cpu_cluster_vm_size))
    error_message = "`cpu_cluster_vm_size` must be a general-purpose D/DS/E/F size such as \"Standard_D4s_v5\", \"Standard_D4as_v5\" or \"Standard_DS3_v2\"."
  }
}

variable "cpu_cluster_max_nodes" {
  type        = number
  description = "Maximum number of CPU nodes (1 to 20). The cluster scales to 0 when idle."
  default     = 2

  validation {
    condition     = var.cpu_cluster_max_nodes >= 1 && var.cpu_cluster_max_nodes <= 20 && floor(var.cpu_cluster_max_nodes) == var.cpu_cluster_max_nodes
    error_message = "`cpu_cluster_max_nodes` must be a whole number from 1 to 20."
  }
}

variable "cluster_idle_minutes_before_scale_down" {
  type        = number
  description = "Minutes an idle node waits before both clusters scale it down (2 to 1440)."
  default     = 15

  validation {
    condition     = var.cluster_idle_minutes_before_scale_down >= 2 && var.cluster_idle_minutes_before_scale_down <= 1440 && floor(var.cluster_idle_minutes_before_scale_down) == var.cluster_idle_minutes_before_scale_down
    error_message = "`cluster_idle_minutes_before_scale_down` must be a whole number of minutes from 2 to 1440."
  }
}

variable "model_name" {
  type        = string
  description = "Name of the registered model in the Azure ML registry (and the local registry)."
  default     = "ppe-hardhat-yolov3"

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$", var.model_name))
    error_message = "`model_name` must start with a letter or digit and contain only letters, digits, '-', '_' and '.' (at most 255 characters)."
  }
}

# ---------------------------------------------------------------------------------------------
# IoT
# ---------------------------------------------------------------------------------------------

variable "iothub_sku_name" {
  type        = string
  description = "IoT Hub tier: `S1` (default), `S2`, `S3` or `F1` (free, one per subscription). Basic tiers do not support IoT Edge."
  default     = "S1"

  validation {
    condition     = contains(["F1", "S1", "S2", "S3"], var.iothub_sku_name)
    error_message = "`iothub_sku_name` must be F1, S1, S2 or S3; the Basic tiers (B1-B3) have no IoT Edge support."
  }
}

variable "iothub_capacity" {
  type        = number
  description = "Number of IoT Hub units (1 to 200; F1 allows exactly 1)."
  default     = 1

  validation {
    condition     = var.iothub_capacity >= 1 && var.iothub_capacity <= 200 && floor(var.iothub_capacity) == var.iothub_capacity
    error_message = "`iothub_capacity` must be a whole number from 1 to 200."
  }
}

variable "dps_enabled" {
  type        = bool
  description = "Create an IoT Hub Device Provisioning Service linked to the hub, for zero-touch device enrolment."
  default     = false
}

variable "edge_image_repositories" {
  type        = list(string)
  description = "Registry repositories the edge devices' pull-only token may read (the default is the ppedetector module's image, environments/iotedge/modules/ppedetector/module.json). A trailing `/*` grants a whole namespace, e.g. `edge/*`."
  default     = ["ppedetector"]
  nullable    = false

  validation {
    condition     = length(var.edge_image_repositories) >= 1 && alltrue([for repository in var.edge_image_repositories : can(regex("^[a-z0-9]+([._/-][a-z0-9]+)*(/\\*)?$", repository))])
    error_message = "`edge_image_repositories` must list at least one lower-case repository name such as \"edge/scorer\" or a namespace such as \"edge/*\"."
  }
}

variable "edge_registry_password_rotation_days" {
  type        = number
  description = "Days between two generations of the edge devices' registry password (1 to 365). Two pull-only tokens take turns: each generation's password lives two periods, so the previous one stays valid while the scheduled edge deployment hands devices the new one. The plan fails when the period is too short for the pipelines' schedules (see edge_registry_rollout_allowance_days)."
  default     = 90

  validation {
    condition     = var.edge_registry_password_rotation_days >= 1 && var.edge_registry_password_rotation_days <= 365 && floor(var.edge_registry_password_rotation_days) == var.edge_registry_password_rotation_days
    error_message = "`edge_registry_password_rotation_days` must be a whole number from 1 to 365."
  }
}

variable "edge_registry_rollout_allowance_days" {
  type        = number
  description = "Days a scheduled run of the IaC pipeline (the apply that rotates the password) or of the edge deployment pipeline (the redeployment that hands devices the new one) may take from its scheduled start to its end, approval waits included (1 to 30). Approve those runs within it."
  default     = 7

  validation {
    condition     = var.edge_registry_rollout_allowance_days >= 1 && var.edge_registry_rollout_allowance_days <= 30 && floor(var.edge_registry_rollout_allowance_days) == var.edge_registry_rollout_allowance_days
    error_message = "`edge_registry_rollout_allowance_days` must be a whole number from 1 to 30."
  }
}

variable "edge_registry_password_margin_days" {
  type        = number
  description = "Days the password on the devices must still be valid, at the latest, when the next one has reached them (1 to 90): the safety margin of the rotation."
  default     = 7

  validation {
    condition     = var.edge_registry_password_margin_days >= 1 && var.edge_registry_password_margin_days <= 90 && floor(var.edge_registry_password_margin_days) == var.edge_registry_password_margin_days
    error_message = "`edge_registry_password_margin_days` must be a whole number from 1 to 90."
  }
}

# ---------------------------------------------------------------------------------------------
# Azure DevOps
# ---------------------------------------------------------------------------------------------

variable "ado_org_service_url" {
  type        = string
  description = "URL of the Azure DevOps organisation, `https://dev.azure.com/<organisation>`."

  validation {
    condition     = can(regex("^https://dev\\.azure\\.com/[A-Za-z0-9][A-Za-z0-9-]{0,48}[A-Za-z0-9]?/?$", var.ado_org_service_url))
    error_message = "`ado_org_service_url` must look like https://dev.azure.com/<organisation> (letters, digits and hyphens)."
  }
}

variable "ado_project_name" {
  type        = string
  description = "Name of the Azure DevOps project to create, without the environment: the project is `<this>-<environment>`, so each environment has its own project, repository and pipelines."
  default     = "ppe-hardhat-mlops"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9 ._-]{0,56}[A-Za-z0-9_-]$", var.ado_project_name))
    error_message = "`ado_project_name` must be 2 to 58 characters (the project adds -<environment>, at most 64 in all): letters, digits, spaces, '.', '_' and '-', not starting with '.', '_' or '-' and not ending with '.' or a space."
  }
}

variable "ado_repository_name" {
  type        = string
  description = "Name of the Azure Repos git repository that holds this template and the pipelines."
  default     = "ppe-hardhat"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.ado_repository_name))
    error_message = "`ado_repository_name` must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "ado_repository_import_url" {
  type        = string
  description = "HTTPS clone URL of a public git repository to import into the new Azure Repos repository (for example your fork of this template). Null: the repository starts empty and you push to it."
  default     = null

  validation {
    condition     = var.ado_repository_import_url == null ? true : can(regex("^https://[^\\s/]+/\\S+$", var.ado_repository_import_url))
    error_message = "`ado_repository_import_url` must be an https:// clone URL (or null to start with an empty repository)."
  }
}

variable "ado_default_branch" {
  type        = string
  description = "Default branch of the repository, as a full ref. Pipelines, branch policy and the service connection's branch check use it."
  default     = "refs/heads/main"

  validation {
    condition     = can(regex("^refs/heads/[A-Za-z0-9._/-]+$", var.ado_default_branch))
    error_message = "`ado_default_branch` must be a full ref such as \"refs/heads/main\"."
  }
}

variable "ado_production_approver_ids" {
  type        = list(string)
  description = "IDs (GUIDs) of the Azure DevOps users or groups that approve deployments to the `production` environment (`az devops user show --user <email> --query id`, or a group's origin ID)."
  nullable    = false

  validation {
    condition     = length(var.ado_production_approver_ids) >= 1 && alltrue([for id in var.ado_production_approver_ids : can(regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", id))])
    error_message = "`ado_production_approver_ids` must list at least one user or group ID, each a GUID; production deployments need an approver."
  }
}

variable "ado_product_pipelines" {
  type = map(object({
    pipeline_id = number
    deploys     = bool
  }))
  description = <<-EOT
    Pipelines of product repositories in this project that reuse ado_pipelines/templates/ (see
    ado_pipelines/README.md, "Reusing the templates from another repository"), keyed by a stable
    name. Each is authorised for what those templates use, so its first run is not held on
    "Permit" prompts: the templates repository (its jobs check it out for the ppe tooling), the
    workload service connection and the variable group.
    - `pipeline_id` (Required): the pipeline's definition ID (`definitionId=` in its URL).
    - `deploys` (Required): also authorise it for the staging and production environments (its
      edge delivery pipeline).
  EOT
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for pipeline in values(var.ado_product_pipelines) : pipeline.pipeline_id >= 1 && floor(pipeline.pipeline_id) == pipeline.pipeline_id])
    error_message = "Each `ado_product_pipelines` entry must set `pipeline_id` to a pipeline definition ID, a whole number from 1 (definitionId= in the pipeline's URL)."
  }
}

variable "ado_branch_policies_enabled" {
  type        = bool
  description = "Protect the default branch: pull requests with reviewers (`ado_minimum_reviewers`) and validation builds (CI, and the IaC plan for infrastructure/ changes). A protected branch refuses direct pushes, the first push included: leave this false for the first apply, push, then set it to true and apply again."
  default     = false
}

variable "ado_minimum_reviewers" {
  type        = number
  description = "Approvals a pull request into the default branch needs (0 to 10); 0: no reviewer policy, the validation builds still run."
  default     = 1

  validation {
    condition     = var.ado_minimum_reviewers >= 0 && var.ado_minimum_reviewers <= 10 && floor(var.ado_minimum_reviewers) == var.ado_minimum_reviewers
    error_message = "`ado_minimum_reviewers` must be a whole number from 0 to 10."
  }
}

variable "ado_allow_self_approval" {
  type        = bool
  description = "Let the author and the last pusher of a pull request approve it, so that a one-person team can merge with `ado_minimum_reviewers = 1`."
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Edge delivery and alerts (main.edge.tf, main.alerts.tf)
# ---------------------------------------------------------------------------------------------

variable "edge_deployments_to_keep" {
  type        = number
  description = "Superseded layered deployments the edge pipeline keeps per platform and environment as rollback targets (EDGE_DEPLOYMENTS_TO_KEEP). A paid hub holds 100 deployments; the free F1 hub holds 10, which leaves room for 0."
  default     = 3

  validation {
    condition     = var.edge_deployments_to_keep >= 0 && var.edge_deployments_to_keep <= 23 && floor(var.edge_deployments_to_keep) == var.edge_deployments_to_keep
    error_message = "`edge_deployments_to_keep` must be a whole number from 0 to 23 (a paid hub holds 100 deployments; on the free F1 tier use 0)."
  }
}
