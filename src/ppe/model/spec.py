"""The YOLO model specification: architecture, input size, classes, anchors and masks.

This module is NumPy-only on purpose: the IoT Edge module decodes raw head outputs with
:mod:`ppe.model.decode`, which needs the spec but must run without TensorFlow.
:mod:`ppe.model.yolov3` re-exports :class:`YoloSpec` next to ``build_model``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

Architecture = Literal["yolov3", "yolov3_tiny"]
ARCHITECTURES: tuple[str, ...] = ("yolov3", "yolov3_tiny")

#: Darknet anchors are (width, height) in pixels of a 416x416 network input.
ANCHOR_REFERENCE_SIZE = 416

#: Darknet ``yolov3.cfg`` anchors and masks (mask i belongs to output i, stride 32 first).
YOLOV3_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (59, 119),
    (116, 90),
    (156, 198),
    (373, 326),
)
YOLOV3_MASKS: tuple[tuple[int, ...], ...] = ((6, 7, 8), (3, 4, 5), (0, 1, 2))

#: Darknet ``yolov3-tiny.cfg`` anchors and the masks the official COCO weights were trained with.
#: The first commit of pjreddie/darknet's ``cfg/yolov3-tiny.cfg`` (f6d8617, line 175) has
#: ``mask = 1,2,3`` for the stride-16 output: anchor 3 is shared by both outputs and anchor 0 is
#: unused. The file was later edited to ``0,1,2`` but the released ``yolov3-tiny.weights`` were
#: not retrained (pjreddie/darknet#851, ultralytics/yolov3#1164), so decoding them with
#: ``0,1,2`` gives every stride-16 box an anchor one slot too small.
YOLOV3_TINY_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 14),
    (23, 27),
    (37, 58),
    (81, 82),
    (135, 169),
    (344, 319),
)
YOLOV3_TINY_MASKS: tuple[tuple[int, ...], ...] = ((3, 4, 5), (1, 2, 3))

#: Output strides per architecture, largest first (the order of the model outputs).
STRIDES: dict[str, tuple[int, ...]] = {"yolov3": (32, 16, 8), "yolov3_tiny": (32, 16)}

#: The 80 COCO class names in Darknet's output order (``coco.names``); ``person`` is index 0.
COCO_CLASS_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "sofa", "pottedplant",
    "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: The project's own classes: a helmet, and a head without a helmet.
PPE_CLASS_NAMES: tuple[str, ...] = ("helmet", "head")


@dataclass(frozen=True)
class YoloSpec:
    """Everything needed to build, load and decode a YOLOv3 model, and nothing about training.

    Attributes:
        architecture: ``"yolov3"`` (Darknet-53, 3 scales) or ``"yolov3_tiny"`` (2 scales).
        image_size: square network input side in pixels, a multiple of 32.
        class_names: class names in output order.
        anchors: ``(width, height)`` pairs in pixels of a 416x416 input, as Darknet defines them.
            They are used in image-relative units (divided by 416), so they keep their relative
            size at any ``image_size``.
        masks: for each output (stride 32 first), the indices into ``anchors`` it predicts. An
            anchor may belong to two outputs or to none; targets use only the anchors in a mask.
    """

    architecture: Architecture
    image_size: int
    class_names: tuple[str, ...]
    anchors: tuple[tuple[int, int], ...]
    masks: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 32:
            raise ValueError(
                f"image_size must be a positive multiple of 32 (e.g. 416), got {self.image_size!r}"
            )
        if not self.class_names:
            raise ValueError("class_names must name at least one class")
        if any(not isinstance(name, str) or not name.strip() for name in self.class_names):
            raise ValueError(f"class names must be non-empty strings, got {self.class_names!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique, got {self.class_names!r}")
        if not self.anchors or any(len(anchor) != 2 or min(anchor) <= 0 for anchor in self.anchors):
            raise ValueError(f"anchors must be positive (width, height) pairs, got {self.anchors}")
        expected_scales = len(STRIDES[self.architecture])
        if len(self.masks) != expected_scales:
            raise ValueError(
                f"{self.architecture} has {expected_scales} outputs, so masks needs "
                f"{expected_scales} entries, got {len(self.masks)}"
            )
        if len({len(mask) for mask in self.masks}) != 1 or not self.masks[0]:
            raise ValueError(f"every mask must list the same number of anchors, got {self.masks}")
        for mask in self.masks:
            if any(not 0 <= index < len(self.anchors) for index in mask):
                raise ValueError(
                    f"mask indices must lie in 0..{len(self.anchors) - 1} (the anchors), "
                    f"got {self.masks}"
                )
            if len(set(mask)) != len(mask):
                raise ValueError(f"a mask must not repeat an anchor index, got {self.masks}")
        # An anchor may serve two outputs, or none (Darknet's official yolov3-tiny masks do both).

    @classmethod
    def default(
        cls,
        architecture: Architecture = "yolov3",
        class_names: Sequence[str] = PPE_CLASS_NAMES,
        image_size: int = 416,
        anchors: Sequence[Sequence[int]] | None = None,
    ) -> YoloSpec:
        """Build a spec with Darknet's anchors and masks for ``architecture``, or with ``anchors``.

        Args:
            architecture: ``"yolov3"`` or ``"yolov3_tiny"``.
            class_names: class names in output order.
            image_size: square input side, a multiple of 32.
            anchors: None for Darknet's anchors and masks; otherwise 3 ``(width, height)`` pairs
                per output (pixels of a 416x416 input, e.g. from ``ppe data anchors``), split by
                area: the largest three go to the stride-32 output.

        Returns:
            The spec.

        Raises:
            ValueError: unknown architecture, or ``anchors`` has the wrong count.
        """
        if anchors is not None:
            scales = len(STRIDES.get(architecture, ()))
            if scales == 0:
                raise ValueError(
                    f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
                )
            pairs = sorted(
                (tuple(int(value) for value in anchor) for anchor in anchors),
                key=lambda pair: (pair[0] * pair[-1], pair),
            )
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError(f"anchors must be (width, height) pairs, got {list(anchors)}")
            if len(pairs) != 3 * scales:
                raise ValueError(
                    f"{architecture} has {scales} outputs with 3 anchors each, so it needs "
                    f"{3 * scales} anchors, got {len(pairs)}"
                )
            custom_masks = tuple(
                tuple(range(3 * scale, 3 * scale + 3)) for scale in reversed(range(scales))
            )
            return cls(
                architecture=architecture,
                image_size=image_size,
                class_names=tuple(class_names),
                anchors=tuple((pair[0], pair[-1]) for pair in pairs),
                masks=custom_masks,
            )
        if architecture == "yolov3":
            anchors, masks = YOLOV3_ANCHORS, YOLOV3_MASKS
        elif architecture == "yolov3_tiny":
            anchors, masks = YOLOV3_TINY_ANCHORS, YOLOV3_TINY_MASKS
        else:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
            )
        return cls(
            architecture=architecture,
            image_size=image_size,
            class_names=tuple(class_names),
            anchors=anchors,
            masks=masks,
        )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def num_scales(self) -> int:
        """Number of outputs (3 for YOLOv3, 2 for tiny)."""
        return len(self.masks)

    @property
    def anchors_per_scale(self) -> int:
        """Anchors predicted in every grid cell of one output."""
        return len(self.masks[0])

    @property
    def strides(self) -> tuple[int, ...]:
        """Output strides in pixels, largest first (the order of the model outputs)."""
        return STRIDES[self.architecture]

    @property
    def grid_sizes(self) -> tuple[int, ...]:
        """Grid side of each output, in output order (e.g. 13, 26, 52 at 416)."""
        return tuple(self.image_size // stride for stride in self.strides)

    @property
    def used_anchors(self) -> tuple[int, ...]:
        """Indices of the anchors that at least one output predicts, ascending."""
        return tuple(sorted({index for mask in self.masks for index in mask}))

    @property
    def normalized_anchors(self) -> np.ndarray:
        """All anchors as float32 ``(num_anchors, 2)`` ``(width, height)`` relative to the image."""
        return np.asarray(self.anchors, dtype=np.float32) / np.float32(ANCHOR_REFERENCE_SIZE)

    def scale_anchors(self, scale: int) -> np.ndarray:
        """Normalised anchors of output ``scale`` as float32 ``(anchors_per_scale, 2)``."""
        return self.normalized_anchors[list(self.masks[scale])]

    @property
    def output_shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """Per-output shape without batch: ``(grid, grid, anchors_per_scale, 5 + num_classes)``."""
        return tuple(
            (grid, grid, self.anchors_per_scale, 5 + self.num_classes) for grid in self.grid_sizes
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (lists instead of tuples); inverse of :meth:`from_dict`."""
        return {
            "architecture": self.architecture,
            "image_size": self.image_size,
            "class_names": list(self.class_names),
            "anchors": [list(anchor) for anchor in self.anchors],
            "masks": [list(mask) for mask in self.masks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> YoloSpec:
        """Rebuild a spec from :meth:`to_dict` output.

        Raises:
            ValueError: a key is missing or unknown, or a value is invalid.
        """
        expected = {"architecture", "image_size", "class_names", "anchors", "masks"}
        missing, unknown = expected - set(data), set(data) - expected
        if missing or unknown:
            raise ValueError(
                f"model spec keys must be {sorted(expected)}; missing {sorted(missing)}, "
                f"unknown {sorted(unknown)}"
            )
        return cls(
            architecture=data["architecture"],
            image_size=int(data["image_size"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            anchors=tuple((int(w), int(h)) for w, h in data["anchors"]),
            masks=tuple(tuple(int(index) for index in mask) for mask in data["masks"]),
        )
