"""The alert path in Terraform matches the module, the Azure rules and the consumer's code.

Each rule cites its Microsoft documentation. Terraform is read with HashiCorp's HCL parser (the
same as the infrastructure tests); the function app is imported with the real azure-functions
package and fed a real ``azure.functions.ServiceBusMessage``; its deployment package is built by
``package.sh`` and imported from the extracted files alone.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from ppe.alerts.consumer import AlertConsumer
from ppe.alerts.notify import WebhookNotifier, check_webhook_url
from ppe.alerts.records import BlobAlertStore
from ppe.alerts.settings import REQUIRED, consumer_from_settings
from ppe.edge.iothub import OUTPUTS, build_message
from ppe.edge.queue import QueuedMessage
from ppe.errors import ConfigError, MalformedAlertError
from ppe.iotedge.manifest import MODULE_NAME

from .conftest import REPO_ROOT, Webhook

INFRASTRUCTURE = REPO_ROOT / "infrastructure"
MODULE = INFRASTRUCTURE / "modules" / "alerts"
FUNCTION = REPO_ROOT / "environments" / "functions" / "alerts"


def _parsed(*files: Path) -> dict[tuple[str, str], dict[str, Any]]:
    sys.path.insert(0, str(REPO_ROOT / "testing" / "integration"))
    from infrastructure.terraform_config import iter_blocks, parse_files

    blocks: dict[tuple[str, str], dict[str, Any]] = {}
    for block in iter_blocks(parse_files(list(files))):
        if block.kind == "resource":
            blocks[block.labels] = block.body
        elif block.kind == "locals":
            blocks.setdefault(("locals", ""), {}).update(block.body)
    return blocks


@pytest.fixture(scope="module")
def alerts_tf() -> dict[tuple[str, str], dict[str, Any]]:
    return _parsed(MODULE / "main.tf")


def _function_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_app", FUNCTION / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# IoT Hub routing
# ------------------------------------------------------------------------------------------------


def test_routes_select_what_the_module_sends(alerts_tf: dict[tuple[str, str], Any]) -> None:
    """Routing queries read application properties by name and the sending module as
    $connectionModuleId (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-routing-query-syntax);
    the module sets messageType on every message (src/ppe/edge/iothub.py)."""
    alert = build_message(QueuedMessage(1, "alert", "a-1", b"{}", 0.0, 0))
    telemetry = build_message(QueuedMessage(2, "telemetry", "t-1", b"{}", 0.0, 0))
    assert alert.custom_properties["messageType"] == "alert"
    assert telemetry.custom_properties["messageType"] == "telemetry"
    assert alert.content_type == "application/json" and alert.content_encoding == "utf-8"
    variables = (MODULE / "variables.tf").read_text()
    default = re.search(r'variable "module_id" \{.*?default\s*=\s*"([^"]+)"', variables, re.DOTALL)
    assert default and default.group(1) == MODULE_NAME
    routes = {
        name: body for (kind, name), body in alerts_tf.items() if kind == "azurerm_iothub_route"
    }
    assert routes["alerts"]["condition"] == (
        "$connectionModuleId = '${var.module_id}' AND messageType = 'alert'"
    )
    assert routes["alerts"]["endpoint_names"] == [
        "${azurerm_iothub_endpoint_servicebus_queue.alerts.name}"
    ]
    assert routes["telemetry"]["condition"] == (
        "$connectionModuleId = '${var.module_id}' AND messageType = 'telemetry'"
    )
    assert routes["telemetry"]["endpoint_names"] == ["events"]
    assert all(r["source"] == "DeviceMessages" and r["enabled"] is True for r in routes.values())
    # The module's outputs are alerts and telemetry; edgeHub forwards both upstream.
    assert set(OUTPUTS) == {"alert", "telemetry"}
    # Once a route exists, unmatched messages are dropped unless the fallback route is enabled
    # (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-d2c#fallback-route).
    fallback = alerts_tf[("azurerm_iothub_fallback_route", "this")]
    assert fallback["enabled"] is True and fallback["endpoint_names"] == ["events"]


def test_the_queue_is_a_valid_iot_hub_endpoint(alerts_tf: dict[tuple[str, str], Any]) -> None:
    """Service Bus queues used as IoT Hub endpoints must not enable sessions or duplicate
    detection (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-d2c); IoT Hub
    sends with its managed identity, which needs Azure Service Bus Data Sender on the entity
    (https://learn.microsoft.com/azure/iot-hub/iot-hub-managed-identity#egress-connectivity-from-iot-hub-to-other-azure-resources)."""
    queue = alerts_tf[("azurerm_servicebus_queue", "alerts")]
    assert queue["requires_duplicate_detection"] is False
    assert queue["requires_session"] is False
    assert queue["dead_lettering_on_message_expiration"] is True
    # A message that keeps failing (malformed) is dead-lettered after this many deliveries
    # (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues),
    # as infrastructure/README.md tells the operator.
    assert queue["max_delivery_count"] == 10
    assert "after 10 attempts" in (INFRASTRUCTURE / "README.md").read_text()
    endpoint = alerts_tf[("azurerm_iothub_endpoint_servicebus_queue", "alerts")]
    assert endpoint["authentication_type"] == "identityBased"
    assert endpoint["entity_path"] == "${azurerm_servicebus_queue.alerts.name}"
    assert "connection_string" not in endpoint
    assert endpoint["depends_on"] == ["${azurerm_role_assignment.iothub_sender}"]
    sender = alerts_tf[("azurerm_role_assignment", "iothub_sender")]
    assert sender["role_definition_name"] == "Azure Service Bus Data Sender"
    assert sender["scope"] == "${azurerm_servicebus_queue.alerts.id}"
    assert sender["principal_id"] == "${var.iothub_principal_id}"
    namespace = alerts_tf[("azurerm_servicebus_namespace", "this")]
    assert namespace["local_auth_enabled"] is False  # no SAS keys anywhere on the path
    text = (INFRASTRUCTURE / "main.alerts.tf").read_text()
    assert re.search(r"iothub_principal_id\s*=\s*module\.edge\.iothub_principal_id", text)


# ------------------------------------------------------------------------------------------------
# The function app: its settings, its trigger, its timeouts, its package
# ------------------------------------------------------------------------------------------------


def test_the_function_app_settings_are_the_ones_the_code_reads(
    alerts_tf: dict[tuple[str, str], Any],
) -> None:
    app = alerts_tf[("azurerm_function_app_flex_consumption", "this")]
    settings = app["app_settings"]
    function_app = _function_app()
    assert settings[function_app.QUEUE_SETTING] == "${azurerm_servicebus_queue.alerts.name}"
    prefix = function_app.CONNECTION + "__"
    assert {k for k in settings if k.startswith(prefix)} == {
        prefix + "fullyQualifiedNamespace", prefix + "credential", prefix + "clientId",
    }  # fmt: skip
    assert set(REQUIRED) <= set(settings)
    assert settings["ALERT_WEBHOOK_URL"] == (
        "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault_secret.webhook.versionless_id})"
    )
    assert app["runtime_name"] == "python" and app["runtime_version"] == "3.11"
    # Host storage through the user-assigned identity needs __credential and __clientId
    # (https://learn.microsoft.com/azure/azure-functions/functions-reference#common-properties-for-identity-based-connections).
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == (
        "${azurerm_user_assigned_identity.consumer.client_id}"
    )
    # A plain AzureWebJobsStorage would win over those; azurerm adds an empty one anyway
    # (hashicorp/terraform-provider-azurerm#29693), so the documented deploy removes it.
    assert "AzureWebJobsStorage" not in settings
    readme = (INFRASTRUCTURE / "README.md").read_text()
    assert "az functionapp config appsettings delete" in readme
    assert "--setting-names AzureWebJobsStorage" in readme
    (binding,) = function_app.app.get_functions()[0].get_bindings()
    assert binding.type == "serviceBusTrigger"
    assert binding.queue_name == f"%{function_app.QUEUE_SETTING}%"
    assert binding.connection == function_app.CONNECTION


def test_a_claim_outlives_the_function_timeout_and_the_queue_lock(
    alerts_tf: dict[tuple[str, str], Any],
) -> None:
    """A delivery that is still running must not be taken over: the claim timeout exceeds the
    function timeout plus the message lock (https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout)."""
    host = json.loads((FUNCTION / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout_s = hours * 3600 + minutes * 60 + seconds
    lock = alerts_tf[("azurerm_servicebus_queue", "alerts")]["lock_duration"]
    lock_s = int(re.fullmatch(r"PT(\d+)M", lock).group(1)) * 60  # type: ignore[union-attr]
    import inspect

    default = inspect.signature(BlobAlertStore).parameters["claim_timeout_s"].default
    assert default >= timeout_s + lock_s


def test_the_function_hands_a_service_bus_message_to_the_consumer(
    records: ContainerClient, webhook: Webhook
) -> None:
    # The concrete message class the Functions worker builds for a Service Bus trigger.
    from azure.functions.servicebus import ServiceBusMessage

    function_app = _function_app()
    consumer = AlertConsumer(BlobAlertStore(records), WebhookNotifier(webhook.url))
    alert_id = str(uuid.uuid4())
    fields = {"alertId": alert_id, "type": "no_helmet", "deviceId": "gw-1", "cameraId": "cam-1"}
    body = json.dumps({**fields, "time": "2026-12-01T10:00:00.000Z"}).encode()

    def message(sequence: int, payload: bytes = body) -> ServiceBusMessage:
        return ServiceBusMessage(
            body=payload, message_id=alert_id, sequence_number=sequence, delivery_count=1,
            application_properties={"alertId": alert_id, "messageType": "alert"},
            user_properties={},
        )  # fmt: skip

    assert function_app.handle_message(message(11), consumer) == "notified"
    assert function_app.handle_message(message(12), consumer) == "duplicate"
    assert len(webhook.received) == 1
    with pytest.raises(MalformedAlertError):
        function_app.handle_message(message(13, b"not json"), consumer)


def test_the_consumer_refuses_missing_or_unset_settings() -> None:
    with pytest.raises(ConfigError, match="ALERT_RECORDS_CONTAINER_URL, ALERT_WEBHOOK_URL"):
        consumer_from_settings({"AZURE_CLIENT_ID": "x"})
    text = (MODULE / "main.tf").read_text()
    unset = re.search(r'value\s*=\s*"(not set: [^"]+)"', text)
    assert unset, "the webhook secret's initial value changed: keep NOT_SET_PREFIX in step"
    with pytest.raises(ConfigError, match="az keyvault secret set"):
        check_webhook_url(unset.group(1))
    with pytest.raises(ConfigError, match="did not resolve"):
        check_webhook_url("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x)")


def test_function_requirements_pin_the_locked_versions() -> None:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=!~ ]", d)[0] for d in project["optional-dependencies"]["alerts"]}
    pins = dict(
        re.findall(r"^([a-z0-9-]+)==(\S+)", (FUNCTION / "requirements.in").read_text(), re.M)
    )
    assert set(pins) == wanted
    assert pins == {name: locked[name] for name in wanted}
    hashed = (FUNCTION / "requirements.txt").read_text()
    for name, version in pins.items():
        assert f"\n{name}=={version} \\\n    --hash=sha256:" in hashed


def test_the_deployment_package_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "alerts-function.zip"
    subprocess.run(["bash", str(FUNCTION / "package.sh"), str(out)], check=True, timeout=60,
                   capture_output=True)  # fmt: skip
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "app")
    assert {"function_app.py", "host.json", "requirements.txt", "ppe/errors.py",
            "ppe/alerts/consumer.py"} <= names  # fmt: skip
    assert not any(n.startswith(("ppe/edge", "ppe/aml")) for n in names)
    # Import it from the extracted files alone, as the Functions host does.
    probe = (
        "import function_app, ppe, ppe.alerts.consumer; "
        "print(ppe.__file__); print(function_app.app.get_functions()[0].get_function_name())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path / "app", capture_output=True, text=True,
        env={"PYTHONPATH": str(tmp_path / "app"), "PATH": "/usr/bin:/bin"}, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split()[:2]
    assert first.startswith(str(tmp_path / "app")) and second == "alerts"
