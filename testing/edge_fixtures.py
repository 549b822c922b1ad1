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

import pytest

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
