"""Fixtures for the IoT Edge module tests: tiny LiteRT models built once per cache key."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_MODELS_SCRIPT = Path(__file__).with_name("tflite_models.py")


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
def edge_models(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tflite_models: ModuleType,
) -> Path:
    """Folder with random/rigged fp32/int8 .tflite files, reference.npz and labels.txt.

    Kept in pytest's cache between runs (rebuilt when the builder or the model code changes);
    built into a temporary folder when the cache plugin is disabled.
    """
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache_root = Path(cache.mkdir("ppe_edge_tflite"))
    else:
        cache_root = tmp_path_factory.mktemp("ppe_edge_tflite")
    return Path(tflite_models.ensure_models(cache_root))
