"""The documents that cross step boundaries, each a pydantic model with one reader and one writer.

============================  =================  ===================  ==========================
document                      file               written by           read by
============================  =================  ===================  ==========================
:class:`EvaluationMetrics`    ``metrics.json``   ``ppe evaluate``,    gate, register, report
                                                 ``ppe champion``
:class:`TrainingSummary`      ``train.json``     ``ppe train``        report
:class:`DatasetRecord`        ``dataset.json``   ``ppe train``        report
:class:`ChampionRecord`       ``champion.json``  ``ppe champion``     gate, report
:class:`GateDecision`         ``gate.json``      ``ppe gate``         register, report, ADO
:class:`RegisterRecord`       ``register.json``  ``ppe register``     report, the runners
:class:`ExportMetrics`        ``metrics.json``   ``ppe export``       benchmarks, edge
:class:`DetectionOutcomes`    ``outcomes.json``  ``ppe evaluate``,    gate (paired bootstrap)
                                                 ``ppe champion``
:class:`PrCurves`             ``pr_curves.json`` ``ppe evaluate``     report
:class:`ClassThresholds`      ``thresholds.json`` (in a model folder, the edge reads it)
============================  =================  ===================  ==========================

:meth:`Document.write` writes atomically (no NaN: a score that is not a number is ``null``);
:meth:`Document.read` refuses a missing file, bad JSON or a field that does not fit, naming the
file and the step to re-run. Only pydantic and the standard library are imported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from ppe.errors import DocumentError
from ppe.files import write_json_atomic


class Document(BaseModel):
    """A JSON document one step writes and later steps read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The step that writes the document (for messages).
    WRITER: ClassVar[str] = "the step that wrote it"

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read and validate the document at ``path``.

        Raises:
            DocumentError: missing, unreadable, not JSON, or fields that do not fit.
        """
        fix = f"re-run `{cls.WRITER}`"
        if not path.is_file():
            raise DocumentError(f"{path}: no such file; run `{cls.WRITER}` first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DocumentError(f"{path}: not valid JSON ({error}); {fix}") from None
        if not isinstance(data, dict):
            raise DocumentError(f"{path}: expected a JSON object, got {type(data).__name__}; {fix}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or '(document)'}: {item['msg']}"
                for item in error.errors()
            )
            raise DocumentError(
                f"{path}: not the {cls.__name__} document `{cls.WRITER}` writes ({problems}); {fix}"
            ) from None

    def write(self, path: Path) -> Path:
        """Write the document to ``path`` atomically."""
        return write_json_atomic(path, self.to_json_dict())

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON-compatible content."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data


def finite_or_none(value: float | None) -> float | None:
    """``value`` when it is a finite number, else None (JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


class ClassCounts(BaseModel):
    """Per-class results of an evaluation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ap: float | None
    num_ground_truth: int
    num_difficult: int
    num_detections: int
    tp: int
    fp: int
    ignored: int


class Counts(BaseModel):
    """How many images, boxes and detections an evaluation saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: int
    ground_truth: dict[str, int]
    detections: dict[str, int]


class Thresholds(BaseModel):
    """The evaluation settings two compared scores must share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_threshold: float
    nms_iou_threshold: float
    nms: str
    max_detections: int
    iou_threshold: float
    ap_definition: str


class Interval(BaseModel):
    """A two-sided interval; None ends when no resample had a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float | None
    high: float | None


class BootstrapIntervals(BaseModel):
    """Bootstrap intervals of mAP@0.5 and per-class AP (:mod:`ppe.evaluate.bootstrap`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    level: float
    resamples: int
    seed: int
    map50: Interval
    ap: dict[str, Interval]


class OperatingClass(BaseModel):
    """One class's counts at its operating score threshold (same-class VOC matching)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None


class ConfusionMatrix(BaseModel):
    """Detections at the operating thresholds matched to boxes of any class (IoU >= 0.5).

    ``counts[row][column]``: rows are the true classes then ``background`` (a detection that
    matched no box), columns the predicted classes then ``missed`` (a box no detection matched).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: list[str]
    columns: list[str]
    counts: list[list[int]]


class OperatingPoint(BaseModel):
    """The detector as the edge runs it: counts at the edge's score thresholds, not at 0.01."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    per_class: dict[str, OperatingClass]
    confusion: ConfusionMatrix


class EvaluationMetrics(Document):
    """``metrics.json``: mAP@0.5 (PASCAL VOC) of one model on one split of one dataset.

    ``bootstrap`` and ``operating_point`` are None only in documents written before they
    existed.
    """

    WRITER: ClassVar[str] = "ppe evaluate"

    status: Literal["ok"] = "ok"
    map50: float | None
    ap: dict[str, float | None]
    per_class: dict[str, ClassCounts]
    classes: list[str]
    counts: Counts
    thresholds: Thresholds
    split: str
    data_hash: str
    model_hash: str
    backend: str
    images_per_second: float
    bootstrap: BootstrapIntervals | None = None
    operating_point: OperatingPoint | None = None


class DetectionOutcomes(Document):
    """``outcomes.json``: what the metric decided for each detection, per image.

    ``num_ground_truth[i][c]`` counts image ``i``'s non-difficult boxes of class ``c``; the
    detection columns ``image``, ``label``, ``score`` and ``outcome`` (1 true positive, 0 false
    positive, -1 ignored) have one entry per detection. Resampling images needs nothing else.
    """

    WRITER: ClassVar[str] = "ppe evaluate"

    image_ids: list[str]
    classes: list[str]
    num_ground_truth: list[list[int]]
    image: list[int]
    label: list[int]
    score: list[float]
    outcome: list[Literal[-1, 0, 1]]


class PrCurve(BaseModel):
    """One class's precision-recall curve (at most a few hundred points)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: list[float]
    recall: list[float]


class PrCurves(Document):
    """``pr_curves.json``: the precision-recall curve of every class."""

    WRITER: ClassVar[str] = "ppe evaluate"

    curves: dict[str, PrCurve]


class ClassThresholds(Document):
    """``thresholds.json`` in a model folder: per-class score thresholds chosen on a split.

    A class's threshold in force on the edge is the larger of the live ``score_threshold`` and
    its entry here (:meth:`in_force`).
    """

    WRITER: ClassVar[str] = "ppe thresholds"

    split: str
    criterion: str
    thresholds: dict[str, float]

    def in_force(self, class_names: list[str] | tuple[str, ...], floor: float) -> list[float]:
        """The threshold of each class (in ``class_names`` order) given the live floor."""
        return [max(floor, self.thresholds.get(name, floor)) for name in class_names]


class DatasetRecord(Document):
    """``train/dataset.json``: the data a model was trained on."""

    WRITER: ClassVar[str] = "ppe train"

    data_hash: str
    path: str
    train: int
    val: int


class TrainingSummary(Document):
    """``train/train.json``: what training did."""

    WRITER: ClassVar[str] = "ppe train"

    epochs: int
    resumed_from_epoch: int
    steps_per_epoch: int
    batch_size: int
    seconds: float
    images_per_second: float
    history: dict[str, list[float]]
    data_hash: str
    config_hash: str
    mlflow_run_id: str | None
    replicas: int
    tensorflow: str


class ChampionRecord(Document):
    """``champion/champion.json``: the registry's champion when the run started, if any.

    When there is one, its model is in ``champion/model`` and its evaluation on the run's data
    in ``champion/evaluate``.
    """

    WRITER: ClassVar[str] = "ppe champion"

    model_name: str
    version: int | None
    model_hash: str | None
    registry: str

    @property
    def present(self) -> bool:
        """Whether the registry had a champion."""
        return self.version is not None


class PairedComparison(BaseModel):
    """Challenger minus champion on the same images, with its paired bootstrap interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    images: int
    difference: float | None
    interval: Interval
    level: float
    resamples: int
    seed: int


class GateDecision(Document):
    """``gate/gate.json``: whether the challenger replaces the champion, and why.

    Attributes:
        promote: Whether the challenger becomes the champion.
        reason: One sentence explaining the decision.
        rule: The rule in words.
        metric: The compared metric (a ``metrics.json`` key).
        margin: The required improvement over the champion.
        challenger_score: The challenger's metric, None when its evaluation is missing or failed.
        champion_score: The champion's metric, None when there is no champion.
        data_hash: The evaluation data's content hash (the challenger's).
        split: The evaluated split.
        challenger_model_hash: The challenger's model hash.
        champion_model_hash: The champion's model hash, None when there is no champion.
        champion_version: The champion's registry version, when the gate knows it.
        champion_reevaluated: Whether the champion was re-evaluated through the hook.
        decision: The configured rule (``gate.decision``): ``point`` or ``paired_interval``.
        paired: The paired comparison on the same images, when both evaluations have their
            ``outcomes.json``.
    """

    WRITER: ClassVar[str] = "ppe gate"

    schema_version: Literal[1] = 1
    promote: bool
    reason: str
    rule: str
    metric: str
    margin: float
    challenger_score: float | None
    champion_score: float | None
    data_hash: str | None
    split: str | None
    challenger_model_hash: str | None
    champion_model_hash: str | None
    champion_version: int | None = None
    champion_reevaluated: bool = False
    decision: Literal["point", "paired_interval"] = "point"
    paired: PairedComparison | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (with the schema version)."""
        return self.to_json_dict()


class RegisteredVersion(BaseModel):
    """A registered model version as ``ppe register`` reports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    champion: bool
    tags: dict[str, str]
    properties: dict[str, str]
    created_at: str | None
    source: str | None


class RegisterRecord(Document):
    """``register/register.json``: the version registered and whether it became champion."""

    WRITER: ClassVar[str] = "ppe register"

    version: RegisteredVersion
    promoted: bool


class BackendMetrics(BaseModel):
    """One backend's score and speed in ``export/metrics.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    map50: float | None
    ap: dict[str, float | None]
    latency_ms_p50: float
    latency_ms_p95: float
    size_bytes: int | None
    file: str | None
    map50_delta_vs_keras: float | None
    speedup_vs_keras: float


class ExportMetrics(Document):
    """``export/metrics.json``: mAP@0.5 and batch-1 latency of Keras, LiteRT fp32 and int8."""

    WRITER: ClassVar[str] = "ppe export"

    split: str
    images: int
    data_hash: str
    threads: int
    thresholds: dict[str, Any]
    backends: dict[str, BackendMetrics]
