"""Tell people about an alert: one JSON POST to a webhook.

Any HTTPS endpoint works (a Teams workflow, a Logic App, an Action Group's webhook). The payload
carries a ``text`` line for chat tools and the whole alert; the ``Idempotency-Key`` header is the
alert id, so a receiver that de-duplicates can drop the rare repeat (see
:mod:`ppe.alerts.consumer` for when one can happen).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ppe.alerts.records import Alert
from ppe.errors import ConfigError, NotificationError

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: How the secret Terraform creates begins until the operator stores the URL
#: (infrastructure/modules/alerts, azurerm_key_vault_secret.webhook).
NOT_SET_PREFIX = "not set: "


def check_webhook_url(url: str) -> str:
    """The URL if it can carry alerts: HTTPS, or plain HTTP only to this machine (tests).

    Raises:
        ConfigError: The secret still holds Terraform's "not set" text, the Key Vault reference
            did not resolve, another scheme, no host, or plain HTTP to another machine.
    """
    if url.startswith(NOT_SET_PREFIX):
        raise ConfigError(f"ALERT_WEBHOOK_URL is {url}")
    if url.startswith("@Microsoft.KeyVault("):
        raise ConfigError(
            "ALERT_WEBHOOK_URL is a Key Vault reference that did not resolve: the function app's "
            "system-assigned identity needs Key Vault Secrets User on the secret (Terraform grants "
            "it) and the secret must exist"
        )
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ConfigError(
            "ALERT_WEBHOOK_URL must be an https:// URL (Terraform variable alert_webhook_url)"
        )
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(
            "ALERT_WEBHOOK_URL must use https:// (plain http only to 127.0.0.1, for tests)"
        )
    return url


def summary(alert: Alert) -> str:
    """One line for people: what, where, when."""
    heads = alert.body.get("counts", {}).get("head", "?")
    return (
        f"No helmet: {heads} person(s) without a helmet at camera {alert.camera_id} "
        f"(device {alert.device_id}) at {alert.time}. Alert {alert.alert_id}."
    )


class WebhookNotifier:
    """POST each alert to one webhook.

    Args:
        url: The webhook (checked by :func:`check_webhook_url`).
        timeout_s: Seconds to wait for the answer.
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._url = check_webhook_url(url)
        self._timeout_s = timeout_s

    def notify(self, alert: Alert) -> int:
        """Send the notification; returns the HTTP status (2xx).

        Raises:
            NotificationError: Any other status, or the webhook could not be reached.
        """
        payload = {"text": summary(alert), "alert": alert.body}
        request = urllib.request.Request(
            self._url,
            data=json.dumps(payload).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": alert.alert_id},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            raise NotificationError(
                f"alert {alert.alert_id}: the webhook answered HTTP {error.code}; will retry"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise NotificationError(
                f"alert {alert.alert_id}: the webhook is not reachable ({error}); will retry"
            ) from None
        logger.info("alert %s: webhook answered %s", alert.alert_id, status)
        return status
