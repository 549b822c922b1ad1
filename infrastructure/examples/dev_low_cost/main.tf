# The cheapest useful platform: low-priority T4 nodes (at most one), the free IoT Hub tier, a
# Basic registry, locally redundant storage, one reviewer. Run from this folder:
#   terraform init && terraform apply -var-file=../../terraform.tfvars
# (the platform root configures its own providers from these variables; its backend block is
# ignored when it is used as a module, so this example keeps local state).
module "platform" {
  source = "../../"

  subscription_id             = var.subscription_id
  ado_org_service_url         = var.ado_org_service_url
  ado_production_approver_ids = var.ado_production_approver_ids
  iac_principal_id            = var.iac_principal_id

  environment                      = "dev"
  gpu_cluster_vm_size              = "Standard_NC4as_T4_v3"
  gpu_cluster_max_nodes            = 1
  gpu_cluster_low_priority_enabled = true
  cpu_cluster_max_nodes            = 1
  iothub_sku_name                  = "F1"
  iothub_capacity                  = 1
  edge_deployments_to_keep         = 0 # the free hub holds 10 deployments: no rollback targets
  container_registry_sku           = "Basic"
  ado_minimum_reviewers            = 1

  tags = {
    example = "dev_low_cost"
  }
}
