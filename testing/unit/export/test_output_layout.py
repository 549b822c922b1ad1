"""The exported model's output layout: the in-graph split head, its NumPy twin and the contract.

``ppe export`` writes LiteRT files whose outputs follow :func:`ppe.model.decode.layout_outputs`
and names the layout in ``model.json`` (``output_layout``); the edge runtime decodes exactly that
layout (``testing/unit/edge/test_runtime.py`` runs the real interpreter on both layouts).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppe.export import layout_model, litert_manifest
from ppe.model.decode import (
    OUTPUT_LAYOUT_KEY,
    RAW_LAYOUT,
    SPLIT_LAYOUT,
    decode,
    detect,
    layout_outputs,
    split_outputs,
)
from ppe.model.spec import YoloSpec

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=64)


def _raw(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 3.0, (2, *shape)).astype(np.float32) for shape in SPEC.output_shapes]


def test_split_layout_names_and_shapes() -> None:
    slots = layout_outputs(SPEC, SPLIT_LAYOUT)
    assert [slot.name for slot in slots] == ["boxes_s32", "scores_s32", "boxes_s16", "scores_s16"]
    assert [slot.shape for slot in slots] == [
        (2, 2, 3, 4),
        (2, 2, 3, 2),
        (4, 4, 3, 4),
        (4, 4, 3, 2),
    ]
    assert [slot.scale for slot in layout_outputs(SPEC, RAW_LAYOUT)] == [0, 1]
    with pytest.raises(ValueError, match=r"unknown output layout 'nms'; known: \['raw', 'split'\]"):
        layout_outputs(SPEC, "nms")


def test_split_outputs_decode_to_the_raw_decode() -> None:
    raw = _raw()
    split = split_outputs(raw, SPEC)
    assert min(float(a.min()) for a in split[1::2]) >= 0.0
    assert max(float(a.max()) for a in split[1::2]) <= 1.0
    boxes, scores = decode(raw, SPEC)
    split_boxes, split_scores = decode(split, SPEC, SPLIT_LAYOUT)
    np.testing.assert_allclose(split_boxes, boxes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split_scores, scores, rtol=1e-5, atol=1e-7)
    found = detect(split, SPEC, layout=SPLIT_LAYOUT, score_threshold=0.3)
    want = detect(raw, SPEC, score_threshold=0.3)
    assert [len(item) for item in found] == [len(item) for item in want]
    np.testing.assert_allclose(found[0].boxes, want[0].boxes, atol=1e-6)


def test_decode_names_a_wrong_split_output() -> None:
    split = split_outputs(_raw(), SPEC)
    with pytest.raises(ValueError, match=r"split layout of this spec has 4 outputs"):
        decode(split[:2], SPEC, SPLIT_LAYOUT)
    with pytest.raises(ValueError, match=r"output scores_s32 must be \(batch, \*\(2, 2, 3, 2\)\)"):
        decode([split[0], split[0], *split[2:]], SPEC, SPLIT_LAYOUT)
    with pytest.raises(ValueError, match="unknown output layout"):
        decode(split, SPEC, "boxes")


def test_keras_split_head_equals_its_numpy_twin() -> None:
    """The graph ``ppe export`` converts computes exactly :func:`split_outputs` of the raw heads."""
    import keras

    from ppe.model.yolov3 import build_model

    keras.utils.set_random_seed(3)
    model = build_model(SPEC)
    assert layout_model(model, SPEC, RAW_LAYOUT) is model
    exported = layout_model(model, SPEC, SPLIT_LAYOUT)
    image = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    expected = split_outputs([np.asarray(v) for v in model(image, training=False)], SPEC)
    got = exported(image, training=False)
    names = [slot.name for slot in layout_outputs(SPEC, SPLIT_LAYOUT)]
    assert sorted(got) == sorted(names)
    for name, want in zip(names, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got[name]), want, rtol=1e-4, atol=1e-5)


def test_manifest_names_the_layout() -> None:
    manifest = json.loads(json.dumps(litert_manifest(SPEC, {"run": "7"}, {}, SPLIT_LAYOUT)))
    assert manifest[OUTPUT_LAYOUT_KEY] == SPLIT_LAYOUT
    assert YoloSpec.from_dict(manifest["spec"]) == SPEC
    assert manifest["metadata"] == {"run": "7"}
    with pytest.raises(ValueError, match="unknown output layout"):
        litert_manifest(SPEC, {}, {}, "nms")
