# ---------------------------------------------------------------------------------------------
# Edge alerts reach people: IoT Hub routes the module's `alerts` output to a Service Bus queue,
# an Azure Functions app (Flex Consumption, Service Bus trigger) keeps one record blob per alert
# id and notifies a webhook once per alert id (src/ppe/alerts). Telemetry goes to the hub's
# built-in endpoint, separately.
# ---------------------------------------------------------------------------------------------

resource "azurerm_servicebus_namespace" "this" {
  #checkov:skip=CKV_AZURE_201:Customer-managed keys need the Premium tier; alert messages are small and short-lived.
  #checkov:skip=CKV_AZURE_199:Double encryption needs the Premium tier and customer-managed keys.
  #checkov:skip=CKV_AZURE_204:Public network access stays on: IoT Hub routes over the trusted-service path only with Premium private endpoints; access is Entra ID only (local auth off).
  name                          = var.names.servicebus_namespace
  location                      = var.location
  resource_group_name           = var.resource_group_name
  sku                           = "Standard"
  local_auth_enabled            = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true
  tags                          = var.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_servicebus_queue" "alerts" {
  name         = var.names.queue
  namespace_id = azurerm_servicebus_namespace.this.id
  # A queue used as an IoT Hub routing endpoint must not enable duplicate detection or sessions,
  # or the endpoint is unreachable (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-d2c);
  # the consumer de-duplicates by alert id instead.
  requires_duplicate_detection         = false
  requires_session                     = false
  max_delivery_count                   = 10 # then the dead-letter sub-queue
  lock_duration                        = "PT1M"
  default_message_ttl                  = "P14D"
  dead_lettering_on_message_expiration = true
}

# IoT Hub sends with its system-assigned identity (no connection string, no SAS key).
resource "azurerm_role_assignment" "iothub_sender" {
  scope                = azurerm_servicebus_queue.alerts.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = var.iothub_principal_id
  principal_type       = "ServicePrincipal"
  description          = "IoT Hub routes the edge module's alerts to this queue."
}

resource "azurerm_iothub_endpoint_servicebus_queue" "alerts" {
  name                = "alerts"
  resource_group_name = var.resource_group_name
  iothub_id           = var.iothub_id
  authentication_type = "identityBased"
  endpoint_uri        = "sb://${azurerm_servicebus_namespace.this.name}.servicebus.windows.net"
  entity_path         = azurerm_servicebus_queue.alerts.name

  depends_on = [azurerm_role_assignment.iothub_sender]
}

# Module messages carry the application property messageType (alert | telemetry), set by the
# module (src/ppe/edge/iothub.py); $connectionModuleId is the sending module, set by IoT Hub
# (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-routing-query-syntax).
resource "azurerm_iothub_route" "alerts" {
  name                = "edge-alerts"
  resource_group_name = var.resource_group_name
  iothub_name         = var.iothub_name
  source              = "DeviceMessages"
  condition           = "$connectionModuleId = '${var.module_id}' AND messageType = 'alert'"
  endpoint_names      = [azurerm_iothub_endpoint_servicebus_queue.alerts.name]
  enabled             = true
}

resource "azurerm_iothub_route" "telemetry" {
  name                = "edge-telemetry"
  resource_group_name = var.resource_group_name
  iothub_name         = var.iothub_name
  source              = "DeviceMessages"
  condition           = "$connectionModuleId = '${var.module_id}' AND messageType = 'telemetry'"
  endpoint_names      = ["events"]
  enabled             = true
}

# Once any route exists, messages that match none are dropped unless the fallback route is on.
resource "azurerm_iothub_fallback_route" "this" {
  resource_group_name = var.resource_group_name
  iothub_name         = var.iothub_name
  source              = "DeviceMessages"
  condition           = "true"
  endpoint_names      = ["events"]
  enabled             = true
}

# ---------------------------------------------------------------------------------------------
# The consumer: its identity, its storage (function host + alert records), the function app.
# ---------------------------------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "consumer" {
  name                = var.names.identity
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV_AZURE_35:The function app on the Flex Consumption plan reaches its storage over the public endpoint unless it is integrated into a virtual network, which this template does not create.
  #checkov:skip=CKV_AZURE_59:Same reason; anonymous access is off and shared keys are disabled (Entra ID only).
  #checkov:skip=CKV2_AZURE_33:No private endpoints without a virtual network (see CKV_AZURE_35).
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; customer-managed keys add a key lifecycle this template does not own.
  #checkov:skip=CKV_AZURE_33:No queues are used; queue logging would only add cost.
  #checkov:skip=CKV_AZURE_206:Locally redundant storage: the records are an audit trail of notifications already sent, and the queue keeps undelivered alerts.
  name                            = var.names.storage_account
  location                        = var.location
  resource_group_name             = var.resource_group_name
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true
  local_user_enabled              = false
  public_network_access_enabled   = true
  tags                            = var.tags

  blob_properties {
    # Every change of an alert record (received -> notified, duplicates) stays as a version.
    versioning_enabled = true

    delete_retention_policy {
      days = 30
    }

    container_delete_retention_policy {
      days = 30
    }
  }

  sas_policy {
    expiration_period = "1.00:00:00"
    expiration_action = "Log"
  }
}

resource "azurerm_storage_container" "deployment" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging is configured on the account's diagnostic settings by the operator, not per container.
  name                  = "function-deployment"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "records" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging is configured on the account's diagnostic settings by the operator, not per container.
  name                  = "alert-records"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

# The webhook URL is a secret (it carries its signature), so it never passes through Terraform:
# Terraform creates the secret holding the instruction below, and ignores its value afterwards;
# the operator stores the URL once. Until then ppe.alerts refuses to start with this text.
resource "azurerm_key_vault_secret" "webhook" {
  #checkov:skip=CKV_AZURE_41:A webhook URL has no expiry of its own; its owner rotates it with az keyvault secret set.
  name         = "alert-webhook-url"
  key_vault_id = var.key_vault_id
  value        = "not set: store the webhook URL with az keyvault secret set --vault-name ${element(split("/", var.key_vault_id), length(split("/", var.key_vault_id)) - 1)} --name alert-webhook-url --value <https URL>"
  content_type = "text/uri-list"
  tags         = var.tags

  lifecycle {
    ignore_changes = [value]
  }
}

locals {
  consumer_roles = {
    queue_receiver = {
      scope = azurerm_servicebus_queue.alerts.id
      role  = "Azure Service Bus Data Receiver"
      why   = "The alert consumer's Service Bus trigger receives, completes and abandons alert messages."
    }
    storage_owner = {
      scope = azurerm_storage_account.this.id
      role  = "Storage Blob Data Owner"
      why   = "The Functions host keeps its leases and deployment package in blobs (identity-based AzureWebJobsStorage); the consumer writes the alert records."
    }
  }
}

resource "azurerm_role_assignment" "consumer" {
  for_each = local.consumer_roles

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.consumer.principal_id
  principal_type       = "ServicePrincipal"
  description          = each.value.why
}

resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_225:A Flex Consumption (FC1) plan has no fixed workers to balance across zones; the platform places its on-demand instances.
  #checkov:skip=CKV_AZURE_212:A Flex Consumption (FC1) plan scales from zero on demand; a minimum worker count does not apply.
  name                = var.names.service_plan
  location            = var.location
  resource_group_name = var.resource_group_name
  os_type             = "Linux"
  sku_name            = "FC1"
  tags                = var.tags
}

resource "azurerm_function_app_flex_consumption" "this" {
  name                                           = var.names.function_app
  location                                       = var.location
  resource_group_name                            = var.resource_group_name
  service_plan_id                                = azurerm_service_plan.this.id
  runtime_name                                   = "python"
  runtime_version                                = "3.11"
  instance_memory_in_mb                          = 2048
  maximum_instance_count                         = 40
  storage_container_type                         = "blobContainer"
  storage_container_endpoint                     = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.deployment.name}"
  storage_authentication_type                    = "UserAssignedIdentity"
  storage_user_assigned_identity_id              = azurerm_user_assigned_identity.consumer.id
  https_only                                     = true
  public_network_access_enabled                  = true
  webdeploy_publish_basic_authentication_enabled = false
  tags                                           = var.tags

  # The user-assigned identity does the work (storage, queue, records); the system-assigned one
  # resolves the Key Vault reference of ALERT_WEBHOOK_URL, which App Service resolves with the
  # system-assigned identity unless keyVaultReferenceIdentity is set, and azurerm 4.55 exposes
  # no such argument for Flex Consumption apps.
  identity {
    type         = "SystemAssigned, UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.consumer.id]
  }

  site_config {
    application_insights_connection_string = var.application_insights_connection_string
    minimum_tls_version                    = "1.2"
  }

  # Read by environments/functions/alerts/function_app.py and ppe.alerts.settings. The host's
  # storage is identity-based (AzureWebJobsStorage__*); azurerm also writes an AzureWebJobsStorage
  # connection string with an empty key, which must be deleted after apply (hashicorp/
  # terraform-provider-azurerm#29693; infrastructure/README.md, "Edge alerts reach a person").
  app_settings = {
    AzureWebJobsStorage__accountName            = azurerm_storage_account.this.name
    AzureWebJobsStorage__credential             = "managedidentity"
    AzureWebJobsStorage__clientId               = azurerm_user_assigned_identity.consumer.client_id
    ALERTS_QUEUE_NAME                           = azurerm_servicebus_queue.alerts.name
    ALERTS_SERVICE_BUS__fullyQualifiedNamespace = "${azurerm_servicebus_namespace.this.name}.servicebus.windows.net"
    ALERTS_SERVICE_BUS__credential              = "managedidentity"
    ALERTS_SERVICE_BUS__clientId                = azurerm_user_assigned_identity.consumer.client_id
    ALERT_RECORDS_CONTAINER_URL                 = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.records.name}"
    ALERT_WEBHOOK_URL                           = "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.webhook.versionless_id})"
    AZURE_CLIENT_ID                             = azurerm_user_assigned_identity.consumer.client_id
  }

  depends_on = [azurerm_role_assignment.consumer]
}

resource "azurerm_role_assignment" "webhook_secret" {
  scope                = azurerm_key_vault_secret.webhook.resource_versionless_id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_function_app_flex_consumption.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
  description          = "The alert function app resolves the Key Vault reference of its webhook URL."
}
