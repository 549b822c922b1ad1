"""One typed configuration for every step, loaded from YAML and validated.

A config is the packaged defaults (the field defaults below) overlaid with a YAML file: either a
packaged profile selected by name (``smoke``, ``demo``, see ``src/ppe/configs/``) or a path.
``--set section.key=value`` overrides come last. Unknown keys and out-of-range values are rejected
with a message that names the key and says what to write instead. The resolved config is saved as
``config.yaml`` next to every run, checkpoint and Azure ML job.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ppe.errors import ConfigError

PROFILE_PACKAGE = "ppe.configs"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ModelConfig(Section):
    """The detector's architecture and input."""

    architecture: Literal["yolov3", "yolov3_tiny"] = "yolov3_tiny"
    image_size: Annotated[int, Field(ge=64, le=1024)] = 416
    classes: list[str] = Field(default_factory=lambda: ["helmet", "head"], min_length=1)
    # Anchor (width, height) pairs in pixels of a 416x416 input, 3 per output (6 for yolov3_tiny,
    # 9 for yolov3), e.g. from `ppe data anchors`; null: Darknet's anchors and masks, which the
    # COCO weights were trained with. They are written into every model folder's model.json.
    anchors: (
        list[tuple[Annotated[int, Field(ge=1, le=4096)], Annotated[int, Field(ge=1, le=4096)]]]
        | None
    ) = None

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(
                f"must be a multiple of 32 (YOLOv3's largest stride), e.g. {round(value / 32) * 32}"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _class_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or any(ch.isspace() for ch in name):
                raise ValueError(f"class name {name!r} must be non-empty with no spaces")
        if len(set(value)) != len(value):
            raise ValueError("class names must be unique")
        return value

    @model_validator(mode="after")
    def _anchor_count(self) -> ModelConfig:
        needed = {"yolov3": 9, "yolov3_tiny": 6}[self.architecture]
        if self.anchors is not None and len(self.anchors) != needed:
            raise ValueError(
                f"anchors: {self.architecture} needs {needed} (width, height) pairs (3 per "
                f"output), got {len(self.anchors)}; `ppe data anchors` fits them to a dataset, or "
                "set model.anchors to null for Darknet's"
            )
        return self


class SynthConfig(Section):
    """Procedural hard-hat scenes (``ppe data synth``)."""

    num_images: Annotated[int, Field(ge=3)] = 600
    width: Annotated[int, Field(ge=64, le=2048)] = 416
    height: Annotated[int, Field(ge=64, le=2048)] = 416
    max_people: Annotated[int, Field(ge=1, le=50)] = 6
    head_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.4
    min_head_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    max_head_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.22
    seed: int = 0

    @model_validator(mode="after")
    def _sizes(self) -> SynthConfig:
        if self.min_head_size > self.max_head_size:
            raise ValueError("min_head_size must not exceed max_head_size")
        return self


class SplitConfig(Section):
    """Fractions of a seeded train/val/test split; they must add up to 1."""

    train: Annotated[float, Field(ge=0.0, le=1.0)] = 0.7
    val: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    test: Annotated[float, Field(ge=0.0, le=1.0)] = 0.15
    seed: int = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0 (got {total:g})")
        if self.train <= 0:
            raise ValueError("train must be > 0")
        return self


class DataConfig(Section):
    """Where the data comes from and how foreign class names map onto ours."""

    source: Literal["synth", "import", "voc"] = "synth"
    path: Path | None = None
    synth: SynthConfig = Field(default_factory=SynthConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    # Foreign class name -> our class name, or null to drop boxes of that class on import.
    class_map: dict[str, str | None] = Field(
        default_factory=lambda: {"hat": "helmet", "person": None}
    )

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.source in ("import", "voc") and self.path is None:
            raise ValueError(f"source {self.source!r} needs data.path (a dataset folder)")
        return self


class AugmentConfig(Section):
    """Training-time augmentation (train split only)."""

    horizontal_flip: bool = True
    scale_jitter: Annotated[float, Field(ge=0.0, le=0.9)] = 0.25
    translate: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.03
    saturation: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    brightness: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class TrainConfig(Section):
    """Optimisation and checkpointing."""

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 30
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 16
    steps_per_epoch: Annotated[int, Field(ge=1)] | None = None
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    # Fraction of every convolution kernel removed per step at the peak learning rate (decoupled,
    # following the schedule; see ppe.model.training.make_optimizer).
    weight_decay: Annotated[float, Field(ge=0.0, le=0.1)] = 5e-4
    ignore_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    # More positives per box: besides its best anchor, every anchor whose shape IoU with the box
    # is above this trains on it too (YOLOv4's iou_thresh, e.g. 0.213); null: the best one only.
    positive_anchor_iou: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_boxes: Annotated[int, Field(ge=1, le=1000)] = 100
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    seed: int = 0
    # Transfer learning: a model folder (e.g. from `ppe weights import-darknet`) whose backbone
    # and neck initialise ours; the backbone is frozen (not trained, batch norm in inference mode)
    # for the first `freeze_backbone_epochs` epochs.
    init_from: Path | None = None
    freeze_backbone_epochs: Annotated[int, Field(ge=0)] = 0
    # Exponential moving average of the weights (0: off). Validation, the best-epoch choice and
    # the shipped model use the averaged weights; the decay ramps up as min(decay, (1+n)/(10+n))
    # over the first steps n (see ppe.model.training.make_optimizer).
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # Compute dtype of training: float16 for GPUs, bfloat16 for CPUs with avx512_bf16/amx_bf16;
    # auto picks one from the hardware (or none). Head outputs and loss stay float32 and the
    # shipped model is float32 (ppe.train.precision).
    mixed_precision: Literal["none", "float16", "bfloat16", "auto"] = "none"
    jit_compile: bool = False
    shuffle_buffer: Annotated[int, Field(ge=1)] = 1024

    @model_validator(mode="after")
    def _freeze_needs_weights(self) -> TrainConfig:
        if self.freeze_backbone_epochs and self.init_from is None:
            raise ValueError(
                "freeze_backbone_epochs freezes pretrained weights: set train.init_from to a "
                "model folder (e.g. from `ppe weights import-darknet`) or set it to 0"
            )
        if self.freeze_backbone_epochs > self.epochs:
            raise ValueError(
                f"freeze_backbone_epochs ({self.freeze_backbone_epochs}) must not exceed epochs "
                f"({self.epochs})"
            )
        return self


class EvaluateConfig(Section):
    """Detection thresholds for mAP (stated in every metrics file) and the metric itself."""

    score_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01
    nms_iou_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.45
    max_detections: Annotated[int, Field(ge=1, le=10_000)] = 100
    iou_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    split: Literal["train", "val", "test"] = "test"
    batch_size: Annotated[int, Field(ge=1)] = 8
    # Image resamples of the 95% bootstrap intervals (metrics.json, the gate's paired comparison).
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)] = 1000
    bootstrap_seed: int = 0


class GateConfig(Section):
    """Champion/challenger rule: promote when challenger mAP >= champion mAP + margin."""

    metric: Literal["map50"] = "map50"
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.005
    # "point": challenger >= champion + margin. "paired_interval": the lower end of the 95%
    # paired bootstrap interval of (challenger - champion) must reach the margin.
    decision: Literal["point", "paired_interval"] = "point"


class RegistryConfig(Section):
    """Model registry backend (local embedded store, or the Azure ML workspace)."""

    backend: Literal["local", "azureml"] = "local"
    root: Path = Path("outputs/registry")
    model_name: str = Field(
        default="ppe-hardhat-yolov3", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
    )


class TrackingConfig(Section):
    """MLflow tracking: the embedded SQLite store by default, the workspace's URI on Azure ML."""

    uri: str | None = None
    experiment: str = "ppe-hardhat"


class ExportConfig(Section):
    """LiteRT export for the edge."""

    int8: bool = True
    representative_images: Annotated[int, Field(ge=1, le=10_000)] = 100
    #: The LiteRT files' outputs (ppe.model.decode.OUTPUT_LAYOUTS): ``raw``, one output per
    #: scale, or ``split``, box and score outputs apart, each with its own int8 scale. Measured
    #: (benchmarks/experiments/issue16_recipe.md): raw lost less on the 416 px models (5b), split
    #: on the 512 px ones (10, 11, 13), so the ``hardhat`` profile sets split.
    output_layout: Literal["raw", "split"] = "raw"


class EdgeConfig(Section):
    """The IoT Edge module's runtime behaviour (live-updatable from the module twin)."""

    score_threshold: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] = 0.4
    alert_min_frames: Annotated[int, Field(ge=1, le=1000)] = 3
    alert_window_frames: Annotated[int, Field(ge=1, le=1000)] = 5
    alert_cooldown_s: Annotated[float, Field(ge=0.0, le=86400.0, allow_inf_nan=False)] = 60.0
    # At least 1 s: one module at 1 message/s already uses 86,400 of an S1 unit's 400,000
    # messages a day (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling).
    telemetry_interval_s: Annotated[float, Field(ge=1.0, le=86400.0, allow_inf_nan=False)] = 60.0
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    max_upload_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000

    @model_validator(mode="after")
    def _window(self) -> EdgeConfig:
        if self.alert_min_frames > self.alert_window_frames:
            raise ValueError("alert_min_frames (K) must not exceed alert_window_frames (N)")
        return self


class Config(Section):
    """The whole configuration. Sections mirror the pipeline steps."""

    name: str = "custom"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (paths as strings)."""
        data: dict[str, Any] = json.loads(self.model_dump_json())
        return data

    def to_yaml(self) -> str:
        """The resolved config as YAML, as saved next to runs and checkpoints."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """Content hash (sha256 hex, first 16 characters) of the resolved config."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def save(self, path: Path) -> Path:
        """Write ``config.yaml`` atomically (temp file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        tmp.replace(path)
        return path


def available_profiles() -> list[str]:
    """Names of the packaged profiles (``src/ppe/configs/*.yaml``)."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in resources.files(PROFILE_PACKAGE).iterdir()
        if entry.name.endswith(".yaml")
    )


def _read_yaml(source: str) -> tuple[dict[str, Any], str]:
    """Read a profile name or a YAML path; returns (mapping, label used in messages)."""
    path = Path(source)
    if source in available_profiles() and not path.exists():
        text = resources.files(PROFILE_PACKAGE).joinpath(f"{source}.yaml").read_text("utf-8")
        label = f"profile {source!r}"
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        label = str(path)
    else:
        raise ConfigError(
            f"config {source!r}: no such file and not a packaged profile; "
            f"use one of {', '.join(available_profiles())} or a path to a YAML file"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{label}: not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of sections, not {type(data).__name__}"
        )
    return data, label


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: write it as section.key=value, e.g. train.epochs=5")
    key, raw = item.split("=", 1)
    keys = [part for part in key.strip().split(".") if part]
    if not keys:
        raise ConfigError(f"override {item!r}: empty key; write section.key=value")
    return keys, yaml.safe_load(raw) if raw.strip() else None


def _set_nested(data: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names allowed at the section that ``loc`` points into (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _explain(error: ValidationError, label: str) -> ConfigError:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join(loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(Config, loc)
            guess = difflib.get_close_matches(loc[-1], allowed, n=1)
            hint = f"did you mean {'.'.join([*loc[:-1], guess[0]])!r}? " if guess else ""
            lines.append(
                f"{label}: unknown key {key!r}: {hint}allowed keys here: {', '.join(allowed)}"
            )
        else:
            got = item.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"{label}: {key}: {message}{shown}")
    return ConfigError(
        "invalid config:\n  " + "\n  ".join(lines)
        if len(lines) > 1
        else "invalid config: " + lines[0]
    )


def load_config(source: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load and validate a config.

    Args:
        source: A packaged profile name (``smoke``, ``demo``), a YAML path, or None for defaults.
        overrides: ``section.key=value`` strings applied last (values parsed as YAML scalars).

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: Unknown keys, bad values or unreadable files, with the key and the fix named.
    """
    data: dict[str, Any] = {}
    label = "defaults"
    if source is not None:
        data, label = _read_yaml(str(source))
    for item in overrides:
        keys, value = _parse_override(item)
        _set_nested(data, keys, value)
        label = f"{label} (with overrides)" if "overrides" not in label else label
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise _explain(error, label) from None


def config_from_mapping(data: Mapping[str, Any], label: str = "config") -> Config:
    """Validate an already-parsed mapping (e.g. a ``config.yaml`` saved next to a model)."""
    try:
        return Config.model_validate(dict(data))
    except ValidationError as error:
        raise _explain(error, label) from None
