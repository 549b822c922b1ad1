locals {
  workload_connection_pipelines = { for key, pipeline in var.pipelines : key => pipeline if pipeline.uses_workload_connection }
  deploy_pipelines              = { for key, pipeline in var.pipelines : key => pipeline if pipeline.deploys }
  # Azure Repos Git ignores YAML `pr:` triggers; pull requests run pipelines through build
  # validation branch policies (https://learn.microsoft.com/azure/devops/pipelines/repos/azure-repos-git#pr-triggers).
  validation_pipelines = {
    for key, pipeline in var.pipelines : key => pipeline
    if pipeline.pull_request_paths != null && var.branch_policy.enabled
  }
  # One authorisation per (pipeline, environment) pair, with static keys.
  environment_authorisations = merge([
    for pipeline_key, pipeline in local.deploy_pipelines : {
      for environment_key, environment_name in var.environments :
      "${pipeline_key}.${environment_key}" => { pipeline = pipeline_key, environment = environment_key }
    }
  ]...)
  # The same for the product pipelines that deploy (reused templates).
  product_environment_authorisations = merge([
    for pipeline_key, pipeline in var.product_pipelines : {
      for environment_key, environment_name in var.environments :
      "${pipeline_key}.${environment_key}" => { pipeline_id = pipeline.pipeline_id, environment = environment_key }
    } if pipeline.deploys
  ]...)
}

resource "azuredevops_project" "this" {
  name               = var.project_name
  description        = "Hard-hat (PPE) detection MLOps platform: training on Azure ML, deployment to IoT Edge."
  visibility         = "private"
  version_control    = "Git"
  work_item_template = "Basic"

  features = {
    boards       = "disabled"
    repositories = "enabled"
    pipelines    = "enabled"
    testplans    = "disabled"
    artifacts    = "enabled"
  }
}

resource "azuredevops_git_repository" "this" {
  #checkov:skip=CKV2_ADO_1:The number of approvals is the team's choice (ado_minimum_reviewers, 0-10, default 1 so a one-person team can merge); two are recommended for shared repositories.
  project_id     = azuredevops_project.this.id
  name           = var.repository_name
  default_branch = var.default_branch

  # Without an import the repository starts empty (Uninitialized): a Clean one already has a commit,
  # and the quick start's first `git push` of the local history would be rejected.
  initialization {
    init_type   = var.repository_import_url == null ? "Uninitialized" : "Import"
    source_type = var.repository_import_url == null ? null : "Git"
    source_url  = var.repository_import_url
  }

  lifecycle {
    # Imports and pushes move the branch; Terraform must not re-initialise the repository.
    ignore_changes = [initialization]
  }
}

resource "azuredevops_branch_policy_min_reviewers" "default_branch" {
  count = var.branch_policy.enabled && var.branch_policy.minimum_reviewers > 0 ? 1 : 0

  project_id = azuredevops_project.this.id
  enabled    = true
  blocking   = true

  settings {
    reviewer_count               = var.branch_policy.minimum_reviewers
    submitter_can_vote           = var.branch_policy.allow_self_approval
    last_pusher_cannot_approve   = !var.branch_policy.allow_self_approval
    on_push_reset_approved_votes = true

    scope {
      repository_id  = azuredevops_git_repository.this.id
      repository_ref = var.default_branch
      match_type     = "Exact"
    }
  }
}

resource "azuredevops_branch_policy_build_validation" "default_branch" {
  for_each = local.validation_pipelines

  project_id = azuredevops_project.this.id
  enabled    = true
  blocking   = true

  settings {
    display_name        = "${each.value.name} (pull request validation)"
    build_definition_id = azuredevops_build_definition.this[each.key].id
    valid_duration      = 720
    filename_patterns   = each.value.pull_request_paths

    scope {
      repository_id  = azuredevops_git_repository.this.id
      repository_ref = var.default_branch
      match_type     = "Exact"
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Service connection: workload identity federation backed by a user-assigned managed identity.
# No secret exists anywhere; the federated credential is created in the root (main.identity.tf)
# from this endpoint's issuer and subject.
# ---------------------------------------------------------------------------------------------

resource "azuredevops_serviceendpoint_azurerm" "this" {
  project_id                             = azuredevops_project.this.id
  service_endpoint_name                  = var.service_connection.name
  description                            = "Workload identity federation to a user-assigned managed identity (managed by Terraform)."
  service_endpoint_authentication_scheme = "WorkloadIdentityFederation"
  azurerm_spn_tenantid                   = var.service_connection.tenant_id
  azurerm_subscription_id                = var.service_connection.subscription_id
  azurerm_subscription_name              = var.service_connection.subscription_name

  credentials {
    serviceprincipalid = var.service_connection.client_id
  }
}

# Only runs from the default branch may use the Azure connection.
resource "azuredevops_check_branch_control" "service_connection" {
  project_id                       = azuredevops_project.this.id
  display_name                     = "Default branch only"
  target_resource_id               = azuredevops_serviceendpoint_azurerm.this.id
  target_resource_type             = "endpoint"
  allowed_branches                 = var.default_branch
  verify_branch_protection         = true
  ignore_unknown_protection_status = false
}

# ---------------------------------------------------------------------------------------------
# Variable group: every name the pipelines read, straight from Terraform outputs. No secrets.
# ---------------------------------------------------------------------------------------------

resource "azuredevops_variable_group" "this" {
  project_id   = azuredevops_project.this.id
  name         = var.variable_group_name
  description  = "Resource names from Terraform (infrastructure/ output pipeline_variables). Do not edit by hand."
  allow_access = false

  dynamic "variable" {
    for_each = var.pipeline_variables

    content {
      name  = variable.key
      value = variable.value
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Pipelines and environments.
# ---------------------------------------------------------------------------------------------

resource "azuredevops_build_definition" "this" {
  for_each = var.pipelines

  project_id      = azuredevops_project.this.id
  name            = each.value.name
  variable_groups = [azuredevops_variable_group.this.id]

  repository {
    repo_type   = "TfsGit"
    repo_id     = azuredevops_git_repository.this.id
    branch_name = var.default_branch
    yml_path    = each.value.yml_path
  }

  ci_trigger {
    use_yaml = true
  }
}

resource "azuredevops_environment" "this" {
  for_each = var.environments

  project_id  = azuredevops_project.this.id
  name        = each.value
  description = "Deployment target ${each.key} (managed by Terraform)."
}

resource "azuredevops_check_approval" "production" {
  project_id                 = azuredevops_project.this.id
  target_resource_id         = azuredevops_environment.this["production"].id
  target_resource_type       = "environment"
  approvers                  = var.production_approver_ids
  minimum_required_approvers = 1
  requester_can_approve      = false
  instructions               = "Check the staging evaluation report and the promotion gate before approving."
  timeout                    = 4320
}

# ---------------------------------------------------------------------------------------------
# Pipeline authorisations: each pipeline gets exactly the resources it uses, so the first run is
# not blocked on "Permit" prompts and no pipeline gets more than it needs.
# ---------------------------------------------------------------------------------------------

resource "azuredevops_pipeline_authorization" "service_connection" {
  for_each = local.workload_connection_pipelines

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_serviceendpoint_azurerm.this.id
  type        = "endpoint"
  pipeline_id = azuredevops_build_definition.this[each.key].id
}

resource "azuredevops_pipeline_authorization" "variable_group" {
  for_each = var.pipelines

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_variable_group.this.id
  type        = "variablegroup"
  pipeline_id = azuredevops_build_definition.this[each.key].id
}

resource "azuredevops_pipeline_authorization" "environment" {
  for_each = local.environment_authorisations

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_environment.this[each.value.environment].id
  type        = "environment"
  pipeline_id = azuredevops_build_definition.this[each.value.pipeline].id
}

# ---------------------------------------------------------------------------------------------
# Product pipelines that reuse the templates (ado_pipelines/README.md, "Reusing the templates
# from another repository"). Their jobs check this repository out beside their own for the ppe
# tooling (ado_pipelines/templates/steps/ppe_tooling.yml). With "Protect access to repositories in
# YAML pipelines" on (the default for new projects), a pipeline must be permitted each repository
# it checks out or names as a resource
# (https://learn.microsoft.com/azure/devops/pipelines/security/secure-access-to-repos), and each
# service connection, variable group and environment it uses: authorised here per pipeline, for
# exactly those. Checkout only reads: the project's build identity already has Read on the
# repositories of its project.
# ---------------------------------------------------------------------------------------------

resource "azuredevops_pipeline_authorization" "product_template_repository" {
  for_each = var.product_pipelines

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_git_repository.this.id
  type        = "repository"
  pipeline_id = each.value.pipeline_id
}

resource "azuredevops_pipeline_authorization" "product_service_connection" {
  for_each = var.product_pipelines

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_serviceendpoint_azurerm.this.id
  type        = "endpoint"
  pipeline_id = each.value.pipeline_id
}

resource "azuredevops_pipeline_authorization" "product_variable_group" {
  for_each = var.product_pipelines

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_variable_group.this.id
  type        = "variablegroup"
  pipeline_id = each.value.pipeline_id
}

resource "azuredevops_pipeline_authorization" "product_environment" {
  for_each = local.product_environment_authorisations

  project_id  = azuredevops_project.this.id
  resource_id = azuredevops_environment.this[each.value.environment].id
  type        = "environment"
  pipeline_id = each.value.pipeline_id
}
