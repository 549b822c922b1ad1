"""The model folder: the format every step after training reads and writes.

A model folder holds:

* ``model.keras``: the Keras 3 inference model (raw head outputs, see ``build_model``);
* ``saved_model/``: the same model exported with ``model.export`` (TensorFlow SavedModel,
  ``serve`` endpoint), for serving and LiteRT conversion;
* ``model.json``: the manifest: ``format``/``format_version``, ``spec`` (architecture,
  image_size, class_names, anchors, masks), ``input`` and ``outputs`` descriptions, the
  ``sha256`` and size of ``model.keras``, library versions, a UTC ``created`` time and the
  caller's ``metadata`` (config hash, dataset hash, run id...).

Folders are written atomically: everything goes into a temporary folder beside the target,
which is renamed into place only when complete. TensorFlow/Keras are imported only inside the
functions that need them; :func:`read_model_json` works without TensorFlow.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppe.errors import PpeError
from ppe.files import sha256_file
from ppe.model.spec import YoloSpec
from ppe.run.layout import MODEL_JSON, MODEL_KERAS

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

MODEL_FILE = MODEL_KERAS
SAVED_MODEL_DIR = "saved_model"
MANIFEST_FILE = MODEL_JSON
FORMAT = "ppe-model-dir"
FORMAT_VERSION = 1
_FIX = "point to a folder written by `ppe weights import-darknet` or `ppe train`, or write it again"


@dataclass(frozen=True)
class ModelDirInfo:
    """What ``model.json`` says about a model folder.

    Attributes:
        path: the model folder.
        spec: the model spec.
        metadata: the caller metadata stored at save time.
        manifest: the whole parsed ``model.json``.
    """

    path: Path
    spec: YoloSpec
    metadata: dict[str, Any]
    manifest: dict[str, Any]


def _manifest(
    spec: YoloSpec, metadata: Mapping[str, Any], model_file: Path, versions: dict[str, str]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "input": {
            "name": "image",
            "shape": [None, spec.image_size, spec.image_size, 3],
            "dtype": "float32",
            "description": "RGB in [0, 1], letterboxed (pad 0.5), see ppe.model.preprocess",
        },
        "outputs": [
            {"stride": stride, "shape": [None, *shape]}
            for stride, shape in zip(spec.strides, spec.output_shapes, strict=True)
        ],
        "files": {
            MODEL_FILE: {"sha256": sha256_file(model_file), "bytes": model_file.stat().st_size}
        },
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metadata": dict(metadata),
    }


def save_model_dir(
    model: keras.Model,
    spec: YoloSpec,
    out_dir: str | Path,
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a model folder atomically.

    Args:
        model: the inference model built from ``spec`` (not the training wrapper).
        spec: its spec.
        out_dir: the folder to create.
        metadata: JSON-serialisable caller metadata (config hash, dataset hash, run id...).
        overwrite: replace an existing folder at ``out_dir`` (the old one is removed only
            after the new one is in place).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        PpeError: ``out_dir`` exists and ``overwrite`` is false, the metadata is not JSON
            serialisable, or the model does not match ``spec``.
    """
    import keras
    import tensorflow as tf

    out_dir = Path(out_dir)
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PpeError(f"model folder metadata must be JSON serialisable: {error}") from error
    shapes = [tuple(output.shape[1:]) for output in model.outputs]
    if shapes != list(spec.output_shapes):
        raise PpeError(
            f"the model's outputs {shapes} do not match the spec {list(spec.output_shapes)}; "
            "save the inference model built from this spec"
        )
    if out_dir.exists() and not overwrite:
        raise PpeError(f"{out_dir} already exists; choose another folder or remove it first")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        model_file = staging / MODEL_FILE
        model.save(model_file)
        model.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        manifest = _manifest(
            spec,
            metadata,
            model_file,
            {"keras": keras.__version__, "tensorflow": tf.__version__},
        )
        (staging / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        if out_dir.exists():
            retired = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            out_dir.rename(retired)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(
        "wrote model folder %s (%s, %d classes)", out_dir, spec.architecture, spec.num_classes
    )
    return out_dir


def read_model_json(path: str | Path) -> ModelDirInfo:
    """Read and check ``model.json`` of a model folder (no TensorFlow needed).

    Args:
        path: the model folder.

    Returns:
        Spec, metadata and manifest.

    Raises:
        PpeError: ``path`` is not a model folder or its manifest is damaged.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise PpeError(f"{folder} is not a model folder (no such directory); {_FIX}")
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise PpeError(f"{folder} is not a model folder: {MANIFEST_FILE} is missing; {_FIX}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PpeError(f"{manifest_path} is damaged ({error}); {_FIX}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PpeError(f"{manifest_path} is not a {FORMAT} manifest; {_FIX}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PpeError(
            f"{manifest_path} has format_version {manifest.get('format_version')!r}, this "
            f"version of ppe reads {FORMAT_VERSION}; write the folder again with this version"
        )
    try:
        spec = YoloSpec.from_dict(manifest["spec"])
    except (KeyError, TypeError, ValueError) as error:
        raise PpeError(f"{manifest_path} has an invalid model spec ({error}); {_FIX}") from error
    metadata = manifest.get("metadata", {})
    if not isinstance(metadata, dict):
        raise PpeError(f"{manifest_path}: metadata must be an object; {_FIX}")
    return ModelDirInfo(path=folder, spec=spec, metadata=metadata, manifest=manifest)


def load_model_dir(path: str | Path) -> tuple[keras.Model, YoloSpec, dict[str, Any]]:
    """Load a model folder written by :func:`save_model_dir`.

    ``model.keras`` is checked against the checksum in ``model.json`` and loaded in Keras' safe
    mode (no arbitrary code), without compiling.

    Args:
        path: the model folder.

    Returns:
        ``(model, spec, metadata)``.

    Raises:
        PpeError: the folder is missing, is not a model folder, or a file is missing or damaged.
    """
    import keras

    info = read_model_json(path)
    folder = info.path
    model_file = folder / MODEL_FILE
    if not model_file.is_file():
        raise PpeError(f"{folder} is not a complete model folder: {MODEL_FILE} is missing; {_FIX}")
    if not (folder / SAVED_MODEL_DIR / "saved_model.pb").is_file():
        raise PpeError(
            f"{folder} is not a complete model folder: {SAVED_MODEL_DIR}/saved_model.pb is "
            f"missing; {_FIX}"
        )
    expected = info.manifest.get("files", {}).get(MODEL_FILE, {}).get("sha256")
    if expected != sha256_file(model_file):
        raise PpeError(
            f"{model_file} is damaged: its sha256 differs from the one in {MANIFEST_FILE}; {_FIX}"
        )
    try:
        model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile errors...
        raise PpeError(f"{model_file} cannot be loaded ({error}); {_FIX}") from error
    shapes = [tuple(output.shape[1:]) for output in model.outputs]
    if shapes != list(info.spec.output_shapes):
        raise PpeError(
            f"{model_file} outputs {shapes} do not match {MANIFEST_FILE} "
            f"{list(info.spec.output_shapes)}; {_FIX}"
        )
    logger.info("loaded model folder %s (%s)", folder, model.name)
    return model, info.spec, info.metadata
