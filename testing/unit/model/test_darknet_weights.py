"""Darknet .weights reading (synthetic files written in Darknet's layout) and transfer."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from ppe.errors import PpeError
from ppe.model.darknet_weights import expected_value_count, load_darknet_weights, transfer
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import build_model, darknet_conv_units

SPEC = YoloSpec.default("yolov3_tiny", ("helmet", "head"), image_size=32)


def write_darknet(
    model: keras.Model, spec: YoloSpec, path: Path, legacy_header: bool = False
) -> int:
    """Write ``model`` in Darknet's file layout (the inverse of the loader, for tests)."""
    if legacy_header:  # version 0.1: 32-bit `seen`
        chunks = [np.array([0, 1, 0, 1234], "<i4").tobytes()]
    else:
        chunks = [np.array([0, 2, 0], "<i4").tobytes(), np.array([5678], "<i8").tobytes()]
    for unit, batch_normalized in darknet_conv_units(spec):
        conv = model.get_layer(f"{unit}_conv")
        if batch_normalized:
            gamma, beta, mean, variance = model.get_layer(f"{unit}_bn").get_weights()
            chunks += [a.astype("<f4").tobytes() for a in (beta, gamma, mean, variance)]
            kernel = conv.get_weights()[0]
        else:
            kernel, bias = conv.get_weights()
            chunks.append(bias.astype("<f4").tobytes())
        chunks.append(kernel.transpose(3, 2, 0, 1).astype("<f4").tobytes())
    data = b"".join(chunks)
    path.write_bytes(data)
    return len(data)


def _randomised(spec: YoloSpec, seed: int) -> keras.Model:
    model = build_model(spec)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in weights])
    return model


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    model = _randomised(SPEC, seed=0)
    path = tmp_path_factory.mktemp("darknet") / "synthetic.weights"
    size = write_darknet(model, SPEC, path)
    assert size == 20 + 4 * model.count_params()
    return model, path


def test_round_trip_restores_every_weight_in_place(synthetic: tuple[keras.Model, Path]) -> None:
    source, path = synthetic
    target = build_model(SPEC)
    header = load_darknet_weights(target, SPEC, path)
    assert (header.major, header.minor, header.seen, header.header_bytes) == (0, 2, 5678, 20)
    for expected, actual in zip(source.weights, target.weights, strict=True):
        assert expected.path == actual.path
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    image = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    for expected, actual in zip(source(image), target(image), strict=True):
        np.testing.assert_allclose(expected, actual, rtol=1e-5)


def test_legacy_header_with_32_bit_seen(tmp_path: Path) -> None:
    model = _randomised(SPEC, seed=2)
    path = tmp_path / "legacy.weights"
    write_darknet(model, SPEC, path, legacy_header=True)
    header = load_darknet_weights(build_model(SPEC), SPEC, path)
    assert (header.minor, header.seen, header.header_bytes) == (1, 1234, 16)


def test_value_count_equals_parameter_count() -> None:
    model = build_model(SPEC)
    assert expected_value_count(model, SPEC) == model.count_params()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda data: data[:-4],
            r"holds \d+ weight values but .* needs \d+: the file is truncated",
        ),
        (lambda data: data + b"\0" * 8, r"needs only \d+ \(2 left over\)"),
        (lambda data: data + b"\0\0", "not a whole number of float32"),
        (lambda data: data[:10], "too short"),
    ],
    ids=["truncated", "leftover", "ragged", "header"],
)
def test_bad_files_name_the_file_and_leave_the_model_untouched(
    synthetic: tuple[keras.Model, Path],
    tmp_path: Path,
    edit,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    _, good = synthetic
    bad = tmp_path / "bad.weights"
    bad.write_bytes(edit(good.read_bytes()))
    target = build_model(SPEC)
    before = [w.numpy().copy() for w in target.weights]
    with pytest.raises(PpeError, match=message) as raised:
        load_darknet_weights(target, SPEC, bad)
    assert str(bad) in str(raised.value)
    for expected, weight in zip(before, target.weights, strict=True):
        np.testing.assert_array_equal(expected, weight.numpy())


def test_wrong_class_count_is_reported(synthetic: tuple[keras.Model, Path]) -> None:
    _, path = synthetic
    spec = YoloSpec.default("yolov3_tiny", ("helmet", "head", "vest"), image_size=32)
    with pytest.raises(PpeError, match="yolov3_tiny model with 3 classes"):
        load_darknet_weights(build_model(spec), spec, path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PpeError, match="does not exist"):
        load_darknet_weights(build_model(SPEC), SPEC, tmp_path / "none.weights")


def test_transfer_copies_everything_but_the_class_dependent_outputs() -> None:
    source = _randomised(SPEC, seed=3)
    target_spec = YoloSpec.default("yolov3_tiny", ("a", "b", "c", "d", "e"), image_size=32)
    target = build_model(target_spec)
    output_before = target.get_layer("head_s32_output_conv").get_weights()
    report = transfer(source, target)
    assert sorted(name for name, _ in report.skipped) == [
        "head_s16_output_conv",
        "head_s32_output_conv",
    ]
    assert all("shapes differ" in reason for _, reason in report.skipped)
    assert len(report.copied) == 2 * 11  # 11 batch-normalised units: conv + bn each
    assert report.copied_values == source.count_params() - sum(
        source.get_layer(name).count_params() for name, _ in report.skipped
    )
    for name in report.copied:
        for expected, actual in zip(
            source.get_layer(name).get_weights(), target.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(expected, actual)
    for expected, actual in zip(
        output_before, target.get_layer("head_s32_output_conv").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(expected, actual)
