"""What the rest of the repository may rely on from `infrastructure/` (Terraform).

Import these constants instead of repeating names: the infrastructure tests prove that
`infrastructure/outputs.tf` provides exactly these keys and outputs, and that Terraform points the
Azure DevOps build definitions at exactly these pipeline files.
"""

from __future__ import annotations

# Keys of the `pipeline_variables` output (map of string, nothing secret). The same map fills the
# Azure DevOps variable group and the local `.env` (infrastructure/scripts/write_env.py).
PIPELINE_VARIABLE_KEYS: frozenset[str] = frozenset(
    {
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_TENANT_ID",
        "AZURE_LOCATION",
        "AZURE_RESOURCE_GROUP",
        "AML_WORKSPACE",
        "AML_GPU_CLUSTER",
        "AML_CPU_CLUSTER",
        "ACR_NAME",
        "ACR_LOGIN_SERVER",
        "IOTHUB_NAME",
        "IOTHUB_HOSTNAME",
        "KEY_VAULT_NAME",
        "STORAGE_ACCOUNT_NAME",
        "ADO_SERVICE_CONNECTION",
        "ADO_ENVIRONMENT_STAGING",
        "ADO_ENVIRONMENT_PRODUCTION",
        "EDGE_REGISTRY_TOKEN_NAME",
        "EDGE_REGISTRY_PASSWORD_SECRET",
        "EDGE_DEPLOYMENTS_TO_KEEP",
        "MODEL_NAME",
        "ADO_DEFAULT_BRANCH",
        "TERRAFORM_STATE_KEY",
        "TERRAFORM_VAR_FILE",
    }
)

# Names Terraform gives that other parts hard-code as defaults (AML job YAML, docs).
DEFAULT_MODEL_NAME = "ppe-hardhat-yolov3"
AML_GPU_CLUSTER_NAME = "gpu-cluster"
AML_CPU_CLUSTER_NAME = "cpu-cluster"
ADO_ENVIRONMENT_STAGING = "staging"
ADO_ENVIRONMENT_PRODUCTION = "production"

# The Azure DevOps pipelines Terraform creates build definitions for (paths from the repo root).
PIPELINE_FILES: frozenset[str] = frozenset(
    {
        "ado_pipelines/ci_pipeline.yml",
        "ado_pipelines/iac_pipeline.yml",
        "ado_pipelines/model_training_pipeline.yml",
        "ado_pipelines/edge_deployment_pipeline.yml",
    }
)

# Root outputs other code reads with `terraform output` (besides pipeline_variables).
ROOT_OUTPUTS: frozenset[str] = frozenset(
    {
        "pipeline_variables",
        "resource_group_name",
        "aml_workspace_name",
        "aml_workspace_id",
        "aml_gpu_cluster_name",
        "aml_cpu_cluster_name",
        "aml_compute_identity_client_id",
        "container_registry_login_server",
        "key_vault_name",
        "storage_account_name",
        "iothub_name",
        "iothub_hostname",
        "dps_name",
        "dps_id_scope",
        "edge_registry_token_name",
        "edge_registry_password_secret_name",
        "pipeline_identity_client_id",
        "ado_project_id",
        "ado_repository_url",
        "ado_service_connection_name",
        "ado_build_definition_ids",
    }
)
