"""Read Darknet ``.weights`` files into the Keras models, and transfer weights between models.

File layout (Darknet ``save_weights``): a header of int32 ``major, minor, revision`` followed by
``seen`` (images trained on; int64 when ``major * 10 + minor >= 2``, int32 before), then for every
convolution in ``.cfg`` order, float32 little-endian: either batch-norm ``beta, gamma,
rolling_mean, rolling_variance`` (``filters`` values each) or the conv ``bias`` (``filters``
values), then the kernel in ``(out, in, height, width)`` order. Keras wants kernels as ``(height,
width, in, out)`` and batch-norm weights as ``gamma, beta, mean, variance``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from ppe.errors import PpeError
from ppe.model.spec import YoloSpec
from ppe.model.yolov3 import darknet_conv_units

logger = logging.getLogger(__name__)

_HEADER_INT32 = 3


@dataclass(frozen=True)
class DarknetHeader:
    """The ``.weights`` header: format version and the number of images seen in training."""

    major: int
    minor: int
    revision: int
    seen: int
    header_bytes: int


@dataclass
class TransferReport:
    """What :func:`transfer` copied and skipped.

    Attributes:
        copied: names of target layers whose weights were copied from the source.
        copied_values: number of scalar weights copied (trainable and batch-norm statistics).
        skipped: ``(layer_name, reason)`` for target layers with weights that were left as they
            were (absent from the source, or weight shapes differ, e.g. class-dependent heads).
    """

    copied: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    copied_values: int = 0


def _read_header(data: bytes, path: Path) -> DarknetHeader:
    if len(data) < 4 * _HEADER_INT32 + 4:
        raise PpeError(
            f"{path} is too short ({len(data)} bytes) to be a Darknet .weights file; "
            "download it again"
        )
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", count=_HEADER_INT32))
    offset = 4 * _HEADER_INT32
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        seen, size = int(np.frombuffer(data, "<i8", count=1, offset=offset)[0]), 8
    else:
        seen, size = int(np.frombuffer(data, "<i4", count=1, offset=offset)[0]), 4
    return DarknetHeader(major, minor, revision, seen, offset + size)


def expected_value_count(model: keras.Model, spec: YoloSpec) -> int:
    """Number of float32 values a ``.weights`` file must hold (after the header) for ``model``.

    Args:
        model: a model built by :func:`ppe.model.yolov3.build_model` for ``spec``.
        spec: its spec.

    Returns:
        The count; equals ``model.count_params()`` for the models built here.
    """
    total = 0
    for unit, batch_normalized in darknet_conv_units(spec):
        kernel = model.get_layer(f"{unit}_conv").kernel
        filters = int(kernel.shape[-1])
        total += (4 * filters if batch_normalized else filters) + int(np.prod(kernel.shape))
    return total


def load_darknet_weights(model: keras.Model, spec: YoloSpec, weights_path: Path) -> DarknetHeader:
    """Load an official Darknet ``.weights`` file into ``model``, consuming every byte.

    The file's size is checked against the model before anything is assigned, so a wrong file
    leaves the model untouched.

    Args:
        model: built by :func:`ppe.model.yolov3.build_model` from ``spec``; for the official COCO
            files ``spec`` needs the 80 COCO classes (``ppe.model.spec.COCO_CLASS_NAMES``).
        spec: the spec the model was built from (architecture and class count must match the
            file).
        weights_path: the ``.weights`` file.

    Returns:
        The file header.

    Raises:
        PpeError: the file is missing, truncated, has values left over, or was written for
            another architecture or class count.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise PpeError(
            f"Darknet weights file {path} does not exist; download the official weights "
            "(e.g. https://pjreddie.com/media/files/yolov3-tiny.weights) and pass its path"
        )
    data = path.read_bytes()
    header = _read_header(data, path)
    body = len(data) - header.header_bytes
    expected = expected_value_count(model, spec)
    description = f"the {spec.architecture} model with {spec.num_classes} classes"
    if body % 4:
        raise PpeError(
            f"{path} is damaged: {body} bytes after the header is not a whole number of float32 "
            "values; download it again"
        )
    values = body // 4
    if values < expected:
        raise PpeError(
            f"{path} holds {values} weight values but {description} needs {expected}: the file "
            "is truncated or was written for another architecture (e.g. yolov3-tiny weights for "
            "yolov3) or class count; check --architecture and download the file again"
        )
    if values > expected:
        raise PpeError(
            f"{path} holds {values} weight values but {description} needs only {expected} "
            f"({values - expected} left over): the file was written for another architecture "
            "(e.g. yolov3 weights for yolov3_tiny) or class count; check --architecture"
        )
    weights = np.frombuffer(data, "<f4", offset=header.header_bytes)
    offset = 0

    def take(count: int) -> np.ndarray:
        nonlocal offset
        chunk = weights[offset : offset + count]
        offset += count
        return chunk

    for unit, batch_normalized in darknet_conv_units(spec):
        conv = model.get_layer(f"{unit}_conv")
        height, width, in_channels, filters = (int(d) for d in conv.kernel.shape)
        if batch_normalized:
            beta, gamma, mean, variance = (take(filters) for _ in range(4))
            model.get_layer(f"{unit}_bn").set_weights([gamma, beta, mean, variance])
            bias = None
        else:
            bias = take(filters)
        kernel = take(filters * in_channels * height * width)
        kernel = kernel.reshape(filters, in_channels, height, width).transpose(2, 3, 1, 0)
        conv.set_weights([kernel] if bias is None else [kernel, bias])
    if offset != weights.size:  # guarded above; kept as an invariant of the walk
        raise PpeError(f"{path}: read {offset} of {weights.size} values; the file is damaged")
    logger.info(
        "loaded %d Darknet weight values (format %d.%d.%d, seen %d) from %s into %s",
        offset,
        header.major,
        header.minor,
        header.revision,
        header.seen,
        path,
        description,
    )
    return header


def transfer(source_model: keras.Model, target_model: keras.Model) -> TransferReport:
    """Copy every layer whose name and weight shapes match from ``source`` into ``target``.

    With two models built by :func:`ppe.model.yolov3.build_model` for the same architecture and
    different class counts this copies the backbone, the neck and the heads' 3x3 convolutions,
    and skips the class-dependent ``head_s*_output_conv`` layers (left freshly initialised).

    Args:
        source_model: the model to copy from (e.g. the COCO model).
        target_model: the model to copy into; modified in place.

    Returns:
        What was copied and what was skipped, and why.
    """
    source_layers = {layer.name: layer for layer in source_model.layers}
    report = TransferReport()
    for layer in target_model.layers:
        target_weights = layer.get_weights()
        if not target_weights:
            continue
        source = source_layers.get(layer.name)
        if source is None:
            report.skipped.append((layer.name, "not in the source model"))
            continue
        source_weights = source.get_weights()
        target_shapes = [w.shape for w in target_weights]
        source_shapes = [w.shape for w in source_weights]
        if source_shapes != target_shapes:
            report.skipped.append(
                (
                    layer.name,
                    f"weight shapes differ: source {source_shapes}, target {target_shapes}",
                )
            )
            continue
        layer.set_weights(source_weights)
        report.copied.append(layer.name)
        report.copied_values += sum(int(w.size) for w in source_weights)
    logger.info(
        "transferred %d layers (%d values) from %s to %s; skipped %d: %s",
        len(report.copied),
        report.copied_values,
        source_model.name,
        target_model.name,
        len(report.skipped),
        ", ".join(name for name, _ in report.skipped) or "none",
    )
    return report
