locals {
  # -------------------------------------------------------------------------------------------
  # Naming: one CAF-style scheme, <abbreviation>-<workload>-<environment>[-<suffix>], computed
  # once here. Globally unique names (storage, key vault, registry, IoT Hub, DPS) carry a short
  # suffix that is stable for a given subscription/workload/environment/location.
  # -------------------------------------------------------------------------------------------
  derived_suffix = substr(sha256("${var.subscription_id}/${var.workload}/${var.environment}/${var.location}"), 0, 4)
  suffix         = var.name_suffix != "" ? var.name_suffix : local.derived_suffix
  base_name      = "${var.workload}-${var.environment}"
  compact_name   = "${var.workload}${var.environment}${local.suffix}"

  names = {
    resource_group        = "rg-${local.base_name}-${var.location}"
    log_analytics         = "log-${local.base_name}-${local.suffix}"
    application_insight   = "appi-${local.base_name}-${local.suffix}"
    key_vault             = "kv-${local.base_name}-${local.suffix}" # 3-24, letters, digits, '-'
    storage_account       = "st${local.compact_name}"               # 3-24, lower-case letters and digits
    container_registry    = "cr${local.compact_name}"               # 5-50, letters and digits
    aml_workspace         = "mlw-${local.base_name}-${local.suffix}"
    gpu_cluster           = "gpu-cluster" # AML compute names: 2-16 characters
    cpu_cluster           = "cpu-cluster"
    compute_identity      = "id-${local.base_name}-compute"
    pipeline_identity     = "id-${local.base_name}-pipelines"
    iothub                = "iot-${local.base_name}-${local.suffix}"
    dps                   = "provs-${local.base_name}-${local.suffix}"
    edge_registry_token   = "edge-pull"
    edge_registry_kv_name = "edge-registry-token-password"
    # Azure DevOps: one project per environment (so dev and prod stand side by side), and inside
    # it names without the environment, so that the same pipeline YAML runs in every project.
    ado_project        = "${var.ado_project_name}-${var.environment}"
    service_connection = "sc-${var.workload}-azure"
    variable_group     = "vg-${var.workload}"
    # Where the IaC pipeline finds this environment's state and inputs (bootstrap/ holds the
    # state account; infrastructure/environments/<environment>.tfvars the inputs).
    state_key = "${local.base_name}.tfstate"
    var_file  = "environments/${var.environment}.tfvars"
  }

  # How long Terraform waits after creating a role assignment before using it on a data plane.
  # Microsoft: role assignment changes can take up to 10 minutes to take effect
  # (https://learn.microsoft.com/azure/role-based-access-control/troubleshooting).
  rbac_propagation_wait = "600s"

  # One tag map, merged into every resource.
  tags = merge(var.tags, {
    workload    = var.workload
    environment = var.environment
    managed-by  = "terraform"
    repository  = var.ado_repository_name
  })

  # -------------------------------------------------------------------------------------------
  # Azure DevOps: the pipelines the project gets, the environments they deploy to.
  # uses_workload_connection: the pipeline runs steps with the least-privilege workload service
  #   connection created here (names.service_connection). The IaC pipeline does not: it plans and
  #   applies through the privileged connection an administrator creates outside this
  #   configuration (README.md, "The IaC service connection").
  # deploys: the pipeline has deployment jobs that target the staging/production environments.
  # pull_request_paths: the pipeline validates pull requests into the default branch that touch
  #   these paths (a build validation branch policy; Azure Repos ignores YAML `pr:` triggers).
  # -------------------------------------------------------------------------------------------
  pipelines = {
    ci = {
      name                     = "ci"
      yml_path                 = "ado_pipelines/ci_pipeline.yml"
      uses_workload_connection = false
      deploys                  = false
      pull_request_paths       = ["*"]
    }
    iac = {
      name                     = "iac"
      yml_path                 = "ado_pipelines/iac_pipeline.yml"
      uses_workload_connection = false
      deploys                  = true
      pull_request_paths       = ["/infrastructure/*"]
    }
    model_training = {
      name                     = "model-training"
      yml_path                 = "ado_pipelines/model_training_pipeline.yml"
      uses_workload_connection = true
      deploys                  = true
    }
    edge_deployment = {
      name                     = "edge-deployment"
      yml_path                 = "ado_pipelines/edge_deployment_pipeline.yml"
      uses_workload_connection = true
      deploys                  = true
    }
  }

  ado_environments = {
    staging    = "staging"
    production = "production"
  }

  # Every name the pipelines, the Azure ML jobs and the `ppe` CLI read. It fills the Azure DevOps
  # variable group and, through scripts/write_env.py, the local .env. Nothing secret goes here:
  # EDGE_REGISTRY_PASSWORD_SECRET is the *name* of a key vault secret, not its value.
  pipeline_variables = {
    AZURE_SUBSCRIPTION_ID         = var.subscription_id
    AZURE_TENANT_ID               = data.azurerm_client_config.current.tenant_id
    AZURE_LOCATION                = var.location
    AZURE_RESOURCE_GROUP          = azurerm_resource_group.this.name
    AML_WORKSPACE                 = module.aml.workspace_name
    AML_GPU_CLUSTER               = module.aml.gpu_cluster_name
    AML_CPU_CLUSTER               = module.aml.cpu_cluster_name
    ACR_NAME                      = azurerm_container_registry.this.name
    ACR_LOGIN_SERVER              = azurerm_container_registry.this.login_server
    IOTHUB_NAME                   = module.edge.iothub_name
    IOTHUB_HOSTNAME               = module.edge.iothub_hostname
    KEY_VAULT_NAME                = azurerm_key_vault.this.name
    STORAGE_ACCOUNT_NAME          = azurerm_storage_account.this.name
    ADO_SERVICE_CONNECTION        = local.names.service_connection
    ADO_ENVIRONMENT_STAGING       = local.ado_environments.staging
    ADO_ENVIRONMENT_PRODUCTION    = local.ado_environments.production
    EDGE_REGISTRY_TOKEN_NAME      = module.edge.registry_token_name
    EDGE_DEPLOYMENTS_TO_KEEP      = tostring(local.edge_deployments_to_keep)
    EDGE_REGISTRY_PASSWORD_SECRET = module.edge.registry_password_secret_name
    MODEL_NAME                    = var.model_name
    ADO_DEFAULT_BRANCH            = var.ado_default_branch
    TERRAFORM_STATE_KEY           = local.names.state_key
    TERRAFORM_VAR_FILE            = local.names.var_file
  }
}
