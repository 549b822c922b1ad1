"""Fixtures for the IoT Edge tests: a complete set of template variables, a tiny LiteRT model."""

from __future__ import annotations

import pytest

# The edge tests' tiny LiteRT models (built once, in a TensorFlow subprocess, shared cache).
from testing.edge_fixtures import edge_models, tflite_models

__all__ = ["edge_models", "tflite_models"]


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
        "PPE_HOST_SECRETS_DIR": "/etc/ppedetector/secrets",
        "PPE_HTTP_HOST_IP": "127.0.0.1",
        "PPE_MEMORY_BYTES": "536870912",
        "EDGEHUB_STORE_FORWARD_TTL_SECS": "86400",
        "EDGEHUB_HOST_STORE_DIR": "/var/lib/iotedge-hub",
    }
