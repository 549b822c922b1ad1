"""Build the report (``index.html``, PNG plots and ``report.zip``) from the steps' outputs.

Inputs, each a step's output folder (:class:`ReportInputs`; a missing optional part is left out of
the report and said so):

- ``evaluate`` (required): ``metrics.json``, ``pr_curves.json``, ``detection-results/``
- ``gate`` and ``champion``: the decision, and the champion's evaluation on the same data
- ``train``: ``train.json`` for the loss curves; ``data`` (or the path in ``train/dataset.json``)
  for sample images with true and predicted boxes.

Plots are written with Matplotlib's Agg backend; boxes on sample images are VOC pixel boxes
``[xmin, ymin, xmax, ymax]`` (1-based inclusive), drawn with Pillow.
"""

from __future__ import annotations

import html
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ppe.errors import PpeError
from ppe.files import replaced_dir
from ppe.run import layout
from ppe.run.documents import (
    ChampionRecord,
    DatasetRecord,
    Document,
    EvaluationMetrics,
    GateDecision,
    TrainingSummary,
)

logger = logging.getLogger(__name__)

CLASS_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
SAMPLE_IMAGES = 6
SAMPLE_SCORE = 0.3


_D = TypeVar("_D", bound=Document)


def _read_optional(kind: type[_D], path: Path) -> _D | None:
    return kind.read(path) if path.is_file() else None


def _read_curves(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        curves: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PpeError(f"{path}: not valid JSON ({error}); re-run `ppe evaluate`") from error
    return curves


@dataclass(frozen=True)
class ReportInputs:
    """The step output folders the report reads (see the module docstring)."""

    evaluate: Path
    train: Path | None = None
    champion: Path | None = None
    gate: Path | None = None
    register: Path | None = None
    data: Path | None = None

    @classmethod
    def of_run(cls, run: layout.RunLayout) -> ReportInputs:
        """The folders of a local run."""
        return cls(
            evaluate=run.port("evaluate"),
            train=run.port("train"),
            champion=run.port("champion"),
            gate=run.port("gate"),
            register=run.port("register"),
            data=run.port("data"),
        )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path.name


def _colour(index: int) -> str:
    return CLASS_COLOURS[index % len(CLASS_COLOURS)]


def plot_ground_truth(metrics: Mapping[str, Any], out: Path) -> str:
    """Bar chart of ground-truth boxes per class."""
    plt = _pyplot()
    counts = metrics["counts"]["ground_truth"]
    names = list(counts)
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.barh(names, [counts[n] for n in names], color=[_colour(i) for i in range(len(names))])
    ax.bar_label(bars)
    ax.set_title(f"ground truth ({metrics['counts']['images']} images, {len(names)} classes)")
    ax.set_xlabel("boxes (difficult excluded)")
    return _save(fig, out / "ground_truth.png")


def plot_detections(metrics: Mapping[str, Any], out: Path) -> str:
    """Stacked bars of true and false positives per class."""
    plt = _pyplot()
    per_class = metrics["per_class"]
    names = list(per_class)
    tp = [per_class[n]["tp"] for n in names]
    fp = [per_class[n]["fp"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, tp, color="forestgreen", label="true positive")
    ax.barh(names, fp, left=tp, color="crimson", label="false positive")
    ax.set_title(f"detections (score >= {metrics['thresholds']['score_threshold']:g}), TP and FP")
    ax.legend(loc="lower right")
    return _save(fig, out / "detections.png")


def plot_ap(metrics: Mapping[str, Any], out: Path) -> str:
    """AP per class with the mAP as a line."""
    plt = _pyplot()
    ap = {k: v for k, v in metrics["ap"].items() if v is not None}
    names = list(ap)
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.barh(names, [ap[n] for n in names], color=[_colour(i) for i in range(len(names))])
    ax.bar_label(bars, fmt="%.3f")
    map50 = metrics.get("map50")
    if map50 is not None:
        ax.axvline(map50, color="black", linestyle="--", label=f"mAP@0.5 = {map50:.3f}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1.05)
    ax.set_title(f"AP@0.5 per class, mAP = {map50:.2%}" if map50 is not None else "AP per class")
    return _save(fig, out / "ap.png")


def plot_pr_curves(curves: Mapping[str, Any], ap: Mapping[str, Any], out: Path) -> list[str]:
    """One precision-recall curve per class."""
    plt = _pyplot()
    names = []
    for index, (name, curve) in enumerate(curves.items()):
        fig, ax = plt.subplots(figsize=(4, 3.2))
        recall, precision = curve["recall"], curve["precision"]
        if recall:
            ax.plot(recall, precision, "-", color=_colour(index))
            ax.fill_between(recall, precision, alpha=0.2, color=_colour(index))
        value = ap.get(name)
        title = f"{name}: AP {value:.2%}" if value is not None else f"{name}: no ground truth"
        ax.set_title(title)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        names.append(_save(fig, out / f"pr_{name}.png"))
    return names


def plot_champion(
    gate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    challenger: Mapping[str, Any],
    out: Path,
) -> str:
    """Champion vs challenger: mAP and AP per class side by side."""
    plt = _pyplot()
    labels = ["mAP@0.5", *[n for n, v in challenger["ap"].items() if v is not None]]
    chall = [challenger.get("map50") or 0.0, *[challenger["ap"][n] for n in labels[1:]]]
    champ_values: list[float] | None = None
    if champion is not None:
        champ_values = [
            champion.get("map50") or 0.0,
            *[(champion["ap"].get(n) or 0.0) for n in labels[1:]],
        ]
    elif gate.get("champion_score") is not None:
        champ_values = [gate["champion_score"], *[0.0] * (len(labels) - 1)]
    fig, ax = plt.subplots(figsize=(6, 3))
    positions = range(len(labels))
    width = 0.38
    ax.bar([p + width / 2 for p in positions], chall, width, label="challenger", color="#377eb8")
    if champ_values is not None:
        ax.bar(
            [p - width / 2 for p in positions],
            champ_values,
            width,
            label="champion",
            color="#999999",
        )
    ax.set_xticks(list(positions), labels)
    ax.set_ylim(0, 1.05)
    verdict = "promoted" if gate.get("promote") else "not promoted"
    ax.set_title(f"champion vs challenger: {verdict}")
    ax.legend(loc="lower right")
    return _save(fig, out / "champion_vs_challenger.png")


def plot_loss(train_summary: Mapping[str, Any], out: Path) -> str | None:
    """Training and validation loss per epoch."""
    history = train_summary.get("history") or {}
    if "loss" not in history:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    epochs = range(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], "-o", label="train loss")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], "-o", label="validation loss")
    ax.set_xlabel("epoch (this invocation)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("training loss")
    return _save(fig, out / "loss.png")


def _read_boxes(path: Path, with_score: bool) -> list[tuple[str, float, list[float]]]:
    rows: list[tuple[str, float, list[float]]] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        if with_score:
            rows.append((parts[0], float(parts[1]), [float(v) for v in parts[2:6]]))
        else:
            rows.append((parts[0], 1.0, [float(v) for v in parts[1:5]]))
    return rows


def draw_samples(
    evaluate_dir: Path, data_dir: Path | None, classes: Sequence[str], out: Path
) -> list[str]:
    """Sample images with true (dashed white) and predicted (class colour) boxes."""
    from PIL import Image, ImageDraw

    if data_dir is None or not (data_dir / "JPEGImages").is_dir():
        return []
    ids = sorted(p.stem for p in (evaluate_dir / "ground-truth").glob("*.txt"))[:SAMPLE_IMAGES]
    images = {p.stem: p for p in (data_dir / "JPEGImages").iterdir()}
    colour = {name: _colour(i) for i, name in enumerate(classes)}
    names = []
    for image_id in ids:
        if image_id not in images:
            continue
        with Image.open(images[image_id]) as source:
            image = source.convert("RGB")
        draw = ImageDraw.Draw(image)
        for _, _, box in _read_boxes(evaluate_dir / "ground-truth" / f"{image_id}.txt", False):
            x0, y0, x1, y1 = box
            for offset in range(0, int(x1 - x0), 6):
                draw.line([(x0 + offset, y0), (min(x0 + offset + 3, x1), y0)], fill="white")
                draw.line([(x0 + offset, y1), (min(x0 + offset + 3, x1), y1)], fill="white")
            for offset in range(0, int(y1 - y0), 6):
                draw.line([(x0, y0 + offset), (x0, min(y0 + offset + 3, y1))], fill="white")
                draw.line([(x1, y0 + offset), (x1, min(y0 + offset + 3, y1))], fill="white")
        detections = _read_boxes(evaluate_dir / "detection-results" / f"{image_id}.txt", True)
        for name, score, box in detections:
            if score < SAMPLE_SCORE:
                continue
            draw.rectangle(box, outline=colour.get(name, "#ffffff"), width=2)
            draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=colour.get(name))
        name = f"sample_{image_id}.png"
        image.save(out / name)
        names.append(name)
    return names


def _data_dir(inputs: ReportInputs) -> Path | None:
    if inputs.data is not None and (inputs.data / "JPEGImages").is_dir():
        return inputs.data
    if inputs.train is None:
        return None
    info = _read_optional(DatasetRecord, layout.dataset_file(inputs.train))
    if info and Path(info.path).is_dir():
        return Path(info.path)
    return None


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .muted { color: #666; }
.verdict { padding: 0.8rem 1rem; border-radius: 6px; font-size: 1.1rem; margin: 1rem 0; }
.promoted { background: #e3f5e1; border: 1px solid #8cc084; }
.kept { background: #fdf1dc; border: 1px solid #e0b36a; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; } .grid img { max-width: 100%; }
figure { margin: 0; } figcaption { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def build_run_report(run_dir: Path) -> Path:
    """The report of a local run folder, in ``<run>/report/``."""
    run = layout.RunLayout(run_dir)
    return build_report(ReportInputs.of_run(run), run.port("report"), run_dir.name)


def build_report(inputs: ReportInputs, report_dir: Path, title: str) -> Path:
    """Write ``index.html`` with its plots, and ``report.zip`` of them, to ``report_dir``.

    Args:
        inputs: the step output folders (see the module docstring for what they may hold).
        report_dir: the report folder (replaced).
        title: the run's name in the page title.

    Returns:
        The path of ``index.html``.

    Raises:
        PpeError: no evaluation ``metrics.json``, or a document that does not read.
    """
    evaluate_dir = inputs.evaluate
    metrics = EvaluationMetrics.read(layout.metrics_file(evaluate_dir)).to_json_dict()
    curves = _read_curves(layout.curves_file(evaluate_dir))
    decision = _read_optional(GateDecision, layout.gate_file(inputs.gate)) if inputs.gate else None
    gate = decision.to_json_dict() if decision is not None else None
    champion = None
    if inputs.champion is not None:
        record = _read_optional(ChampionRecord, layout.champion_file(inputs.champion))
        if record is not None and record.present:
            champion = EvaluationMetrics.read(
                layout.metrics_file(layout.champion_evaluate_dir(inputs.champion))
            ).to_json_dict()
    summary = (
        _read_optional(TrainingSummary, layout.train_summary_file(inputs.train))
        if inputs.train
        else None
    )
    train_summary = summary.to_json_dict() if summary is not None else None
    classes = list(metrics.get("classes") or metrics["ap"].keys())

    with replaced_dir(report_dir) as staging:
        figures: list[tuple[str, str]] = [
            (plot_ground_truth(metrics, staging), "Ground-truth boxes per class"),
            (plot_detections(metrics, staging), "Detections per class: true and false positives"),
            (plot_ap(metrics, staging), "AP per class and mAP@0.5"),
        ]
        figures += [
            (name, "Precision-recall curve")
            for name in plot_pr_curves(curves, metrics["ap"], staging)
        ]
        if gate is not None:
            figures.append(
                (plot_champion(gate, champion, metrics, staging), "Champion vs challenger")
            )
        if train_summary:
            loss = plot_loss(train_summary, staging)
            if loss:
                figures.append((loss, "Training loss"))
        samples = draw_samples(evaluate_dir, _data_dir(inputs), classes, staging)

        if gate is None:
            verdict = '<div class="verdict kept">No gate decision in this run.</div>'
        else:
            css = "promoted" if gate.get("promote") else "kept"
            label = "Promoted" if gate.get("promote") else "Not promoted"
            reason = str(gate.get("reason", ""))
            # The gate's reason already starts with its verdict ("Promoted: ..."); bold that part.
            head, sep, rest = reason.partition(":")
            if not sep or head.strip() != label:
                head, rest = label, " " + reason
            verdict = (
                f'<div class="verdict {css}"><strong>{html.escape(head)}:</strong>'
                f'{html.escape(rest)}<br><span class="muted">Rule: '
                f"{html.escape(str(gate.get('rule', '')))}</span></div>"
            )
        class_rows = [
            [
                name,
                _fmt(metrics["ap"].get(name)),
                metrics["per_class"][name]["num_ground_truth"],
                metrics["per_class"][name]["num_detections"],
                metrics["per_class"][name]["tp"],
                metrics["per_class"][name]["fp"],
            ]
            for name in classes
        ]
        thresholds = metrics["thresholds"]
        facts: list[list[Any]] = [
            ["mAP@0.5", _fmt(metrics.get("map50"))],
            ["split", metrics.get("split")],
            ["images", metrics["counts"]["images"]],
            ["data hash", metrics.get("data_hash")],
            ["model hash", metrics.get("model_hash")],
            ["score threshold", thresholds.get("score_threshold")],
            ["NMS", f"{thresholds.get('nms')} at IoU {thresholds.get('nms_iou_threshold')}"],
            ["AP definition", thresholds.get("ap_definition")],
        ]
        if gate is not None:
            facts += [
                ["champion mAP@0.5", _fmt(gate.get("champion_score"))],
                ["challenger mAP@0.5", _fmt(gate.get("challenger_score"))],
            ]
        figure_html = "".join(
            f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for name, caption in figures
        )
        sample_html = (
            "".join(
                f'<figure><img src="{html.escape(name)}" alt="sample {html.escape(name)}" '
                f'width="320"></figure>'
                for name in samples
            )
            or '<p class="muted">Dataset images not available for this run.</p>'
        )
        page = f"""<!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8">
    <title>PPE detector report: {html.escape(title)}</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>{STYLE}</style></head>
    <body>
    <h1>Hard-hat detector: run {html.escape(title)}</h1>
    <p class="muted">Evaluation of the challenger on the
    {html.escape(str(metrics.get("split")))} split.</p>
    {verdict}
    <h2>Summary</h2>
    {_table(facts, ["", "value"])}
    <h2>Per class</h2>
    {_table(class_rows, ["class", "AP@0.5", "ground truth", "detections", "TP", "FP"])}
    <h2>Plots</h2>
    <div class="grid">{figure_html}</div>
    <h2>Sample images</h2>
    <p class="muted">Dashed white: ground truth.
    Coloured: detections with score &ge; {SAMPLE_SCORE}.</p>
    <div class="grid">{sample_html}</div>
    </body></html>
    """
        layout.report_index(staging).write_text(page, encoding="utf-8")
        with zipfile.ZipFile(layout.report_zip(staging), "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(staging.iterdir()):
                if path.name != layout.REPORT_ZIP:
                    bundle.write(path, f"report/{path.name}")
    index = layout.report_index(report_dir)
    logger.info("report: %s (%d plots, %d samples)", index, len(figures), len(samples))
    return index
