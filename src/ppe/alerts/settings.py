"""Build the consumer from the function app's settings (passed in; nothing is read globally).

Settings (Terraform sets them on the function app, infrastructure/modules/alerts):

* ``ALERT_RECORDS_CONTAINER_URL``: ``https://<account>.blob.core.windows.net/<container>``;
* ``ALERT_WEBHOOK_URL``: the webhook (a Key Vault reference in Azure);
* ``AZURE_CLIENT_ID``: client id of the consumer's user-assigned managed identity;
* ``ALERT_CLAIM_TIMEOUT_S`` (optional, default 600): see :class:`ppe.alerts.records.BlobAlertStore`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ppe.alerts.consumer import AlertConsumer
from ppe.alerts.notify import WebhookNotifier
from ppe.alerts.records import BlobAlertStore
from ppe.errors import ConfigError

REQUIRED = ("ALERT_RECORDS_CONTAINER_URL", "ALERT_WEBHOOK_URL", "AZURE_CLIENT_ID")


def consumer_from_settings(settings: Mapping[str, str]) -> AlertConsumer:
    """The consumer for these settings, signing in to Storage with the managed identity.

    Raises:
        ConfigError: A setting is missing or malformed (named in the message).
    """
    missing = [name for name in REQUIRED if not settings.get(name)]
    if missing:
        raise ConfigError(
            f"function app setting(s) {', '.join(missing)} not set: Terraform sets them "
            "(infrastructure/modules/alerts, azurerm_function_app_flex_consumption.app_settings)"
        )
    try:
        timeout = float(settings.get("ALERT_CLAIM_TIMEOUT_S", "600"))
    except ValueError:
        raise ConfigError("ALERT_CLAIM_TIMEOUT_S must be a number of seconds") from None
    from azure.identity import ManagedIdentityCredential
    from azure.storage.blob import ContainerClient

    credential = ManagedIdentityCredential(client_id=settings["AZURE_CLIENT_ID"])
    container = ContainerClient.from_container_url(
        settings["ALERT_RECORDS_CONTAINER_URL"], credential=credential
    )
    return AlertConsumer(
        BlobAlertStore(container, claim_timeout_s=timeout),
        WebhookNotifier(settings["ALERT_WEBHOOK_URL"]),
    )
