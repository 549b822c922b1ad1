"""The model baked into the module image: which files of an export, staged where the build reads.

:data:`MODEL_FILES` is the one list of the files of ``ppe export``'s output that the image needs.
``ppe edge stage-model`` (``environments/docker/stage_model.sh`` runs it) copies exactly those
into ``environments/docker/model/``, which the Dockerfiles COPY as a whole folder, and
``environments/docker/build_image.sh`` stages the same way into its private build context; the
edge image pipeline checks a staged folder with ``ppe edge stage-model --check``. No other file
of the repository names them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ppe.errors import ConfigError
from ppe.export import INT8_FILE
from ppe.files import replaced_dir
from ppe.run.layout import LABELS_FILE, MODEL_JSON, THRESHOLDS_FILE

logger = logging.getLogger(__name__)

# The int8 LiteRT model, its labels, model.json (the spec the runtime reads next to the .tflite)
# and thresholds.json (the per-class score thresholds chosen on the val split).
MODEL_FILES: tuple[str, ...] = (INT8_FILE, LABELS_FILE, MODEL_JSON, THRESHOLDS_FILE)
# Where the staged model sits in the build context (the repository root), relative to it.
STAGED_MODEL_DIR = "environments/docker/model"


def staging_errors(folder: Path) -> list[str]:
    """One line per file of :data:`MODEL_FILES` missing or empty in ``folder``, with the fix."""
    errors: list[str] = []
    for name in MODEL_FILES:
        path = folder / name
        if path.is_file() and path.stat().st_size > 0:
            continue
        if name == THRESHOLDS_FILE:
            errors.append(
                f"{path} is missing or empty: the exported model folder has no per-class "
                "thresholds (trained without a val split, or before ppe train wrote them); run "
                "'ppe thresholds --model <model folder> --data <dataset>' and export it again"
            )
        else:
            errors.append(
                f"{path} is missing or empty; export the model with 'ppe export' (int8 enabled, "
                "the default) and pass its --out folder"
            )
    return errors


def check_staged(folder: Path) -> None:
    """Raise :class:`ConfigError` unless ``folder`` holds exactly :data:`MODEL_FILES`."""
    if not folder.is_dir():
        raise ConfigError(
            f"{folder} does not exist; stage a model first: environments/docker/stage_model.sh "
            "<folder written by 'ppe export'>"
        )
    errors = staging_errors(folder)
    extra = sorted(p.name for p in folder.iterdir() if p.name not in MODEL_FILES)
    if extra:
        errors.append(
            f"{folder} holds files the image must not carry ({', '.join(extra)}); stage it "
            "again with environments/docker/stage_model.sh"
        )
    if errors:
        raise ConfigError("\n".join(errors))


def stage_model(export_dir: Path, out: Path) -> list[Path]:
    """Replace ``out`` with the :data:`MODEL_FILES` of ``export_dir``, read-only (mode 0444).

    The Dockerfiles' COPY keeps the mode, so the image needs no chmod, which would store the
    model a second time in a layer of its own.

    Nothing is written when a file is missing: the earlier staged model, if any, stays as it was.

    Returns:
        The staged files, in :data:`MODEL_FILES` order.
    """
    errors = staging_errors(export_dir)
    if errors:
        raise ConfigError("\n".join(errors))
    with replaced_dir(out) as staging:
        for name in MODEL_FILES:
            shutil.copyfile(export_dir / name, staging / name)
            (staging / name).chmod(0o444)
    logger.info("staged %s from %s into %s", " ".join(MODEL_FILES), export_dir, out)
    return [out / name for name in MODEL_FILES]
