"""Model folders: save/load round trip, atomic writes, and the "not a model folder" errors."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ppe.errors import PpeError
from ppe.model import bundle
from ppe.model.bundle import load_model_dir, read_model_json, save_model_dir
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)
METADATA = {"config_hash": "abc123", "dataset_hash": "def456", "run_id": "run-7"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    keras.utils.set_random_seed(4)
    model = build_model(SPEC)
    out = tmp_path_factory.mktemp("bundle") / "model"
    assert save_model_dir(model, SPEC, out, METADATA) == out
    return model, out


def test_round_trip_gives_equal_outputs(model_dir: tuple[keras.Model, Path]) -> None:
    model, out = model_dir
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.keras", "saved_model"]
    loaded, spec, metadata = load_model_dir(out)
    assert spec == SPEC
    assert metadata == METADATA
    image = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    for expected, actual in zip(model(image), loaded(image), strict=True):
        np.testing.assert_allclose(expected, actual, rtol=1e-6, atol=1e-6)
    # The SavedModel export serves the same outputs.
    restored = tf.saved_model.load(str(out / "saved_model"))  # keep it alive while serving
    served = restored.serve(tf.constant(image))
    for expected, actual in zip(model(image), served, strict=True):
        np.testing.assert_allclose(expected, actual, rtol=1e-5, atol=1e-5)


def test_manifest_describes_the_model(model_dir: tuple[keras.Model, Path]) -> None:
    _, out = model_dir
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["format"] == "ppe-model-dir"
    assert manifest["spec"]["class_names"] == ["helmet", "head"]
    assert manifest["spec"]["anchors"][0] == [10, 14]
    assert manifest["spec"]["masks"] == [[3, 4, 5], [1, 2, 3]]  # the official tiny masks
    assert manifest["spec"]["image_size"] == 64
    assert manifest["outputs"] == [
        {"stride": 32, "shape": [None, 2, 2, 3, 7]},
        {"stride": 16, "shape": [None, 4, 4, 3, 7]},
    ]
    assert manifest["metadata"] == METADATA
    assert read_model_json(out).spec == SPEC


def _copy(out: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def test_not_a_model_folder_errors(model_dir: tuple[keras.Model, Path], tmp_path: Path) -> None:
    _, out = model_dir
    with pytest.raises(PpeError, match=r"no such directory.*ppe weights import-darknet"):
        load_model_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PpeError, match=f"{tmp_path / 'empty'} is not a model folder: model.json"):
        load_model_dir(tmp_path / "empty")

    copy = _copy(out, tmp_path)
    (copy / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(PpeError, match=r"model.keras is damaged: its sha256"):
        load_model_dir(copy)
    (copy / "model.keras").unlink()
    with pytest.raises(PpeError, match=r"model\.keras is missing"):
        load_model_dir(copy)
    (copy / "model.json").write_text("{ truncated")
    with pytest.raises(PpeError, match=r"model.json is damaged"):
        load_model_dir(copy)


def test_missing_saved_model_is_reported(
    model_dir: tuple[keras.Model, Path], tmp_path: Path
) -> None:
    import shutil

    _, out = model_dir
    copy = _copy(out, tmp_path)
    shutil.rmtree(copy / "saved_model")
    with pytest.raises(PpeError, match=r"saved_model\.pb is missing"):
        load_model_dir(copy)


def test_existing_folder_needs_overwrite(model_dir: tuple[keras.Model, Path]) -> None:
    model, out = model_dir
    with pytest.raises(PpeError, match="already exists"):
        save_model_dir(model, SPEC, out, METADATA)


def test_failed_save_leaves_nothing_behind(
    model_dir: tuple[keras.Model, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = model_dir
    with pytest.raises(PpeError, match="JSON serialisable"):
        save_model_dir(model, SPEC, tmp_path / "a", {"when": object()})

    def broken_manifest(*args: object, **kwargs: object) -> dict[str, object]:
        raise OSError("disk full")

    monkeypatch.setattr(bundle, "_manifest", broken_manifest)
    with pytest.raises(OSError, match="disk full"):
        save_model_dir(model, SPEC, tmp_path / "b", METADATA)
    assert list(tmp_path.iterdir()) == []


def test_spec_mismatch_is_rejected(model_dir: tuple[keras.Model, Path], tmp_path: Path) -> None:
    model, _ = model_dir
    other = YoloSpec.default("yolov3_tiny", ("helmet", "head", "vest"), image_size=64)
    with pytest.raises(PpeError, match="do not match the spec"):
        save_model_dir(model, other, tmp_path / "x")
