"""Initialise the output convolutions of a new detector head: score priors and reused box rows.

A freshly built head has zero output biases, so every anchor of every cell starts with
objectness ``sigmoid(0) = 0.5``: with a few objects among thousands of anchors the first steps
are spent pushing thousands of background scores down, a loss spike that also disturbs
pretrained features. Setting the bias to the logit of a small prior probability,
``b = -log((1 - p) / p)``, starts the scores where the data is (Lin et al., "Focal Loss for Dense
Object Detection", https://arxiv.org/abs/1708.02002, section 4.1 "Initialization"). The
objectness prior per output follows the number of cells: ``p = objects / grid**2`` (at most 0.5),
with ``objects`` the expected objects per image at that output (the form YOLOv5 uses). Class
biases start at the logit of ``1 / (num_classes + 1)``. The output kernels are scaled to a
standard deviation of 0.01 (the paper's), so that the scores start at the priors even on the
larger activations of pretrained features.

When the detector is initialised from another model whose head predicts with the same anchors
(e.g. the COCO model, whose 80-class rows cannot be copied), the class-independent box rows
``tx, ty, tw, th`` of each anchor are copied: they regress box geometry from the same features
with the same priors, whatever the class. Class rows are not mapped: COCO's ``person`` marks a
whole body, not the head or helmet box our classes mark, so its rows would be a wrong prior.

When a whole output convolution is copied (a source with our classes, e.g. the helmet/head import
of the COCO weights) but our anchors differ from the source's (``model.anchors`` from ``ppe data
anchors``), the copied ``tw, th`` rows predict sizes for the source's anchors: the size of a box is
``anchor * exp(tw)``, so :func:`reanchor_box_rows` adds ``log(source anchor / our anchor)`` to those
biases, and the copied head predicts exactly the source's boxes with our anchors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)

#: Expected objects per image and output (YOLOv5's choice for its objectness bias).
DEFAULT_OBJECTS_PER_IMAGE = 8.0
#: Standard deviation of the output kernels after :func:`init_head` (rows not copied).
INITIAL_KERNEL_STD = 0.01
_BOX_ROWS = 4
_OBJECTNESS_ROW = 4


def _anchors_at(spec: YoloSpec, scale: int) -> list[tuple[int, int]]:
    """The anchors (width, height in pixels) of output ``scale``, in its slot order."""
    return [spec.anchors[i] for i in spec.masks[scale]]


def prior_logit(probability: float) -> float:
    """``-log((1 - p) / p)``: the logit whose sigmoid is ``probability`` (0 < p < 1)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"a prior probability must lie in (0, 1), got {probability}")
    return -math.log((1.0 - probability) / probability)


@dataclass
class HeadInit:
    """What :func:`init_head` did, per output stride.

    Attributes:
        objectness_bias: the objectness bias set for each stride.
        class_bias: the class bias set (the same for every output).
        box_rows_from: strides whose box rows were copied from the source model.
    """

    objectness_bias: dict[int, float] = field(default_factory=dict)
    class_bias: float = 0.0
    box_rows_from: list[int] = field(default_factory=list)


def init_head(
    model: keras.Model,
    spec: YoloSpec,
    *,
    source: keras.Model | None = None,
    source_spec: YoloSpec | None = None,
    objects_per_image: float = DEFAULT_OBJECTS_PER_IMAGE,
    strides: Sequence[int] | None = None,
) -> HeadInit:
    """Set the output-convolution biases to their priors, and copy box rows from ``source``.

    Args:
        model: built by :func:`ppe.model.yolov3.build_model` for ``spec``; modified in place.
        spec: its spec.
        source: a model with the same architecture to copy box rows from (optional).
        source_spec: the spec of ``source``; box rows of an output are copied only when its
            anchors (in pixels) equal ours at that output.
        objects_per_image: expected objects per image and output for the objectness prior.
        strides: the outputs to initialise (default: all); e.g. only those whose output
            convolution a transfer could not copy.

    Returns:
        What was set and copied.
    """
    depth = 5 + spec.num_classes
    result = HeadInit(class_bias=prior_logit(1.0 / (spec.num_classes + 1)))
    for scale, (stride, grid) in enumerate(zip(spec.strides, spec.grid_sizes, strict=True)):
        if strides is not None and stride not in strides:
            continue
        layer = model.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = (np.array(w) for w in layer.get_weights())
        kernel = kernel.reshape(*kernel.shape[:-1], spec.anchors_per_scale, depth)
        bias = bias.reshape(spec.anchors_per_scale, depth)
        objectness = prior_logit(min(objects_per_image / grid**2, 0.5))
        # Small output weights (std 0.01, as in the focal-loss paper) so that every anchor starts
        # at the prior, whatever the scale of the features below (pretrained ones are larger).
        spread = float(kernel.std())
        if spread > 0:
            kernel *= INITIAL_KERNEL_STD / spread
        bias[:, _OBJECTNESS_ROW] = objectness
        bias[:, 5:] = result.class_bias
        result.objectness_bias[stride] = objectness
        if (
            source is not None
            and source_spec is not None
            and source_spec.architecture == spec.architecture
            and source_spec.masks[scale] == spec.masks[scale]
            and _anchors_at(source_spec, scale) == _anchors_at(spec, scale)
        ):
            source_kernel, source_bias = source.get_layer(layer.name).get_weights()
            source_depth = 5 + source_spec.num_classes
            source_kernel = source_kernel.reshape(
                *source_kernel.shape[:-1], source_spec.anchors_per_scale, source_depth
            )
            source_bias = source_bias.reshape(source_spec.anchors_per_scale, source_depth)
            kernel[..., :_BOX_ROWS] = source_kernel[..., :_BOX_ROWS]
            bias[:, :_BOX_ROWS] = source_bias[:, :_BOX_ROWS]
            result.box_rows_from.append(stride)
        layer.set_weights([kernel.reshape(*kernel.shape[:-2], -1), bias.reshape(-1)])
    logger.info(
        "head priors: objectness bias %s, class bias %.2f; box rows copied at strides %s",
        {s: round(b, 2) for s, b in result.objectness_bias.items()},
        result.class_bias,
        result.box_rows_from or "none",
    )
    return result


def reanchor_box_rows(
    model: keras.Model, spec: YoloSpec, source_spec: YoloSpec, strides: Sequence[int]
) -> list[int]:
    """Shift the size biases of output convolutions copied from a model with other anchors.

    Args:
        model: built for ``spec``, its output convolutions at ``strides`` copied whole from a
            model built for ``source_spec`` (same architecture); modified in place.
        spec: its spec.
        source_spec: the spec of the model the outputs were copied from.
        strides: the outputs that were copied.

    Returns:
        The strides whose ``tw, th`` biases were shifted by ``log(source anchor / our anchor)``
        (anchors in pixels, per anchor slot of the output), so that the output predicts the
        same box sizes as the source; outputs whose anchors are equal are left as they are.
    """
    shifted: list[int] = []
    if source_spec.architecture != spec.architecture:
        return shifted
    depth = 5 + spec.num_classes
    for scale, stride in enumerate(spec.strides):
        ours = np.array(_anchors_at(spec, scale), dtype=np.float64)
        theirs = np.array(_anchors_at(source_spec, scale), dtype=np.float64)
        if stride not in strides or ours.shape != theirs.shape or np.array_equal(ours, theirs):
            continue
        layer = model.get_layer(f"head_s{stride}_output_conv")
        kernel, bias = layer.get_weights()
        bias = np.array(bias).reshape(spec.anchors_per_scale, depth)
        bias[:, 2:_BOX_ROWS] += np.log(theirs / ours).astype(bias.dtype)
        layer.set_weights([kernel, bias.reshape(-1)])
        shifted.append(stride)
    if shifted:
        logger.info("size biases re-anchored to our anchors at strides %s", shifted)
    return shifted
