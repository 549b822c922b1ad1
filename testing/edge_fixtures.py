"""Shared IoT Edge test fixtures: tiny LiteRT models built once per cache key.

The unit and integration conftests import these fixtures (``testing`` is on the path).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ppe.iotedge import manifest as edge_manifest

_MODELS_SCRIPT = Path(__file__).resolve().parent / "unit" / "edge" / "tflite_models.py"


def load_tflite_models() -> ModuleType:
    """Import tflite_models.py by path (the test folders are not packages)."""
    name = "ppe_edge_tflite_models"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _MODELS_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tflite_models() -> ModuleType:
    return load_tflite_models()


@pytest.fixture(scope="session")
def edge_models(request: pytest.FixtureRequest, tflite_models: ModuleType) -> Path:
    """Folder with random/rigged fp32/int8 .tflite files, reference.npz and labels.txt.

    Kept in pytest's cache between runs (rebuilt when the builder or the model code changes);
    in the system temporary folder when the cache plugin is disabled, so the unit and
    integration folders still share one build.
    """
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache_root = Path(cache.mkdir("ppe_edge_tflite"))
    else:
        cache_root = Path(tempfile.gettempdir()) / f"ppe_edge_tflite_{os.getuid()}"
        cache_root.mkdir(exist_ok=True)
    return Path(tflite_models.ensure_models(cache_root))


# --- The module's container, created as the IoT Edge agent creates it ---------------------------
# The container tests and `make bench` (benchmarks/edge_image.py) both render the manifest here and
# create the container through ppe.iotedge.engine with its createOptions.

REPO = Path(__file__).resolve().parents[1]
IOTEDGE_DIR = REPO / "environments" / "iotedge"
SCHEMAS = REPO / "testing" / "fixtures" / "schemas" / "iotedge"
# Real hard-hat photos (the sample's val split): camera frames and /score uploads.
PHOTOS = REPO / "testing" / "fixtures" / "hardhat_sample" / "images" / "val"


def module_manifest(
    queue: Path, secrets: Path, platform: str = "amd64", model_version: str = "7"
) -> dict[str, Any]:
    """The manifest ``ppe edge manifest`` renders from the template and ``.env.template``.

    Only the device's folders and what the template leaves to the site are filled in; every
    limit (memory, pids, address) is the shipped default.
    """
    terraform = {"ACR_LOGIN_SERVER": "ppeacr.azurecr.io", "EDGE_REGISTRY_TOKEN_NAME": "edge"}
    env = edge_manifest.parse_dotenv((IOTEDGE_DIR / ".env.template").read_text(), terraform)
    env.update(
        CONTAINER_REGISTRY_PASSWORD="not-used-by-this-test",
        MODEL_VERSION=model_version,
        CAMERA_ID="gate-9",
        FRAME_SOURCE="/frames",
        PPE_HOST_QUEUE_DIR=str(queue),
        PPE_HOST_SECRETS_DIR=str(secrets),
    )
    manifest = edge_manifest.render_manifest(
        IOTEDGE_DIR / "deployment.template.json", env, platform, tag="test"
    )
    edge_manifest.validate_manifest(manifest, SCHEMAS)
    return manifest


def local_module_env(port: int, ca_file: str, device: str, module: str) -> dict[str, str]:
    """What a machine without an IoT Edge runtime must set over the manifest's module env.

    On the host network (the daemon has no bridge) the module binds loopback on ``port``; the
    agent's IOTEDGE_* variables are replaced by their local-debugging form, the connection string
    to a hub (or the test broker) and the CA file the module trusts.
    """
    return {
        "HTTP_PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
        "EdgeHubConnectionString": "HostName=test-hub.azure-devices.net;"
        f"DeviceId={device};ModuleId={module};SharedAccessKey=dGVzdC1rZXktbm90LWEtc2VjcmV0;"
        "GatewayHostName=localhost",
        "EdgeModuleCACertificateFile": ca_file,
    }
