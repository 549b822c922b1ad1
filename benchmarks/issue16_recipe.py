"""Issue 16 recipe experiments that fit a shared 2-core CPU: paired, seeded, no long training.

``python -m benchmarks.issue16_recipe --data HARDHAT --weights yolov3-tiny.weights --out
benchmarks/experiments/issue16_recipe.json``
writes one JSON with three experiments on the real hard-hat photos (``annotations/`` +
``images/``):

* ``masks``: the official COCO YOLOv3-tiny decoded with masks (3,4,5),(1,2,3) (what the weights
  were trained with) against (3,4,5),(0,1,2), on the same forward passes: share of photos and of
  head/helmet/person boxes that a detected COCO person accounts for (the criterion of
  ``testing/integration/model/test_darknet_coco.py``);
* ``first_step_loss``: the YOLO loss per image before any update (train-mode batch norm) on the
  first ``--loss-images`` photos, for scratch/COCO with and without
  :func:`ppe.model.heads.init_head`, same seed;
* ``anchors``: mean best-anchor IoU of the train split's letterboxed boxes with Darknet's
  anchors (those the masks use) and with ``ppe data anchors``' k-means fit.

``--ema-minutes M [--set KEY=VALUE ...]`` instead trains the ``hardhat`` recipe (with those
settings) once for M minutes through ``make bench``'s budgeted path with ``train.ema_decay`` on
and compares the averaged weights with the raw ones of the same run (paired bootstrap on the
validation split).

``--score MODEL_DIR [--score MODEL_DIR ...] [--sizes 416,512]`` instead scores model folders
(no training) at the size each was trained at and at each of ``--sizes`` (the network rebuilt at
that size, every weight copied), and pairs every model with the first at their own sizes.

``--variant-minutes M --set KEY=VALUE ... [--against MODEL_DIR]`` trains the ``hardhat`` recipe
with those settings (``ppe --set`` syntax, e.g. ``train.mixed_precision=bfloat16``) for M minutes
through the same path and scores it on the validation split; with ``--against`` (a model folder
from an earlier run on the same photos, e.g. ``--work``'s ``ema_paired_raw``) it adds the paired
difference of the two models on the same images.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_record

logger = logging.getLogger("benchmarks.issue16_recipe")

CLASSES = ["helmet", "head"]
#: The import keeps the photos' own train/val folders (400/50) and has no test split.
SCORED_SPLIT = "val"


def _masks(data: Path, weights: Path) -> dict[str, Any]:
    import dataclasses

    import tensorflow as tf
    from defusedxml import ElementTree
    from PIL import Image

    from ppe.model.darknet_weights import load_darknet_weights
    from ppe.model.decode import detect
    from ppe.model.preprocess import letterbox
    from ppe.model.spec import COCO_CLASS_NAMES, YoloSpec
    from ppe.model.yolov3 import build_model

    official = YoloSpec.default("yolov3_tiny", COCO_CLASS_NAMES, 416)
    specs = {
        "3,4,5/1,2,3": official,
        "3,4,5/0,1,2": dataclasses.replace(official, masks=((3, 4, 5), (0, 1, 2))),
    }
    model = build_model(official)
    load_darknet_weights(model, official, weights)
    forward = tf.function(lambda batch: model(batch, training=False))
    person = COCO_CLASS_NAMES.index("person")

    def explains(p: np.ndarray, name: str, t: np.ndarray) -> bool:
        width = max(0.0, min(p[2], t[2]) - max(p[0], t[0]))
        height = max(0.0, min(p[3], t[3]) - max(p[1], t[1]))
        inter = width * height
        t_area, p_area = (t[2] - t[0]) * (t[3] - t[1]), (p[2] - p[0]) * (p[3] - p[1])
        if name == "person":
            return bool(inter / (t_area + p_area - inter) >= 0.5)
        centre = (t[1] + t[3]) / 2
        return bool(inter >= 0.5 * t_area and p[1] <= centre <= (p[1] + p[3]) / 2)

    counts = {
        key: {"photos": 0, "photos_hit": 0, "boxes": 0, "boxes_explained": 0} for key in specs
    }
    for xml in sorted((data / "annotations").glob("*.xml")):
        root = ElementTree.parse(xml).getroot()
        truths = []
        for element in root.iter("object"):
            name = element.findtext("name", "")
            box = element.find("bndbox")
            if name in ("head", "helmet", "person") and box is not None:
                corners = [float(box.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")]
                truths.append((name, np.array(corners)))
        if not truths:
            continue
        image_path = sorted(p for p in (data / "images").rglob(f"{xml.stem}.*") if p.is_file())[0]
        image = np.asarray(Image.open(image_path).convert("RGB"))
        network_input, transform = letterbox(image, 416)
        outputs = [o.numpy() for o in forward(network_input[None])]
        for key, spec in specs.items():
            [found] = detect(outputs, spec, score_threshold=0.25, iou_threshold=0.45)
            people = transform.to_original(found.boxes[found.classes == person])
            row = counts[key]
            row["photos"] += 1
            row["boxes"] += len(truths)
            row["photos_hit"] += any(explains(p, n, b) for p in people for n, b in truths)
            row["boxes_explained"] += sum(any(explains(p, n, b) for p in people) for n, b in truths)
    for row in counts.values():
        row["photo_share"] = round(row["photos_hit"] / row["photos"], 4)
        row["box_share"] = round(row["boxes_explained"] / row["boxes"], 4)
    return counts


def _voc(data: Path, work: Path) -> Path:
    from ppe.config import SplitConfig
    from ppe.data.importer import import_dataset

    out = work / "voc"
    import_dataset(
        data / "annotations",
        data / "images",
        out,
        classes=CLASSES,
        class_map={"hat": "helmet", "person": None},
        split=SplitConfig(),
        force=True,
    )
    return out


def _first_step_loss(voc: Path, weights: Path, images: int) -> dict[str, Any]:
    import keras

    from ppe.config import AugmentConfig
    from ppe.data.tfdata import PipelineSpec, build_dataset
    from ppe.data.voc import load_split
    from ppe.model.darknet_weights import load_darknet_weights, transfer
    from ppe.model.heads import init_head
    from ppe.model.loss import yolo_loss
    from ppe.model.spec import COCO_CLASS_NAMES, YoloSpec
    from ppe.model.yolov3 import build_model

    spec = YoloSpec.default("yolov3_tiny", CLASSES, 416)
    coco_spec = YoloSpec.default("yolov3_tiny", COCO_CLASS_NAMES, 416)
    coco = build_model(coco_spec)
    load_darknet_weights(coco, coco_spec, weights)
    samples = load_split(voc, "train", CLASSES)[:images]
    batches = list(build_dataset(samples, spec, PipelineSpec(8, False, AugmentConfig())))
    results: dict[str, Any] = {"images": len(samples)}
    for name in ("scratch", "scratch+priors", "coco", "coco+priors+box_rows"):
        keras.utils.set_random_seed(0)
        model = build_model(spec)
        if name.startswith("coco"):
            transfer(coco, model)
        if "priors" in name:
            init_head(model, spec, source=coco if "box" in name else None, source_spec=coco_spec)
        parts = [yolo_loss(model(x, training=True), y, spec) for x, y in batches]
        results[name] = {
            key: round(float(np.mean(np.concatenate([p[key] for p in parts]))), 2)
            for key in ("total", "box", "obj", "cls")
        }
    return results


def _anchors(voc: Path) -> dict[str, Any]:
    from ppe.data.anchors import dataset_anchors, mean_best_iou
    from ppe.model.spec import YoloSpec

    result: dict[str, Any] = {}
    for architecture in ("yolov3_tiny", "yolov3"):
        darknet = YoloSpec.default(architecture, CLASSES)  # type: ignore[arg-type]
        fit, sizes = dataset_anchors(voc, CLASSES, 3 * darknet.num_scales)
        used = [darknet.anchors[i] for i in darknet.used_anchors]
        result[architecture] = {
            "boxes": fit.boxes,
            "darknet_mean_iou": round(mean_best_iou(sizes, used), 4),
            "kmeans_mean_iou": round(fit.mean_iou, 4),
            "kmeans_anchors": [list(a) for a in fit.anchors],
            "median_box_side_px_at_416": round(float(np.median(np.sqrt(sizes.prod(axis=1)))), 1),
        }
    return result


def _score_outcomes(model_dir: Path, voc: Path, split: str) -> Any:
    """VOC mAP result (with per-detection outcomes) of a model folder on ``split``."""
    from ppe.config import EvaluateConfig
    from ppe.data.voc import load_split
    from ppe.evaluate.detect import detect_split, keras_predict
    from ppe.evaluate.voc_map import evaluate_voc_map
    from ppe.model.bundle import load_model_dir

    model, spec, _ = load_model_dir(model_dir)
    samples = load_split(voc, split, CLASSES)
    found = detect_split(keras_predict(model), spec, samples, EvaluateConfig())
    return evaluate_voc_map(found.ground_truths, found.detections, spec.class_names)


@dataclass
class _Run:
    """One budgeted run: the model to ship (float32), its spec, the run's record and policy."""

    model: Any
    spec: Any
    fit: Any
    policy: str
    raw: list[Any] = field(default_factory=list)


def _budgeted_run(
    voc: Path,
    weights: Path,
    work: Path,
    budget_minutes: float,
    overrides: Sequence[str] = (),
    *,
    keep_raw: bool = False,
) -> _Run:
    """The hardhat recipe with ``overrides``, from COCO, for a budget (``make bench``'s).

    Seeded by the recipe's ``train.seed`` (0 in the profile; ``--set train.seed=N`` repeats a
    recipe with other initial weights, shuffling and augmentation). Runs under the recipe's
    ``train.mixed_precision`` policy and ships a float32 copy, as ``ppe train`` does.
    ``keep_raw``: also keep the raw weights of the last epoch's end, before ``fit`` writes the
    exponential averages in (they do not change the raw trajectory).
    """
    import keras

    from benchmarks.budget import fit_for_budget
    from benchmarks.real_data import _coco_transfer, recipe
    from ppe.data.voc import load_split
    from ppe.model.spec import YoloSpec
    from ppe.train.fit import initial_model
    from ppe.train.precision import float32_model, training_policy

    config = recipe(overrides=overrides)
    coco = _coco_transfer(weights, work / "tiny-coco", config)
    spec = YoloSpec.default(
        config.model.architecture, CLASSES, config.model.image_size, anchors=config.model.anchors
    )
    train_recipe = config.train.model_copy(update={"init_from": coco})
    samples = load_split(voc, "train", CLASSES)
    raw: list[Any] = []
    keras.utils.set_random_seed(train_recipe.seed)
    with training_policy(train_recipe.mixed_precision) as policy:
        model = initial_model(spec, coco)
        callbacks = []
        if keep_raw:
            callbacks.append(
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda *_, **__: raw.__setitem__(slice(None), model.get_weights())
                )
            )
        fit = fit_for_budget(
            model,
            spec,
            samples,
            budget_s=budget_minutes * 60.0,
            recipe=train_recipe,
            seed=train_recipe.seed,
            callbacks=callbacks,
        )
        model = float32_model(model, spec)
    return _Run(model, spec, fit, policy, raw)


def _saved_and_scored(
    run: _Run, folder: Path, voc: Path, source: str
) -> tuple[dict[str, Any], Any]:
    """Save ``run``'s model to ``folder``; its mAP@0.5 on the scored split with a 95% interval."""
    from ppe.evaluate.bootstrap import bootstrap_map
    from ppe.model.bundle import save_model_dir

    save_model_dir(run.model, run.spec, folder, {"source": source}, overwrite=True)
    scored = _score_outcomes(folder, voc, SCORED_SPLIT)
    interval = bootstrap_map(scored.outcomes, CLASSES, resamples=1000, seed=0).map50
    figures = {
        "map50": round(float(scored.map50), 4),
        "map50_interval": [interval.low, interval.high],
    }
    return figures, scored.outcomes


def _scored_images(voc: Path) -> int:
    from ppe.data.voc import load_split

    return len(load_split(voc, SCORED_SPLIT, CLASSES))


def _paired(first: Any, second: Any) -> dict[str, Any]:
    """mAP@0.5 of ``first`` minus ``second`` on the same images, with its paired 95% interval."""
    from ppe.evaluate.bootstrap import paired_difference

    paired = paired_difference(first, second, resamples=1000, seed=0)
    return {
        "difference": round(paired.difference, 4),
        "interval": [paired.interval.low, paired.interval.high],
    }


def _ema_paired(
    voc: Path,
    weights: Path,
    work: Path,
    budget_minutes: float,
    ema_decay: float,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """EMA on vs off from ONE budgeted run of the hardhat recipe (``make bench``'s training path).

    The average does not change the raw trajectory, so the raw weights at the end and the
    averaged ones come from the same steps: the paired difference on the validation split (not
    used by this run) isolates the averaging.
    """
    settings = [*overrides, f"train.ema_decay={ema_decay}"]
    run = _budgeted_run(voc, weights, work, budget_minutes, settings, keep_raw=True)
    results: dict[str, Any] = {
        "training": run.fit.to_dict(),
        "ema_decay": ema_decay,
        "overrides": settings,
        "policy": run.policy,
        "scored_split": SCORED_SPLIT,
        "images": _scored_images(voc),
    }
    outcomes = {}
    averaged = run.model.get_weights()
    for name, values in (("ema", averaged), ("raw", run.raw)):
        run.model.set_weights(values)
        results[name], outcomes[name] = _saved_and_scored(
            run, work / f"ema_paired_{name}", voc, name
        )
    results["ema_minus_raw"] = _paired(outcomes["ema"], outcomes["raw"])
    return results


def _variant_paired(
    voc: Path,
    weights: Path,
    work: Path,
    budget_minutes: float,
    overrides: list[str],
    against: Path | None,
) -> dict[str, Any]:
    """The hardhat recipe with ``overrides`` for a budget, scored, and paired with ``against``."""
    run = _budgeted_run(voc, weights, work, budget_minutes, overrides)
    figures, outcomes = _saved_and_scored(run, work / "variant", voc, " ".join(overrides))
    results: dict[str, Any] = {
        "overrides": overrides,
        "policy": run.policy,
        "training": run.fit.to_dict(),
        "scored_split": SCORED_SPLIT,
        "images": _scored_images(voc),
        **figures,
    }
    if against is not None:
        baseline = _score_outcomes(against, voc, SCORED_SPLIT)
        results["against"] = {
            "model": against.name,
            "map50": round(float(baseline.map50), 4),
            "variant_minus_against": _paired(outcomes, baseline.outcomes),
        }
    return results


def _across_sizes(voc: Path, models: Sequence[Path], sizes: Sequence[int], work: Path) -> Any:
    """mAP@0.5 of each model at the size it was trained at and at each of ``sizes``.

    Every model after the first is also paired with the first, each at its own size, on the same
    validation images.
    """
    from benchmarks.models import rebuild_at_size
    from ppe.model.bundle import load_model_dir

    results: dict[str, Any] = {"scored_split": SCORED_SPLIT, "images": _scored_images(voc)}
    scored: dict[str, Any] = {}
    for index, folder in enumerate(models):
        label = f"{folder.parent.name}/{folder.name}"
        trained_at = load_model_dir(folder)[1].image_size
        by_size: dict[str, float] = {}
        for size in sorted({trained_at, *sizes}):
            rebuilt = rebuild_at_size(folder, size, work / f"model{index}_at{size}")
            outcome = _score_outcomes(rebuilt, voc, SCORED_SPLIT)
            by_size[str(size)] = round(float(outcome.map50), 4)
            if size == trained_at:
                scored[label] = outcome.outcomes
        results[label] = {"trained_at": trained_at, "map50_at": by_size}
    first, *rest = scored
    results["paired_with_first"] = {
        label: {"against": first, **_paired(scored[label], scored[first])} for label in rest
    }
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the three experiments and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--loss-images", type=int, default=24)
    parser.add_argument("--work", type=Path, help="keep the trained models here")
    parser.add_argument(
        "--ema-minutes",
        type=float,
        help="instead: one budgeted run of the hardhat recipe, EMA vs raw weights (paired)",
    )
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument(
        "--variant-minutes",
        type=float,
        help="instead: one budgeted run of the hardhat recipe with --set overrides",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--against", type=Path, help="model folder to pair the variant with")
    parser.add_argument(
        "--score",
        type=Path,
        action="append",
        default=[],
        metavar="MODEL_DIR",
        help="instead: score these model folders at their own size and at --sizes (no training)",
    )
    parser.add_argument("--sizes", default="416,512", help="input sizes for --score")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    started = time.time()
    if args.score:
        if args.overrides or args.variant_minutes or args.ema_minutes:
            parser.error(
                "--score scores saved models: drop --set, --variant-minutes and --ema-minutes"
            )
        try:
            sizes = [int(size) for size in args.sizes.split(",")]
        except ValueError:
            parser.error(f"--sizes {args.sizes!r}: give input sizes such as 416,512")
        with tempfile.TemporaryDirectory() as scratch:
            voc = _voc(args.data, Path(scratch))
            result = _across_sizes(voc, args.score, sizes, Path(scratch))
        document = {
            "experiment": "issue16_across_sizes",
            "data": args.data.name,
            "across_sizes": result,
            "seconds": round(time.time() - started, 1),
        }
        write_record(document, args.out)
        return 0
    if args.variant_minutes or args.ema_minutes:
        work = args.work or Path(tempfile.mkdtemp())
        voc = _voc(args.data, work)
        if args.variant_minutes:
            experiment, key = "issue16_recipe_variant", "variant"
            result = _variant_paired(
                voc, args.weights, work, args.variant_minutes, args.overrides, args.against
            )
        else:
            experiment, key = "issue16_recipe_ema", "ema"
            result = _ema_paired(
                voc, args.weights, work, args.ema_minutes, args.ema_decay, args.overrides
            )
        document = {
            "experiment": experiment,
            "data": args.data.name,
            key: result,
            "seconds": round(time.time() - started, 1),
        }
        write_record(document, args.out)
        return 0
    with tempfile.TemporaryDirectory() as work:
        voc = _voc(args.data, Path(work))
        document = {
            "experiment": "issue16_recipe",
            "data": args.data.name,
            "masks": _masks(args.data, args.weights),
            "first_step_loss": _first_step_loss(voc, args.weights, args.loss_images),
            "anchors": _anchors(voc),
            "seconds": 0.0,
        }
    document["seconds"] = round(time.time() - started, 1)
    write_record(document, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
