"""Fixtures for the IoT Edge tests: a complete set of template variables, a tiny LiteRT model."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

# The edge module tests' model builder (TensorFlow runs in its subprocess, never in this one).
_MODELS_SCRIPT = Path(__file__).resolve().parents[1] / "edge" / "tflite_models.py"


@pytest.fixture(scope="session")
def tflite_models() -> ModuleType:
    """testing/unit/edge/tflite_models.py, imported by path (the test folders are not packages)."""
    name = "ppe_edge_tflite_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _MODELS_SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def edge_models(request: pytest.FixtureRequest, tflite_models: ModuleType) -> Path:
    """Folder with the tiny rigged/random fp32 and int8 models and labels.txt.

    Shares the edge tests' cache folder, so the models are built once for both.
    """
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache_root = Path(cache.mkdir("ppe_edge_tflite"))
    else:
        cache_root = Path(tempfile.gettempdir()) / f"ppe_edge_tflite_{os.getuid()}"
        cache_root.mkdir(exist_ok=True)
    return Path(tflite_models.ensure_models(cache_root))


@pytest.fixture
def edge_env() -> dict[str, str]:
    """Every variable the template and module.json need, with realistic values."""
    return {
        "CONTAINER_REGISTRY_SERVER": "PpeAcr.azurecr.io",
        "CONTAINER_REGISTRY_USERNAME": "edge-pull-token",
        "CONTAINER_REGISTRY_PASSWORD": "s3cr3t/With+Base64=",
        "CONTAINER_TAG": "from-env",
        "MODEL_VERSION": "3",
        "CAMERA_ID": "site1-cam1",
        "FRAME_SOURCE": "rtsp://10.0.0.5:554/stream1",
        "PPE_HOST_QUEUE_DIR": "/var/lib/ppedetector",
        "EDGEHUB_STORE_FORWARD_TTL_SECS": "86400",
    }
