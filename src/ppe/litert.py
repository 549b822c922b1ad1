"""A LiteRT (TFLite) YOLO model as a batched raw forward pass, with no TensorFlow.

A thin adapter over the edge module's :class:`ppe.edge.runtime.LiteRTDetector` (which owns the
interpreter, int8 quantisation and output ordering) to the :data:`ppe.evaluate.detect.PredictFn`
shape used by ``ppe export`` and the benchmarks, so exported files are scored by exactly the code
that runs on the device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ppe.errors import PpeError
from ppe.model.spec import YoloSpec
from ppe.run.layout import LABELS_FILE

if TYPE_CHECKING:
    from ppe.edge.runtime import LiteRTDetector

logger = logging.getLogger(__name__)


class LiteRTModel:
    """One ``.tflite`` file behind ``predict(batch) -> head outputs`` in its output layout.

    Args:
        path: the ``.tflite`` file, with the ``model.json`` of its spec beside it.
        spec: the spec the file must match (input size, grids, classes).
        num_threads: interpreter threads.

    Raises:
        PpeError: the file is missing, is not a LiteRT YOLO model, or does not match ``spec``.
    """

    def __init__(self, path: Path, spec: YoloSpec, num_threads: int = 2) -> None:
        from ppe.edge.runtime import LiteRTDetector

        labels = path.parent / LABELS_FILE
        self._detector = LiteRTDetector(
            path, labels if labels.is_file() else None, num_threads=num_threads
        )
        found = self._detector.spec
        if (found.image_size, found.grid_sizes, found.num_classes) != (
            spec.image_size,
            spec.grid_sizes,
            spec.num_classes,
        ):
            raise PpeError(
                f"{path}: input {found.image_size} px, grids {list(found.grid_sizes)} and "
                f"{found.num_classes} classes do not match the model spec ({spec.image_size} px, "
                f"{list(spec.grid_sizes)}, {spec.num_classes}); export again from that model folder"
            )
        self.path = path
        self.spec = spec

    @property
    def layout(self) -> str:
        """The output layout of :meth:`predict` (``model.json``'s ``output_layout``)."""
        return self._detector.output_layout

    @property
    def detector(self) -> LiteRTDetector:
        """The edge runtime behind this model (its letterbox, forward pass and detection)."""
        return self._detector

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """Forward pass, one image at a time (the LiteRT models have batch size 1).

        Args:
            batch: float32 ``(B, S, S, 3)`` letterboxed images in [0, 1].

        Returns:
            float32 outputs in :attr:`layout` (see
            :meth:`ppe.edge.runtime.LiteRTDetector.forward`), each with batch ``B``.
        """
        per_image = [self._detector.head_outputs(image) for image in np.asarray(batch)]
        return [
            np.concatenate([outputs[index] for outputs in per_image], axis=0)
            for index in range(len(per_image[0]))
        ]
