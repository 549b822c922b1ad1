"""The benchmark model on the runtimes a user would try instead of LiteRT: ONNX Runtime, OpenVINO.

Conversions (each the path its project documents for a Keras 3 model on the TensorFlow backend):

* **ONNX**: ``model.export(path, format="onnx")``, Keras' own ONNX export, which traces the
  model's forward pass as a ``tf.function`` and converts it with ``tf2onnx.convert.from_function``
  (tf2onnx's ``from_keras`` expects a ``tf.keras`` 2 model, which a Keras 3 model is not).
  int8: ``onnxruntime.quantization.quant_pre_process`` (shape inference and graph optimisation,
  the step ONNX Runtime's quantisation guide asks for first), then ``quantize_static`` in the QDQ
  format with uint8 activations and per-channel int8 weights, calibrated (MinMax) on the same
  letterboxed train images the LiteRT int8 export uses (:func:`ppe.export.representative_images`).
  On a CPU without 8-bit dot-product instructions (VNNI, AMX) the weights take 7 bits
  (``reduce_range``), as ONNX Runtime's guide advises: there its uint8 x int8 kernels add pairs
  of products in int16, which full-range operands overflow (measured on this project's AVX2
  machine: wrong matrix products, see ``benchmarks.peak``).
* **OpenVINO**: ``model.export(path.xml, format="openvino")``, Keras' OpenVINO export, which runs
  ``openvino.convert_model`` on the same traced function and writes the IR with fp32 weights.
  int8: NNCF post-training quantisation (``nncf.quantize``) on the same calibration images,
  with the ``MIXED`` preset (symmetric weights, asymmetric activations), which NNCF advises for
  activations that are not symmetric around zero (the network's leaky ReLUs are almost all
  positive; the default symmetric preset wastes half of each activation's range: on the test
  network its mean error was 4x MIXED's), saved with
  ``openvino.save_model(..., compress_to_fp16=False)``.

Documentation: https://keras.io/api/models/model_saving_apis/export/ (``format="onnx"``,
``format="openvino"``), https://docs.openvino.ai/2025/openvino-workflow/model-preparation/convert-model-keras.html
(Keras 3 to OpenVINO IR), https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
(pre-processing, QDQ static quantisation; on x86 CPUs without VNNI it notes that uint8 x int8
products may saturate, which the int8 row's mAP interval would show),
https://docs.openvino.ai/2025/openvino-workflow/model-optimization-guide/quantizing-models-post-training/basic-quantization-flow.html
(NNCF post-training quantisation).

Every model takes a float32 ``(1, S, S, 3)`` letterboxed image in [0, 1] (the int8 models
quantise it inside the graph) and returns the raw heads in the spec's order. Runtimes are limited
to the benchmark's thread count: ONNX Runtime ``intra_op_num_threads`` (inter-op 1, sequential
execution), OpenVINO ``INFERENCE_NUM_THREADS`` with one stream and the latency hint; the fp32
OpenVINO model is compiled with ``INFERENCE_PRECISION_HINT=f32`` (on CPUs with bf16 support
OpenVINO would otherwise run it in bf16).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.peers")

ONNX_FP32 = "onnxruntime_fp32"
ONNX_INT8 = "onnxruntime_int8"
OPENVINO_FP32 = "openvino_fp32"
OPENVINO_INT8 = "openvino_int8"
#: Peer backend -> its model file (the OpenVINO IR's weights sit beside it in a ``.bin``).
FILES: dict[str, str] = {
    ONNX_FP32: "model_fp32.onnx",
    ONNX_INT8: "model_int8.onnx",
    OPENVINO_FP32: "model_fp32.xml",
    OPENVINO_INT8: "model_int8.xml",
}
PEER_BACKENDS: tuple[str, ...] = tuple(FILES)
#: Distributions whose versions the results state.
VERSIONED = ("onnx", "onnxruntime", "tf2onnx", "openvino", "nncf")


def versions() -> dict[str, str | None]:
    """Installed versions of the peer runtimes and converters (None when missing)."""
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


#: CPU flags of 8-bit dot-product instructions (no int16 intermediate sums).
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has 8-bit dot-product instructions (``/proc/cpuinfo`` flags).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; read from the system when None (False where
            there is none: the safe answer, 7-bit weights).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & VNNI_FLAGS)


def _signature(size: int) -> list[Any]:
    import tensorflow as tf

    return [tf.TensorSpec((1, size, size, 3), tf.float32, name="images")]


def export_onnx(model: Any, size: int, path: Path) -> Path:
    """Write the Keras model as ONNX (Keras' ``format="onnx"`` export through tf2onnx)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Keras' tf2onnx shim probes ``np.object``, which NumPy 2 answers with a FutureWarning.
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", input_signature=_signature(size), verbose=False)
    return path


def export_openvino(model: Any, size: int, path: Path) -> Path:
    """Write the Keras model as OpenVINO IR with fp32 weights (Keras' ``format="openvino"``)."""
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(path), format="openvino", input_signature=_signature(size), verbose=False)
    return path


def quantize_onnx(
    fp32: Path, calibration: Sequence[np.ndarray], path: Path, reduce_range: bool
) -> Path:
    """Static int8 quantisation of an ONNX model, calibrated on ``calibration`` batches.

    Args:
        fp32: the float ONNX model.
        calibration: float32 ``(1, S, S, 3)`` inputs (at least one).
        path: where to write the int8 model.
        reduce_range: 7-bit weights (for CPUs without VNNI, see the module docstring).

    Returns:
        ``path``.
    """
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("int8 calibration needs at least one image")
    name = (
        onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
        .get_inputs()[0]
        .name
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {name: np.asarray(item, dtype=np.float32)}

    with tempfile.TemporaryDirectory(prefix="ppe-onnx-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX's own shape inference suffices for a static-shape CNN; the symbolic pass is for
        # dynamic shapes (and needs sympy).
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return path


def quantize_openvino(fp32: Path, calibration: Sequence[np.ndarray], path: Path) -> Path:
    """NNCF post-training int8 quantisation of an OpenVINO IR, calibrated on ``calibration``."""
    import nncf
    import openvino as ov

    if not calibration:
        raise ValueError("int8 calibration needs at least one image")
    model = ov.Core().read_model(str(fp32))
    items = [np.asarray(item, dtype=np.float32) for item in calibration]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(items),
    )
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path


def convert_all(
    model: Any, size: int, calibration: Sequence[np.ndarray], folder: Path
) -> dict[str, Path]:
    """The four peer models of ``model`` in ``folder`` (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / file for name, file in FILES.items()}
    reduce_range = not cpu_has_vnni()
    steps: list[tuple[str, Callable[[], Path]]] = [
        (ONNX_FP32, lambda: export_onnx(model, size, files[ONNX_FP32])),
        (
            ONNX_INT8,
            lambda: quantize_onnx(files[ONNX_FP32], calibration, files[ONNX_INT8], reduce_range),
        ),
        (OPENVINO_FP32, lambda: export_openvino(model, size, files[OPENVINO_FP32])),
        (
            OPENVINO_INT8,
            lambda: quantize_openvino(files[OPENVINO_FP32], calibration, files[OPENVINO_INT8]),
        ),
    ]
    for name, step in steps:
        started = time.perf_counter()
        step()
        logger.info(
            "%s: %s (%.1f MB) in %.0f s",
            name,
            files[name].name,
            model_bytes(files[name]) / 1e6,
            time.perf_counter() - started,
        )
    return files


def model_bytes(path: Path) -> int:
    """Size on disk of a model file (an OpenVINO IR counts its ``.bin`` too)."""
    size = path.stat().st_size
    weights = path.with_suffix(".bin")
    if path.suffix == ".xml" and weights.is_file():
        size += weights.stat().st_size
    return size


class PeerModel:
    """One peer model file behind ``forward(float32 (1, S, S, 3)) -> raw heads``.

    Args:
        backend: one of :data:`PEER_BACKENDS`.
        path: its model file.
        output_shapes: the spec's head shapes without the batch axis, in the spec's order.
        threads: CPU threads of the runtime.

    Raises:
        ValueError: unknown backend, or the model's outputs do not match ``output_shapes``.
    """

    def __init__(
        self,
        backend: str,
        path: Path,
        output_shapes: Sequence[Sequence[int]],
        threads: int,
    ) -> None:
        if backend not in FILES:
            raise ValueError(f"unknown peer backend {backend!r}; choose from {PEER_BACKENDS}")
        self.backend = backend
        self.path = path
        self._shapes = [tuple(int(v) for v in shape) for shape in output_shapes]
        self._run: Callable[[np.ndarray], list[np.ndarray]]
        if backend.startswith("onnxruntime"):
            self._run, found = self._onnxruntime(path, threads)
        else:
            self._run, found = self._openvino(path, threads, backend == OPENVINO_FP32)
        self._order = self._match(found)

    @staticmethod
    def _onnxruntime(
        path: Path, threads: int
    ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], list[tuple[int, ...]]]:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        shapes = [tuple(int(v) for v in output.shape) for output in session.get_outputs()]

        def run(tensor: np.ndarray) -> list[np.ndarray]:
            return [np.asarray(value) for value in session.run(None, {name: tensor})]

        return run, shapes

    @staticmethod
    def _openvino(
        path: Path, threads: int, fp32: bool
    ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], list[tuple[int, ...]]]:
        import openvino as ov

        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if fp32:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)
        shapes = [tuple(int(v) for v in output.get_shape()) for output in outputs]

        def run(tensor: np.ndarray) -> list[np.ndarray]:
            request.infer({0: tensor})
            return [np.array(request.get_output_tensor(i).data) for i in range(len(outputs))]

        return run, shapes

    def _match(self, found: Sequence[tuple[int, ...]]) -> list[int]:
        """For each spec head, the index of the runtime output of that shape."""
        order: list[int] = []
        for shape in self._shapes:
            candidates = [
                index
                for index, output in enumerate(found)
                if output == (1, *shape) and index not in order
            ]
            if not candidates:
                raise ValueError(
                    f"{self.path.name}: no output of shape {(1, *shape)}; outputs are {found}"
                )
            order.append(candidates[0])
        return order

    def forward(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw heads of one float32 ``(1, S, S, 3)`` input, in the spec's order."""
        raw = self._run(tensor)
        return [np.asarray(raw[index], dtype=np.float32) for index in self._order]

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw heads of a float32 ``(B, S, S, 3)`` batch, one image at a time (batch-1 models)."""
        per_image = [self.forward(np.ascontiguousarray(image[np.newaxis])) for image in batch]
        return [
            np.concatenate([outputs[head] for outputs in per_image], axis=0)
            for head in range(len(self._shapes))
        ]


class PeerDetector:
    """The edge runtime's detection path (letterbox, forward, decode, NMS) on a peer model.

    Implements :class:`ppe.edge.runtime.Detector` so that :class:`ppe.edge.server.ScoringServer`
    can serve it; like the LiteRT detector, one image is scored at a time (a lock).

    Args:
        model: the loaded peer model.
        spec: the model spec.
        model_version: reported in ``/healthz`` and answers.
        score_threshold: default minimum score.
        iou_threshold: NMS IoU.
        max_detections: most detections per image.
    """

    def __init__(
        self,
        model: PeerModel,
        spec: Any,
        *,
        model_version: str = "benchmark",
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 100,
    ) -> None:
        self._model = model
        self._spec = spec
        self._version = model_version
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._lock = threading.Lock()

    @property
    def spec(self) -> Any:
        """The model spec."""
        return self._spec

    @property
    def model_version(self) -> str:
        """The deployed model version."""
        return self._version

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> Any:
        """Detect objects in an RGB uint8 ``(H, W, 3)`` image (as ``LiteRTDetector.detect``)."""
        from ppe.edge.runtime import DetectionResult, detections_from_outputs
        from ppe.model.decode import RAW_LAYOUT
        from ppe.model.preprocess import letterbox

        threshold = self.score_threshold if score_threshold is None else score_threshold
        start = time.perf_counter()
        canvas, transform = letterbox(image, self._spec.image_size)
        after_preprocess = time.perf_counter()
        with self._lock:
            outputs = self._model.forward(canvas[np.newaxis])
        after_inference = time.perf_counter()
        # The module's own post-processing (no per-class floors: the rows compare runtimes).
        detections = detections_from_outputs(
            outputs,
            self._spec,
            transform,
            layout=RAW_LAYOUT,
            score_threshold=threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            class_thresholds=None,
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
