provider "azurerm" {
  # azurerm 4.x needs the subscription explicitly (or ARM_SUBSCRIPTION_ID).
  subscription_id = var.subscription_id
  # Data-plane calls to the storage account use Entra ID, so shared keys are never read here.
  storage_use_azuread = true

  features {
    key_vault {
      # Purge protection is on; never try to purge on destroy.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
    resource_group {
      prevent_deletion_if_contains_resources = true
    }
    machine_learning {
      purge_soft_deleted_workspace_on_destroy = false
    }
  }
}

# Authentication comes from the environment, never from this file: AZDO_PERSONAL_ACCESS_TOKEN on a
# laptop, or in the IaC pipeline workload identity federation through the same ARM_* variables as
# azurerm (ARM_USE_OIDC, ARM_ADO_PIPELINE_SERVICE_CONNECTION_ID, ARM_OIDC_REQUEST_TOKEN).
provider "azuredevops" {
  org_service_url = var.ado_org_service_url
}
