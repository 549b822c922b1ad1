terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.55.0, < 5.0.0"
    }
  }

  # The state of the state storage stays local (commit nothing; keep terraform.tfstate safe or
  # migrate it into the container it creates with `terraform init -migrate-state`).
}
