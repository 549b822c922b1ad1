"""YOLOv3 (Darknet-53) and YOLOv3-tiny in the Keras 3 functional API.

The models reproduce Darknet's ``yolov3.cfg`` and ``yolov3-tiny.cfg`` layer for layer, so the
official ``.weights`` files load into them (:mod:`ppe.model.darknet_weights`) and their parameter
counts equal Darknet's: YOLOv3 61,581,727 (2 classes) / 62,001,757 (80), tiny 8,678,554 (2) /
8,858,734 (80).

Layer names are stable and descriptive; they drive Darknet loading and transfer learning:

* one Darknet convolution ``<unit>`` is the layers ``<unit>_conv`` (+ ``<unit>_bn`` and
  ``<unit>_leaky``, or a bias for the output convolutions), plus ``<unit>_pad`` for stride 2;
* YOLOv3 backbone units: ``backbone_stem``, ``backbone_stage{1..5}_down``,
  ``backbone_stage{k}_block{j}_reduce`` / ``_expand`` (residual sum ``..._add``);
* tiny backbone units: ``backbone_conv{1..7}`` with ``backbone_pool{1..6}``;
* neck units per output stride ``s``: ``neck_s{s}_lateral`` (1x1 before the upsample),
  ``neck_s{s}_conv{1..5}`` (YOLOv3) or ``neck_s32_conv1`` (tiny);
* head units: ``head_s{s}_conv`` (3x3) and ``head_s{s}_output`` (1x1, bias, linear), reshaped by
  ``head_s{s}_reshape``.

Only ``head_s*_output`` depends on the number of classes.
"""

from __future__ import annotations

import logging

import keras
from keras import layers

from ppe.model.spec import YoloSpec

__all__ = ["YoloSpec", "build_model", "darknet_conv_units"]

logger = logging.getLogger(__name__)

#: Darknet's leaky ReLU slope.
LEAKY_SLOPE = 0.1
#: Darknet adds 1e-6 to the standard deviation; 1e-5 on the variance is the closest Keras form.
BN_EPSILON = 1e-5

# Darknet-53: (filters, residual blocks) per stage; stages 3 and 4 feed the stride-8/16 necks.
_DARKNET53_STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4))
# Neck width per output stride (the 5-conv block alternates width and 2x width).
_YOLOV3_NECK_FILTERS: dict[int, int] = {32: 512, 16: 256, 8: 128}
# Tiny backbone filters; a 2x2 max-pool follows each of the first six convolutions.
_TINY_FILTERS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)


def _conv_unit(
    x: keras.KerasTensor, filters: int, kernel_size: int, name: str, strides: int = 1
) -> keras.KerasTensor:
    """Darknet convolution: conv (no bias) -> batch norm -> leaky ReLU.

    Stride 2 pads one pixel at the top and left only, then convolves without padding, which is
    what Darknet's symmetric padding amounts to for even inputs (Keras ``"same"`` would shift the
    window by one pixel and break the pretrained weights).
    """
    if strides == 2:
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky")(x)


def _output_unit(x: keras.KerasTensor, spec: YoloSpec, stride: int, grid: int) -> keras.KerasTensor:
    """1x1 linear convolution with bias, reshaped to ``(grid, grid, anchors, 5 + classes)``.

    Channel ``a * (5 + C) + k`` becomes ``[..., a, k]``: Darknet's channel layout.
    """
    depth = 5 + spec.num_classes
    # float32 under any mixed-precision policy: the logits feed exp() and sigmoids in the loss.
    x = layers.Conv2D(
        spec.anchors_per_scale * depth,
        1,
        padding="same",
        name=f"head_s{stride}_output_conv",
        dtype="float32",
    )(x)
    return layers.Reshape(
        (grid, grid, spec.anchors_per_scale, depth), name=f"head_s{stride}_reshape", dtype="float32"
    )(x)


def _darknet53(x: keras.KerasTensor) -> dict[int, keras.KerasTensor]:
    """Darknet-53 backbone; returns the stage outputs keyed by stride (8, 16 and 32)."""
    x = _conv_unit(x, 32, 3, "backbone_stem")
    features: dict[int, keras.KerasTensor] = {}
    for stage, (filters, blocks) in enumerate(_DARKNET53_STAGES, start=1):
        x = _conv_unit(x, filters, 3, f"backbone_stage{stage}_down", strides=2)
        for block in range(1, blocks + 1):
            prefix = f"backbone_stage{stage}_block{block}"
            shortcut = x
            x = _conv_unit(x, filters // 2, 1, f"{prefix}_reduce")
            x = _conv_unit(x, filters, 3, f"{prefix}_expand")
            x = layers.Add(name=f"{prefix}_add")([shortcut, x])
        features[2**stage] = x
    return features


def _build_yolov3(image: keras.KerasTensor, spec: YoloSpec) -> list[keras.KerasTensor]:
    features = _darknet53(image)
    outputs: list[keras.KerasTensor] = []
    route: keras.KerasTensor | None = None
    for stride, grid in zip(spec.strides, spec.grid_sizes, strict=True):
        filters = _YOLOV3_NECK_FILTERS[stride]
        if route is None:
            x = features[stride]
        else:
            x = _conv_unit(route, filters, 1, f"neck_s{stride}_lateral")
            x = layers.UpSampling2D(2, name=f"neck_s{stride}_upsample")(x)
            x = layers.Concatenate(name=f"neck_s{stride}_concat")([x, features[stride]])
        for index, kernel in enumerate((1, 3, 1, 3, 1), start=1):
            width = filters if kernel == 1 else filters * 2
            x = _conv_unit(x, width, kernel, f"neck_s{stride}_conv{index}")
        route = x
        x = _conv_unit(x, filters * 2, 3, f"head_s{stride}_conv")
        outputs.append(_output_unit(x, spec, stride, grid))
    return outputs


def _build_yolov3_tiny(image: keras.KerasTensor, spec: YoloSpec) -> list[keras.KerasTensor]:
    x = image
    skip: keras.KerasTensor | None = None
    for index, filters in enumerate(_TINY_FILTERS, start=1):
        x = _conv_unit(x, filters, 3, f"backbone_conv{index}")
        if index == 5:
            skip = x  # 256 channels at stride 16, before its pool (Darknet layer 8)
        if index <= 5:
            x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"backbone_pool{index}")(x)
        elif index == 6:
            # Size 2, stride 1: Darknet pads one pixel at the bottom/right, as "same" does here.
            x = layers.MaxPooling2D(2, strides=1, padding="same", name=f"backbone_pool{index}")(x)
    assert skip is not None
    stride32, stride16 = spec.strides
    grid32, grid16 = spec.grid_sizes
    route = _conv_unit(x, 256, 1, f"neck_s{stride32}_conv1")
    x = _conv_unit(route, 512, 3, f"head_s{stride32}_conv")
    large = _output_unit(x, spec, stride32, grid32)
    x = _conv_unit(route, 128, 1, f"neck_s{stride16}_lateral")
    x = layers.UpSampling2D(2, name=f"neck_s{stride16}_upsample")(x)
    x = layers.Concatenate(name=f"neck_s{stride16}_concat")([x, skip])
    x = _conv_unit(x, 256, 3, f"head_s{stride16}_conv")
    small = _output_unit(x, spec, stride16, grid16)
    return [large, small]


def build_model(spec: YoloSpec) -> keras.Model:
    """Build the inference model for ``spec`` with fresh weights.

    Args:
        spec: architecture, input size, classes, anchors and masks.

    Returns:
        A functional ``keras.Model`` named after the architecture. Input ``"image"``:
        ``(batch, image_size, image_size, 3)`` float32 RGB in [0, 1] (letterboxed, see
        :mod:`ppe.model.preprocess`). Outputs: one raw head tensor per scale, largest stride
        first, ``(batch, grid, grid, anchors_per_scale, 5 + num_classes)`` with, per anchor,
        ``[tx, ty, tw, th, objectness_logit, class_logits...]`` (no activation applied; see
        :func:`ppe.model.decode.decode`).
    """
    image = keras.Input((spec.image_size, spec.image_size, 3), name="image", dtype="float32")
    if spec.architecture == "yolov3":
        outputs = _build_yolov3(image, spec)
    else:
        outputs = _build_yolov3_tiny(image, spec)
    model = keras.Model(image, outputs, name=spec.architecture)
    logger.debug(
        "built %s for %d classes at %d px: %d parameters",
        spec.architecture,
        spec.num_classes,
        spec.image_size,
        model.count_params(),
    )
    return model


def darknet_conv_units(spec: YoloSpec) -> list[tuple[str, bool]]:
    """Convolution units in the order Darknet's ``.cfg`` (and ``.weights`` file) lists them.

    Darknet's order differs from Keras' topological order in the heads: each output's
    ``head_s*_conv`` and ``head_s*_output`` come right after its neck block, before the next
    scale's lateral convolution.

    Args:
        spec: the model spec.

    Returns:
        ``(unit_name, batch_normalized)`` pairs; the layer is ``<unit_name>_conv`` and, when
        batch-normalised, ``<unit_name>_bn``; otherwise the convolution has a bias.
    """
    units: list[tuple[str, bool]] = []
    if spec.architecture == "yolov3":
        units.append(("backbone_stem", True))
        for stage, (_, blocks) in enumerate(_DARKNET53_STAGES, start=1):
            units.append((f"backbone_stage{stage}_down", True))
            for block in range(1, blocks + 1):
                units.append((f"backbone_stage{stage}_block{block}_reduce", True))
                units.append((f"backbone_stage{stage}_block{block}_expand", True))
        for position, stride in enumerate(spec.strides):
            if position:
                units.append((f"neck_s{stride}_lateral", True))
            units.extend((f"neck_s{stride}_conv{index}", True) for index in range(1, 6))
            units.append((f"head_s{stride}_conv", True))
            units.append((f"head_s{stride}_output", False))
    else:
        stride32, stride16 = spec.strides
        units.extend((f"backbone_conv{index}", True) for index in range(1, len(_TINY_FILTERS) + 1))
        units += [
            (f"neck_s{stride32}_conv1", True),
            (f"head_s{stride32}_conv", True),
            (f"head_s{stride32}_output", False),
            (f"neck_s{stride16}_lateral", True),
            (f"head_s{stride16}_conv", True),
            (f"head_s{stride16}_output", False),
        ]
    return units
