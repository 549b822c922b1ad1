"""A LiteRT (TFLite) YOLO model as a raw forward pass, with no TensorFlow.

Used by ``ppe export`` to score the exported files and by the IoT Edge module. Handles float32
and full-integer int8 models: the input is quantised with the input tensor's scale and zero point,
each output dequantised with its own, and outputs are returned in the model's scale order
(stride 32 first), matched by grid size because converters may reorder them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ppe.errors import PpeError
from ppe.model.spec import YoloSpec

logger = logging.getLogger(__name__)


class LiteRTModel:
    """One ``.tflite`` file behind ``predict(batch) -> raw head outputs``.

    Args:
        path: the ``.tflite`` file.
        spec: the model spec (input size and the output grid sizes).
        num_threads: interpreter threads.

    Raises:
        PpeError: the file is missing, is not a LiteRT model, or its tensors do not match
            ``spec``.
    """

    def __init__(self, path: Path, spec: YoloSpec, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if not path.is_file():
            raise PpeError(f"{path}: no such LiteRT model; run `ppe export` to create it")
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise PpeError(f"{path}: not a valid LiteRT model ({error})") from error
        self.path = path
        self.spec = spec
        self._input = self._interpreter.get_input_details()[0]
        expected = [1, spec.image_size, spec.image_size, 3]
        if list(self._input["shape"]) != expected:
            raise PpeError(
                f"{path}: input shape {list(self._input['shape'])} does not match the model "
                f"spec {expected}; export again from the same model folder"
            )
        outputs = self._interpreter.get_output_details()
        by_grid = {int(detail["shape"][1]): detail for detail in outputs}
        try:
            self._outputs = [by_grid[grid] for grid in spec.grid_sizes]
        except KeyError as error:
            raise PpeError(
                f"{path}: output grids {sorted(by_grid)} do not match the spec's "
                f"{list(spec.grid_sizes)}"
            ) from error

    @property
    def input_dtype(self) -> Any:
        """The input tensor's dtype (float32 or int8)."""
        return self._input["dtype"]

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """Forward pass.

        Args:
            batch: float32 ``(B, S, S, 3)`` letterboxed images in [0, 1].

        Returns:
            Raw head outputs, float32 ``(B, grid, grid, anchors, 5 + num_classes)``, stride 32
            first.
        """
        results: list[list[np.ndarray]] = [[] for _ in self._outputs]
        for image in np.asarray(batch, dtype=np.float32):
            value = image[np.newaxis]
            scale, zero_point = self._input["quantization"]
            if self._input["dtype"] != np.float32:
                info = np.iinfo(self._input["dtype"])
                value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
                value = value.astype(self._input["dtype"])
            self._interpreter.set_tensor(self._input["index"], value)
            self._interpreter.invoke()
            for slot, detail in enumerate(self._outputs):
                raw = self._interpreter.get_tensor(detail["index"])
                out_scale, out_zero = detail["quantization"]
                if detail["dtype"] != np.float32:
                    raw = (raw.astype(np.float32) - out_zero) * out_scale
                results[slot].append(np.asarray(raw, dtype=np.float32))
        return [np.concatenate(parts, axis=0) for parts in results]
