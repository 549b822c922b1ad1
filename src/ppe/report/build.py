"""Build the report (``index.html``, PNG plots and ``report.zip``) from the steps' outputs.

Inputs, each a step's output folder (:class:`ReportInputs`; a missing optional part is left out of
the report and said so). Every file read is a typed document of :mod:`ppe.run.documents` with
one writer, or the Cartucho files read by :func:`ppe.evaluate.cartucho.read_cartucho`:

- ``evaluate`` (required): ``metrics.json`` (:class:`EvaluationMetrics`: AP, bootstrap
  intervals, the operating point), ``pr_curves.json`` (:class:`PrCurves`), ``ground-truth/`` and
  ``detection-results/``
- ``gate`` and ``champion``: the decision (with its paired comparison), and the champion's
  evaluation on the same data
- ``train``: ``train.json`` for the loss curves; ``data`` (or the path in ``train/dataset.json``)
  for sample images with true and predicted boxes.

Detections are shown as the edge runs the model: the per-class counts, the confusion matrix and
the sample images use the operating thresholds recorded in ``metrics.json`` (the edge's
``score_threshold``, raised per class by the model's ``thresholds.json``), not the 0.01 that mAP
is measured at. Plots are written with Matplotlib's Agg backend; boxes on sample images are VOC
pixel boxes ``[xmin, ymin, xmax, ymax]`` (1-based inclusive), drawn with Pillow.
"""

from __future__ import annotations

import html
import logging
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ppe.files import replaced_dir
from ppe.run import layout
from ppe.run.documents import (
    ChampionRecord,
    ConfusionMatrix,
    DatasetRecord,
    Document,
    EvaluationMetrics,
    GateDecision,
    Interval,
    OperatingPoint,
    PrCurves,
    TrainingSummary,
)

logger = logging.getLogger(__name__)

CLASS_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
SAMPLE_IMAGES = 6
CLASS_COLUMNS = (
    "class",
    "AP@0.5",
    "95% interval",
    "ground truth",
    "detections (mAP)",
    "operating threshold",
    "TP",
    "FP",
    "missed",
)


_D = TypeVar("_D", bound=Document)


def _read_optional(kind: type[_D], path: Path) -> _D | None:
    return kind.read(path) if path.is_file() else None


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


def plot_ground_truth(metrics: EvaluationMetrics, out: Path) -> str:
    """Bar chart of ground-truth boxes per class."""
    plt = _pyplot()
    counts = metrics.counts.ground_truth
    names = list(counts)
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.barh(names, [counts[n] for n in names], color=[_colour(i) for i in range(len(names))])
    ax.bar_label(bars)
    ax.set_title(f"ground truth ({metrics.counts.images} images, {len(names)} classes)")
    ax.set_xlabel("boxes (difficult excluded)")
    return _save(fig, out / "ground_truth.png")


def plot_detections(point: OperatingPoint, out: Path) -> str:
    """Per class at its operating threshold: true positives, false positives and misses."""
    plt = _pyplot()
    names = list(point.per_class)
    tp = [point.per_class[n].tp for n in names]
    fp = [point.per_class[n].fp for n in names]
    fn = [point.per_class[n].fn for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, tp, color="forestgreen", label="true positive")
    ax.barh(names, fp, left=tp, color="crimson", label="false positive")
    ax.barh(
        names,
        fn,
        left=[a + b for a, b in zip(tp, fp, strict=True)],
        color="#bbbbbb",
        label="missed",
    )
    limits = ", ".join(f"{n} >= {point.per_class[n].threshold:g}" for n in names)
    ax.set_title(f"at the operating thresholds ({limits})", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out / "detections.png")


def plot_confusion(matrix: ConfusionMatrix, out: Path) -> str:
    """The confusion matrix at the operating thresholds, counts in the cells."""
    plt = _pyplot()
    counts = matrix.counts
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns)
    ax.set_yticks(range(len(matrix.rows)), matrix.rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((value for row in counts for value in row), default=0)
    for row, values in enumerate(counts):
        for column, value in enumerate(values):
            colour = "white" if peak and value > peak / 2 else "black"
            ax.text(column, row, str(value), ha="center", va="center", color=colour)
    ax.set_title("confusion at the operating thresholds")
    return _save(fig, out / "confusion.png")


def plot_ap(metrics: EvaluationMetrics, out: Path) -> str:
    """AP per class, with its 95% bootstrap interval, and the mAP as a line."""
    plt = _pyplot()
    ap = {k: v for k, v in metrics.ap.items() if v is not None}
    names = list(ap)
    values = [ap[n] for n in names]
    errors = None
    if metrics.bootstrap is not None:
        spans = [metrics.bootstrap.ap.get(n) for n in names]
        errors = [
            [
                max(0.0, v - (s.low if s and s.low is not None else v))
                for v, s in zip(values, spans, strict=True)
            ],
            [
                max(0.0, (s.high if s and s.high is not None else v) - v)
                for v, s in zip(values, spans, strict=True)
            ],
        ]
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.barh(
        names, values, xerr=errors, capsize=4, color=[_colour(i) for i in range(len(names))]
    )
    ax.bar_label(bars, fmt="%.3f", label_type="center")
    map50 = metrics.map50
    if map50 is not None:
        ax.axvline(map50, color="black", linestyle="--", label=f"mAP@0.5 = {map50:.3f}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1.05)
    ax.set_title(
        f"AP@0.5 per class (95% intervals), mAP = {map50:.2%}"
        if map50 is not None
        else "AP per class"
    )
    return _save(fig, out / "ap.png")


def plot_pr_curves(curves: PrCurves, metrics: EvaluationMetrics, out: Path) -> list[str]:
    """One precision-recall curve per class."""
    plt = _pyplot()
    names = []
    for index, (name, curve) in enumerate(curves.curves.items()):
        fig, ax = plt.subplots(figsize=(4, 3.2))
        if curve.recall:
            ax.plot(curve.recall, curve.precision, "-", color=_colour(index))
            ax.fill_between(curve.recall, curve.precision, alpha=0.2, color=_colour(index))
        point = metrics.operating_point.per_class.get(name) if metrics.operating_point else None
        if point is not None and point.precision is not None and point.recall is not None:
            ax.plot(
                [point.recall],
                [point.precision],
                "o",
                color="black",
                label=f"operating point (score >= {point.threshold:g})",
            )
            ax.legend(loc="lower left", fontsize=8)
        value = metrics.ap.get(name)
        title = f"{name}: AP {value:.2%}" if value is not None else f"{name}: no ground truth"
        ax.set_title(title)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        names.append(_save(fig, out / f"pr_{name}.png"))
    return names


def plot_champion(
    gate: GateDecision,
    champion: EvaluationMetrics | None,
    challenger: EvaluationMetrics,
    out: Path,
) -> str:
    """Champion vs challenger: mAP and AP per class side by side."""
    plt = _pyplot()
    labels = ["mAP@0.5", *[n for n, v in challenger.ap.items() if v is not None]]
    chall = [challenger.map50 or 0.0, *[challenger.ap[n] or 0.0 for n in labels[1:]]]
    champ_values: list[float] | None = None
    if champion is not None:
        champ_values = [
            champion.map50 or 0.0,
            *[(champion.ap.get(n) or 0.0) for n in labels[1:]],
        ]
    elif gate.champion_score is not None:
        champ_values = [gate.champion_score, *[0.0] * (len(labels) - 1)]
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
    verdict = "promoted" if gate.promote else "not promoted"
    paired = gate.paired
    if paired is not None and paired.interval.low is not None and paired.interval.high is not None:
        verdict += f"; difference 95% [{paired.interval.low:+.3f}, {paired.interval.high:+.3f}]"
    ax.set_title(f"champion vs challenger: {verdict}", fontsize=10)
    ax.legend(loc="lower right")
    return _save(fig, out / "champion_vs_challenger.png")


def plot_loss(summary: TrainingSummary | Mapping[str, Any], out: Path) -> str | None:
    """Training and validation loss per epoch.

    Args:
        summary: ``train.json`` as its document, or its parsed JSON (validated here).
        out: Where the PNG goes.
    """
    if not isinstance(summary, TrainingSummary):
        summary = TrainingSummary.model_validate(dict(summary))
    history = summary.history
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


def draw_samples(
    evaluate_dir: Path,
    data_dir: Path | None,
    classes: Sequence[str],
    thresholds: Mapping[str, float],
    out: Path,
) -> list[str]:
    """Sample images with true (dashed white) and predicted (class colour) boxes.

    Args:
        evaluate_dir: The evaluation folder (its Cartucho files).
        data_dir: The VOC dataset (its images); None draws nothing.
        classes: The model's classes.
        thresholds: Class name -> the least score drawn (the operating thresholds).
        out: Where the PNGs go.
    """
    from PIL import Image, ImageDraw

    from ppe.evaluate.cartucho import read_cartucho

    if data_dir is None or not (data_dir / "JPEGImages").is_dir():
        return []
    found = read_cartucho(evaluate_dir, classes)
    images = {p.stem: p for p in (data_dir / "JPEGImages").iterdir()}
    colour = {name: _colour(i) for i, name in enumerate(classes)}
    names = []
    for image_id, truth, detections in list(
        zip(found.image_ids, found.ground_truths, found.detections, strict=True)
    )[:SAMPLE_IMAGES]:
        if image_id not in images:
            continue
        with Image.open(images[image_id]) as source:
            image = source.convert("RGB")
        draw = ImageDraw.Draw(image)
        for box in truth.boxes.tolist():
            x0, y0, x1, y1 = box
            for offset in range(0, int(x1 - x0), 6):
                draw.line([(x0 + offset, y0), (min(x0 + offset + 3, x1), y0)], fill="white")
                draw.line([(x0 + offset, y1), (min(x0 + offset + 3, x1), y1)], fill="white")
            for offset in range(0, int(y1 - y0), 6):
                draw.line([(x0, y0 + offset), (x0, min(y0 + offset + 3, y1))], fill="white")
                draw.line([(x1, y0 + offset), (x1, min(y0 + offset + 3, y1))], fill="white")
        for box, score, label in zip(
            detections.boxes.tolist(),
            detections.scores.tolist(),
            detections.labels.tolist(),
            strict=True,
        ):
            name = classes[label]
            if score < thresholds[name]:
                continue
            draw.rectangle(box, outline=colour[name], width=2)
            draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=colour[name])
        file_name = f"sample_{image_id}.png"
        image.save(out / file_name)
        names.append(file_name)
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


def _span(interval: Interval | None) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "n/a"
    return f"[{interval.low:.4f}, {interval.high:.4f}]"


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
    metrics = EvaluationMetrics.read(layout.metrics_file(evaluate_dir))
    curves = _read_optional(PrCurves, layout.curves_file(evaluate_dir)) or PrCurves(curves={})
    gate = _read_optional(GateDecision, layout.gate_file(inputs.gate)) if inputs.gate else None
    champion = None
    if inputs.champion is not None:
        record = _read_optional(ChampionRecord, layout.champion_file(inputs.champion))
        if record is not None and record.present:
            champion = EvaluationMetrics.read(
                layout.metrics_file(layout.champion_evaluate_dir(inputs.champion))
            )
    summary = (
        _read_optional(TrainingSummary, layout.train_summary_file(inputs.train))
        if inputs.train
        else None
    )
    classes = list(metrics.classes or metrics.ap)
    point = metrics.operating_point
    if point is not None:
        sample_thresholds = {name: point.per_class[name].threshold for name in classes}
        sample_note = (
            "Coloured: detections at the operating thresholds ("
            + ", ".join(f"{name} &ge; {limit:g}" for name, limit in sample_thresholds.items())
            + f"): {html.escape(point.source)}."
        )
    else:
        floor = metrics.thresholds.score_threshold
        sample_thresholds = dict.fromkeys(classes, floor)
        sample_note = (
            f"Coloured: every detection the evaluation kept (score &ge; {floor:g}); this "
            "metrics.json has no operating point (re-run `ppe evaluate` to get one)."
        )

    with replaced_dir(report_dir) as staging:
        figures: list[tuple[str, str]] = [
            (plot_ground_truth(metrics, staging), "Ground-truth boxes per class"),
        ]
        if point is not None:
            figures += [
                (
                    plot_detections(point, staging),
                    "Detections per class at the operating thresholds: TP, FP and missed",
                ),
                (plot_confusion(point.confusion, staging), "Confusion matrix (IoU >= 0.5)"),
            ]
        figures.append((plot_ap(metrics, staging), "AP per class and mAP@0.5"))
        figures += [
            (name, "Precision-recall curve") for name in plot_pr_curves(curves, metrics, staging)
        ]
        if gate is not None:
            figures.append(
                (plot_champion(gate, champion, metrics, staging), "Champion vs challenger")
            )
        if summary is not None:
            loss = plot_loss(summary, staging)
            if loss:
                figures.append((loss, "Training loss"))
        samples = draw_samples(evaluate_dir, _data_dir(inputs), classes, sample_thresholds, staging)

        if gate is None:
            verdict = '<div class="verdict kept">No gate decision in this run.</div>'
        else:
            css = "promoted" if gate.promote else "kept"
            label = "Promoted" if gate.promote else "Not promoted"
            # The gate's reason already starts with its verdict ("Promoted: ..."); bold that part.
            head, sep, rest = gate.reason.partition(":")
            if not sep or head.strip() != label:
                head, rest = label, " " + gate.reason
            verdict = (
                f'<div class="verdict {css}"><strong>{html.escape(head)}:</strong>'
                f'{html.escape(rest)}<br><span class="muted">Rule: '
                f"{html.escape(gate.rule)}</span></div>"
            )
        intervals = metrics.bootstrap
        class_rows = [
            [
                name,
                _fmt(metrics.ap.get(name)),
                _span(intervals.ap.get(name) if intervals else None),
                metrics.per_class[name].num_ground_truth,
                metrics.per_class[name].num_detections,
                point.per_class[name].threshold if point else "n/a",
                point.per_class[name].tp if point else "n/a",
                point.per_class[name].fp if point else "n/a",
                point.per_class[name].fn if point else "n/a",
            ]
            for name in classes
        ]
        thresholds = metrics.thresholds
        facts: list[list[Any]] = [
            ["mAP@0.5", _fmt(metrics.map50)],
            [
                "95% interval"
                + (f" ({intervals.method}, {intervals.resamples} resamples)" if intervals else ""),
                _span(intervals.map50 if intervals else None),
            ],
            ["split", metrics.split],
            ["images", metrics.counts.images],
            ["data hash", metrics.data_hash],
            ["model hash", metrics.model_hash],
            ["score threshold (mAP)", thresholds.score_threshold],
            ["operating thresholds", point.source if point else "n/a"],
            ["NMS", f"{thresholds.nms} at IoU {thresholds.nms_iou_threshold}"],
            ["AP definition", thresholds.ap_definition],
        ]
        if gate is not None:
            facts += [
                ["champion mAP@0.5", _fmt(gate.champion_score)],
                ["challenger mAP@0.5", _fmt(gate.challenger_score)],
            ]
            if gate.paired is not None:
                facts.append(
                    [
                        f"challenger - champion, paired 95% interval ({gate.paired.images} images)",
                        f"{_fmt(gate.paired.difference)} {_span(gate.paired.interval)}",
                    ]
                )
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
    {html.escape(metrics.split)} split.</p>
    {verdict}
    <h2>Summary</h2>
    {_table(facts, ["", "value"])}
    <h2>Per class</h2>
    {_table(class_rows, CLASS_COLUMNS)}
    <h2>Plots</h2>
    <div class="grid">{figure_html}</div>
    <h2>Sample images</h2>
    <p class="muted">Dashed white: ground truth. {sample_note}</p>
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
