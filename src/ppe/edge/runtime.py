"""The detector the IoT Edge module runs: a LiteRT (TFLite) YOLOv3 interpreter plus NumPy decoding.

Nothing here imports TensorFlow: the module image ships ``ai-edge-litert`` only. The pipeline is

1. letterbox the RGB frame straight into the interpreter's input type: the geometry and resize of
   :func:`ppe.model.preprocess.letterbox`, then one 256-entry lookup table maps every uint8 pixel
   to the model's input value (``x = v / 255`` for a float model, and for an int8 model its
   quantised form ``q = round(x / scale) + zero_point``), so an int8 input costs no float pass;
2. run the interpreter, dequantise every integer output with its own parameters
   (``x = (q - zero_point) * scale``) and put the outputs in the order of the model's output
   layout (LiteRT does not keep Keras' order): ``split`` outputs by their signature names,
   ``raw`` outputs by their grid size;
3. decode and class-aware NMS with :func:`ppe.model.decode.detect`;
4. map boxes back to original image pixels with
   :meth:`ppe.model.preprocess.LetterboxTransform.to_original`.

The model spec comes from a ``model.json`` next to the ``.tflite`` (a model-folder manifest with a
``spec`` key, or a bare spec; ``ppe export`` writes it). A model without one is refused: its
anchors and masks cannot be read from the tensor shapes, and decoding with Darknet's defaults
would silently misplace every box of a model trained with other anchors. Its ``output_layout``
(:data:`ppe.model.decode.OUTPUT_LAYOUT_KEY`) names what the outputs hold (``split``: decoded in
the graph, one quantisation scale per box and score output; ``raw``: the head logits); a file
without it is an export from before the key, whose outputs are ``raw``.

A ``thresholds.json`` next to the ``.tflite`` (:class:`ppe.run.documents.ClassThresholds`,
per-class score thresholds chosen on the validation split) raises each class's threshold: a
detection of class ``c`` is kept when its score reaches ``max(score_threshold, thresholds[c])``,
where ``score_threshold`` is the one in force (the twin's live value, or ``/score``'s query).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ppe.errors import DocumentError, ModelLoadError
from ppe.model.decode import (
    OUTPUT_LAYOUT_KEY,
    OUTPUT_LAYOUTS,
    RAW_LAYOUT,
    Detections,
    OutputSlot,
    detect,
    layout_outputs,
)
from ppe.model.preprocess import PAD_VALUE, LetterboxTransform, resize_for_letterbox
from ppe.model.spec import YoloSpec
from ppe.run.documents import ClassThresholds
from ppe.run.layout import MODEL_JSON, thresholds_file

logger = logging.getLogger(__name__)

#: Name of the spec file looked for next to the ``.tflite``.
SPEC_FILE = MODEL_JSON


@dataclass(frozen=True)
class Detection:
    """One detected object in original image pixels.

    Attributes:
        label: class name.
        class_id: index into the model's class names.
        score: ``sigmoid(objectness) * sigmoid(class_logit)`` in [0, 1].
        box: ``[xmin, ymin, xmax, ymax]`` in original image pixels (clipped to the image).
    """

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``label``, ``class_id``, ``score``, ``box`` (pixel xyxy)."""
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 5),
            "box": [round(value, 2) for value in self.box],
        }


@dataclass(frozen=True)
class DetectionResult:
    """Detections of one image and how long each stage took.

    Attributes:
        detections: sorted by descending score; boxes are pixel ``[xmin, ymin, xmax, ymax]``.
        width: original image width in pixels.
        height: original image height in pixels.
        timings_ms: milliseconds spent in ``preprocess``, ``inference`` and ``postprocess``.
    """

    detections: list[Detection]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    def count(self, label: str, score_threshold: float = 0.0) -> int:
        """Number of detections of ``label`` scoring at least ``score_threshold``."""
        return sum(
            1 for item in self.detections if item.label == label and item.score >= score_threshold
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with ``detections``, ``image`` size and ``timings_ms``."""
        return {
            "detections": [item.to_dict() for item in self.detections],
            "image": {"width": self.width, "height": self.height},
            "timings_ms": {key: round(value, 3) for key, value in self.timings_ms.items()},
        }


class Detector(Protocol):
    """What the module loop and the HTTP server need from a detector."""

    @property
    def spec(self) -> YoloSpec:
        """The model spec (classes, input size)."""
        ...

    @property
    def model_version(self) -> str:
        """The deployed model's version (from ``MODEL_VERSION``)."""
        ...

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> DetectionResult:
        """Detect objects in an RGB uint8 ``(H, W, 3)`` image."""
        ...


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Read a labels file: one class name a line, blank lines ignored.

    Raises:
        ModelLoadError: the file is missing, unreadable or names no class twice/at all.
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(
            f"labels file {file} cannot be read ({error}); write one class name a line"
        ) from error
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise ModelLoadError(f"labels file {file} is empty; write one class name a line")
    if len(set(names)) != len(names):
        raise ModelLoadError(f"labels file {file} repeats a class name: {list(names)}")
    return names


def _spec_from_file(path: Path) -> tuple[YoloSpec, str]:
    """The spec and output layout a ``model.json`` names (``raw`` when it names none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} cannot be read as JSON ({error})") from error
    layout: object = RAW_LAYOUT
    if isinstance(data, dict) and isinstance(data.get("spec"), dict):
        layout = data.get(OUTPUT_LAYOUT_KEY, RAW_LAYOUT)
        data = data["spec"]  # an export's or a model folder's manifest
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a model spec object or a model-folder manifest")
    if layout not in OUTPUT_LAYOUTS:
        raise ModelLoadError(
            f"{path}: {OUTPUT_LAYOUT_KEY} {layout!r} is not one this runtime decodes "
            f"({list(OUTPUT_LAYOUTS)}); export the model again with this version of ppe "
            f"(`ppe export`) and deploy the .tflite and {path.name} it writes together"
        )
    try:
        return YoloSpec.from_dict(data), str(layout)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelLoadError(f"{path} has an invalid model spec: {error}") from error


def _class_thresholds(model_path: Path, spec: YoloSpec) -> ClassThresholds | None:
    """The ``thresholds.json`` next to the model, checked against its classes (None if absent)."""
    path = thresholds_file(model_path.parent)
    if not path.is_file():
        return None
    try:
        chosen = ClassThresholds.read(path)
    except DocumentError as error:
        raise ModelLoadError(str(error)) from error
    unknown = sorted(set(chosen.thresholds) - set(spec.class_names))
    bad = {name: value for name, value in chosen.thresholds.items() if not 0.0 <= value < 1.0}
    if unknown or bad:
        raise ModelLoadError(
            f"{path} names classes the model lacks ({unknown}) or thresholds outside [0, 1) "
            f"({bad}); deploy the thresholds.json exported with this model"
        )
    logger.info("per-class score thresholds from %s: %s", path, chosen.thresholds)
    return chosen


def _quantization(detail: dict[str, Any]) -> tuple[float, int]:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if scales.size == 0:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return float(scale), int(zero_point)
    if scales.size > 1:
        raise ModelLoadError(
            f"tensor {detail.get('name')!r} uses per-axis quantisation; only per-tensor "
            "quantised inputs and outputs are supported (export with int8 input/output)"
        )
    return float(scales[0]), int(zero_points[0]) if zero_points.size else 0


def detections_from_outputs(
    outputs: Sequence[np.ndarray],
    spec: YoloSpec,
    transform: LetterboxTransform,
    *,
    layout: str,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    class_thresholds: ClassThresholds | None,
) -> list[Detection]:
    """The module's post-processing of one image's head outputs, whatever runtime produced them.

    Decode + NMS (:func:`ppe.model.decode.detect`), the per-class score floors of
    ``thresholds.json`` when given, and boxes mapped back to pixel ``[xmin, ymin, xmax, ymax]`` of
    the original image through ``transform``.
    """
    found = detect(
        outputs,
        spec,
        layout=layout,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )[0]
    if class_thresholds is not None:
        floors = class_thresholds.in_force(spec.class_names, score_threshold)
        keep = found.scores >= np.asarray(floors, dtype=np.float32)[found.classes]
        found = Detections(found.boxes[keep], found.scores[keep], found.classes[keep])
    pixels = transform.to_original(found.boxes)
    return [
        Detection(
            label=spec.class_names[int(class_id)],
            class_id=int(class_id),
            score=float(score),
            box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        )
        for box, score, class_id in zip(pixels, found.scores, found.classes, strict=True)
    ]


class LiteRTDetector:
    """YOLOv3 / YOLOv3-tiny on the LiteRT interpreter, float32 or full-integer int8.

    Thread-safe: a lock serialises interpreter calls (the interpreter itself is not).

    Args:
        model_path: the ``.tflite`` file.
        labels_path: a labels file (one class name a line); optional, and when given it must
            name the classes of the ``model.json`` next to the model.
        model_version: the deployed model version reported in results and alerts.
        num_threads: interpreter CPU threads.
        score_threshold: default minimum detection score (overridable per call).
        iou_threshold: same-class IoU above which NMS drops a box.
        max_detections: most detections per image.

    Raises:
        ModelLoadError: a file is missing or the model is not a YOLOv3 detector matching the spec
            and labels.
    """

    def __init__(
        self,
        model_path: str | Path,
        labels_path: str | Path | None = None,
        *,
        model_version: str = "unknown",
        num_threads: int = 2,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(
                f"model file {path} does not exist; set MODEL_PATH (or --model) to a .tflite file"
            )
        if num_threads < 1:
            raise ModelLoadError(f"num_threads must be at least 1, got {num_threads}")
        labels = read_labels(labels_path) if labels_path is not None else None
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelLoadError(f"{path} is not a loadable LiteRT model: {error}") from error
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelLoadError(f"{path} must have one image input, it has {len(inputs)}")
        self._input = inputs[0]
        self._outputs = self._interpreter.get_output_details()
        input_shape = [int(v) for v in self._input["shape"]]
        output_shapes = [[int(v) for v in detail["shape"]] for detail in self._outputs]
        spec_file = path.parent / SPEC_FILE
        if spec_file.is_file():
            spec, layout = _spec_from_file(spec_file)
            if labels is not None and tuple(labels) != spec.class_names:
                raise ModelLoadError(
                    f"labels {list(labels)} disagree with {spec_file} classes "
                    f"{list(spec.class_names)}; deploy the labels exported with this model"
                )
            logger.info("model spec from %s", spec_file)
        else:
            raise ModelLoadError(
                f"no {SPEC_FILE} next to {path}: the model's anchors, masks and classes are "
                f"unknown; deploy the {SPEC_FILE} that `ppe export` wrote beside this model"
            )
        if input_shape != [1, spec.image_size, spec.image_size, 3]:
            raise ModelLoadError(
                f"{path} input {input_shape} does not match the spec's "
                f"[1, {spec.image_size}, {spec.image_size}, 3]"
            )
        self._layout = layout
        self._slots = layout_outputs(spec, layout)
        if layout == RAW_LAYOUT:
            self._order = self._match_outputs(output_shapes, spec, path)
        else:
            self._order = self._match_named_outputs(self._slots, path)
        self.class_thresholds = _class_thresholds(path, spec)
        self._spec = spec
        self._model_version = model_version
        self._path = path
        self._input_dtype = np.dtype(self._input["dtype"])
        self._input_quant = _quantization(self._input)
        self._output_quant = [_quantization(detail) for detail in self._outputs]
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._lock = threading.Lock()
        # The input value of every uint8 pixel, computed exactly as the float path would.
        levels = np.arange(256, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        self._pixel_table = self._quantize_input(levels)
        self._pad_value = self._quantize_input(np.full(1, PAD_VALUE, dtype=np.float32))[0]
        logger.info(
            "loaded %s: %s %d px, %d classes (%s), input %s, %d threads",
            path.name,
            spec.architecture,
            spec.image_size,
            spec.num_classes,
            ", ".join(spec.class_names),
            self._input_dtype.name,
            num_threads,
        )

    def _match_named_outputs(self, slots: Sequence[OutputSlot], path: Path) -> list[int]:
        """For each output of a named layout, the index of the interpreter output holding it."""
        signatures = self._interpreter.get_signature_list()
        found: dict[str, int] = {}
        if len(signatures) == 1:
            runner = self._interpreter.get_signature_runner(next(iter(signatures)))
            found = {
                name: int(detail["index"]) for name, detail in runner.get_output_details().items()
            }
        positions = {
            int(detail["index"]): position for position, detail in enumerate(self._outputs)
        }
        needed = [slot.name for slot in slots]
        if sorted(found) != sorted(needed) or len(self._outputs) != len(needed):
            raise ModelLoadError(
                f"{path}: its outputs are named {sorted(found)}, but the {self._layout} layout "
                f"in its {SPEC_FILE} needs {needed}; the {SPEC_FILE} "
                f"beside it belongs to another export: deploy the .tflite and {SPEC_FILE} that "
                "`ppe export` wrote together"
            )
        order: list[int] = []
        for slot in slots:
            shape = [int(v) for v in self._outputs[positions[found[slot.name]]]["shape"]]
            if shape not in ([1, *slot.shape], [1, *slot.shape[:2], slot.shape[2] * slot.shape[3]]):
                raise ModelLoadError(
                    f"{path}: output {slot.name} has shape {shape}, its {SPEC_FILE} spec needs "
                    f"{[1, *slot.shape]}; deploy the .tflite and {SPEC_FILE} exported together"
                )
            order.append(positions[found[slot.name]])
        return order

    @staticmethod
    def _match_outputs(
        output_shapes: Sequence[Sequence[int]], spec: YoloSpec, path: Path
    ) -> list[int]:
        """For each spec scale (model order), the index of the interpreter output holding it."""
        if len(output_shapes) != spec.num_scales:
            raise ModelLoadError(
                f"{path} has {len(output_shapes)} outputs, the {spec.architecture} spec needs "
                f"{spec.num_scales} ({OUTPUT_LAYOUT_KEY} {RAW_LAYOUT!r}: no such key in its "
                f"{SPEC_FILE}); deploy the {SPEC_FILE} exported with this model"
            )
        order: list[int] = []
        for expected in spec.output_shapes:
            grid, _, anchors, depth = expected
            candidates = [
                index
                for index, shape in enumerate(output_shapes)
                if list(shape) in ([1, *expected], [1, grid, grid, anchors * depth])
                and index not in order
            ]
            if not candidates:
                raise ModelLoadError(
                    f"{path}: no output has shape (1, {grid}, {grid}, {anchors}, {depth}); "
                    f"outputs are {[list(s) for s in output_shapes]}"
                )
            order.append(candidates[0])
        return order

    @property
    def spec(self) -> YoloSpec:
        """The model spec."""
        return self._spec

    @property
    def model_version(self) -> str:
        """The deployed model version."""
        return self._model_version

    @property
    def output_layout(self) -> str:
        """The layout of :meth:`forward`'s outputs (:data:`ppe.model.decode.OUTPUT_LAYOUTS`)."""
        return self._layout

    @property
    def quantized(self) -> bool:
        """True for a full-integer model (integer input)."""
        return self._input_dtype.kind in "iu"

    def _quantize_input(self, values: np.ndarray) -> np.ndarray:
        """Float32 values in [0, 1] -> the interpreter's input type (``round(x / scale) + zp``)."""
        if not self.quantized:
            return values.astype(self._input_dtype, copy=False)
        scale, zero_point = self._input_quant
        if scale <= 0:
            raise ModelLoadError(f"{self._path}: integer input without a quantisation scale")
        info = np.iinfo(self._input_dtype)
        # One float32 buffer updated in place: the arithmetic of the plain expression, without
        # four temporary copies of a 2 MB input.
        quantized = np.divide(values, np.float32(scale), dtype=np.float32)
        np.round(quantized, out=quantized)
        quantized += np.float32(zero_point)
        np.clip(quantized, info.min, info.max, out=quantized)
        result: np.ndarray = quantized.astype(self._input_dtype)
        return result

    def network_input(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxTransform]:
        """Letterbox an RGB frame straight into the interpreter's input tensor.

        Equal, value for value, to quantising :func:`ppe.model.preprocess.letterbox`'s float
        output, without the float intermediate.

        Args:
            image: uint8 ``(H, W, 3)`` RGB.

        Returns:
            ``(1, S, S, 3)`` in the model's input type (float32 in [0, 1], or int8/uint8
            quantised) and the :class:`LetterboxTransform` that maps boxes back.

        Raises:
            ValueError: ``image`` is not uint8 ``(H, W, 3)``.
        """
        size = self._spec.image_size
        resized, transform = resize_for_letterbox(image, size)
        tensor = np.full((1, size, size, 3), self._pad_value, dtype=self._input_dtype)
        top, left = transform.offset_y, transform.offset_x
        tensor[0, top : top + transform.resized_height, left : left + transform.resized_width] = (
            cv2.LUT(np.ascontiguousarray(resized), self._pixel_table)
        )
        return tensor, transform

    def forward(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run the interpreter on an input tensor already in the model's input type.

        Args:
            tensor: ``(1, S, S, 3)`` of the interpreter's input dtype (see :meth:`network_input`).

        Returns:
            The outputs of :attr:`output_layout` in :func:`ppe.model.decode.layout_outputs`
            order, float32 and dequantised (each with its own scale and zero point): for
            ``raw`` one ``(1, grid, grid, anchors_per_scale, 5 + num_classes)`` per scale,
            largest stride first; for ``split`` boxes then scores per scale.

        Raises:
            ValueError: the tensor's shape or dtype is not the interpreter's.
        """
        size = self._spec.image_size
        if tensor.shape != (1, size, size, 3) or tensor.dtype != self._input_dtype:
            raise ValueError(
                f"the interpreter takes {self._input_dtype.name} (1, {size}, {size}, 3), got "
                f"{tensor.dtype} {tensor.shape}"
            )
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            raw = [self._interpreter.get_tensor(detail["index"]) for detail in self._outputs]
        outputs: list[np.ndarray] = []
        for slot, output_index in zip(self._slots, self._order, strict=True):
            values = raw[output_index]
            if values.dtype.kind in "iu":
                scale, zero_point = self._output_quant[output_index]
                values = (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
            outputs.append(np.asarray(values, dtype=np.float32).reshape(1, *slot.shape))
        return outputs

    def head_outputs(self, network_input: np.ndarray) -> list[np.ndarray]:
        """Run the interpreter on a float letterboxed input and return its float outputs.

        Args:
            network_input: float32 ``(S, S, 3)`` or ``(1, S, S, 3)`` RGB in [0, 1]
                (:func:`ppe.model.preprocess.letterbox`).

        Returns:
            As :meth:`forward`.
        """
        batch = np.asarray(network_input, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        return self.forward(self._quantize_input(batch))

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> DetectionResult:
        """Detect helmets and heads in one frame.

        Args:
            image: uint8 ``(H, W, 3)`` RGB.
            score_threshold: minimum score; the detector's default when None.

        Returns:
            Detections with boxes as pixel ``[xmin, ymin, xmax, ymax]`` of ``image``, and timings.

        Raises:
            ValueError: ``image`` is not uint8 ``(H, W, 3)``.
        """
        threshold = self.score_threshold if score_threshold is None else score_threshold
        start = time.perf_counter()
        tensor, transform = self.network_input(image)
        after_preprocess = time.perf_counter()
        outputs = self.forward(tensor)
        after_inference = time.perf_counter()
        detections = detections_from_outputs(
            outputs,
            self._spec,
            transform,
            layout=self._layout,
            score_threshold=threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            class_thresholds=self.class_thresholds,
        )
        end = time.perf_counter()
        return DetectionResult(
            detections=detections,
            width=transform.original_width,
            height=transform.original_height,
            timings_ms={
                "preprocess": (after_preprocess - start) * 1000.0,
                "inference": (after_inference - after_preprocess) * 1000.0,
                "postprocess": (end - after_inference) * 1000.0,
            },
        )
