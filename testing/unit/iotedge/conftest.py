"""Fixtures for the IoT Edge manifest tests: the real template and a complete set of variables."""

from __future__ import annotations

import pytest


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
        "PPE_HOST_DATA_DIR": "/var/lib/ppedetector",
        "EDGEHUB_STORE_FORWARD_TTL_SECS": "86400",
    }
