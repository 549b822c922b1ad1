"""Import an "xml folder + image folder" dataset into standard Pascal VOC.

The source is a folder of VOC XML files and a folder of images, possibly nested in split
subfolders (``images/train/a.png``, ``images/val/b.png``); each XML finds its image by its
``<filename>`` (then by the file stem). Classes are mapped with ``data.class_map`` (``hat: helmet``
renames, ``person: null`` drops those boxes), images are copied byte-for-byte (extension kept)
and XML is rewritten in the layout of :mod:`ppe.data.voc`. Pixel boxes are kept exactly as in
the source (1-based inclusive VOC convention, ``0`` tolerated).

Splits: a dataset that comes with its own ``train/``, ``val/`` and ``test/`` folders (a folder of
that name, or ``training``/``valid``/``validation``/``testing``, anywhere in the path of the image
or of its XML) keeps them: its validation and test images stay what they are. A dataset without
such folders, or whose folders hold no training images (a lone ``val/`` folder: nothing to train
on), is split with ``data.split`` (seeded), as is any dataset imported with ``resplit``. A source
where only some images sit in split folders, or where an XML and its image sit in different ones,
is refused with the folders named. ``eval_only`` imports an evaluation-only set: every image goes
to the test split and train/val are empty (a source with a ``train/`` folder is refused).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ppe.config import SplitConfig
from ppe.data import voc
from ppe.data.check import (
    CLASS_MAP_HINT,
    Problem,
    annotation_problems,
    check_dataset,
    decode_problem,
)
from ppe.errors import DataError, DatasetInvalidError

logger = logging.getLogger(__name__)

REPORT_NAME = "import.json"

#: Folder names that mark a source's own split, and the split each one means.
SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
#: How an import chose its splits (``ImportReport.split_source``).
FROM_FOLDERS = "the source's split folders"
FROM_CONFIG = "data.split (seeded)"
EVAL_ONLY = "evaluation only (every image in test)"


@dataclass
class ImportReport:
    """What an import wrote.

    Attributes:
        out: The VOC dataset folder.
        images_per_split: Number of images in each split.
        objects_per_class: Boxes per class (our names) after mapping.
        dropped_per_class: Boxes dropped by ``class_map`` (foreign names).
        renamed_per_class: Boxes renamed by ``class_map``, as ``"foreign->ours"``.
        skipped_images: Ids left out because ``class_map`` dropped all their boxes.
        unannotated_images: Image files in the source that no XML refers to (not imported).
        hash: :func:`ppe.data.voc.dataset_hash` of ``out``.
        split_source: How the splits were chosen (:data:`FROM_FOLDERS`, :data:`FROM_CONFIG` or
            :data:`EVAL_ONLY`).
    """

    out: Path
    images_per_split: dict[str, int] = field(default_factory=dict)
    objects_per_class: dict[str, int] = field(default_factory=dict)
    dropped_per_class: dict[str, int] = field(default_factory=dict)
    renamed_per_class: dict[str, int] = field(default_factory=dict)
    skipped_images: list[str] = field(default_factory=list)
    unannotated_images: int = 0
    hash: str = ""
    split_source: str = FROM_CONFIG

    def line(self) -> str:
        """One-line summary."""
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        classes = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items())
        dropped = ", ".join(f"{name} {count}" for name, count in self.dropped_per_class.items())
        return (
            f"{sum(self.images_per_split.values())} images ({splits}); objects: {classes}; "
            f"dropped: {dropped or 'none'}; splits from {self.split_source}; sha256 {self.hash}"
        )


@dataclass(frozen=True)
class _Planned:
    image_id: str
    source_image: Path
    annotation: voc.VocAnnotation
    # The source's split folder holding the image or its XML, and that split (None: no folder).
    split_folder: Path | None = None
    split: str | None = None


def _split_folder(path: Path, root: Path) -> tuple[Path | None, str | None, str | None]:
    """The split folder in ``path`` below ``root``: (folder, split, problem)."""
    parts = path.relative_to(root).parts[:-1]
    found = [
        (root.joinpath(*parts[: index + 1]), SPLIT_FOLDERS[part.lower()])
        for index, part in enumerate(parts)
        if part.lower() in SPLIT_FOLDERS
    ]
    if not found:
        return None, None, None
    if len({split for _, split in found}) > 1:
        folders = ", ".join(f"{folder}/" for folder, _ in found)
        return None, None, f"{path} is inside more than one split folder ({folders}); keep one"
    return found[0][0], found[0][1], None


def _assign_splits(
    planned: Sequence[_Planned], split: SplitConfig, *, eval_only: bool, resplit: bool
) -> tuple[dict[str, list[str]], str]:
    """The ids of each split and how they were chosen (see the module docstring).

    Raises:
        DataError: Images partly in split folders, or ``eval_only`` with train/val folders.
    """
    ids = [item.image_id for item in planned]
    in_folders = [item for item in planned if item.split is not None]
    if eval_only:
        training = sorted({str(item.split_folder) for item in in_folders if item.split == "train"})
        if training:
            raise DataError(
                f"{training[0]}: --eval-only puts every image into the test split, but the "
                f"source has training folders ({', '.join(training)}); drop --eval-only to keep "
                "the source's splits, or point --annotations/--images at the evaluation images "
                "only"
            )
        return {"train": [], "val": [], "test": sorted(ids)}, EVAL_ONLY
    if resplit or not in_folders:
        fractions = {"train": split.train, "val": split.val, "test": split.test}
        return voc.split_ids(ids, fractions, split.seed), FROM_CONFIG
    if len(in_folders) < len(planned):
        outside = [item.source_image for item in planned if item.split is None]
        folders = sorted({str(item.split_folder) for item in in_folders})
        raise DataError(
            f"{outside[0].parent}: {len(outside)} image(s) (e.g. {outside[0]}) are in no "
            f"train/, val/ or test/ folder while {len(in_folders)} are (in "
            f"{', '.join(folders[:3])}); move every image and its XML into a split folder, or "
            "pass --resplit to split them all with data.split"
        )
    assignment: dict[str, list[str]] = {name: [] for name in voc.SPLITS}
    for item in planned:
        assert item.split is not None  # every item is in a split folder here
        assignment[item.split].append(item.image_id)
    if not assignment["train"]:
        logger.warning(
            "the source's split folders hold no training images (%s): splitting with data.split "
            "instead; import it with --eval-only to keep it as an evaluation set",
            ", ".join(sorted({str(item.split_folder) for item in in_folders})),
        )
        fractions = {"train": split.train, "val": split.val, "test": split.test}
        return voc.split_ids(ids, fractions, split.seed), FROM_CONFIG
    return {name: sorted(values) for name, values in assignment.items()}, FROM_FOLDERS


def _index_images(images_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in images_dir.rglob("*")
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in voc.IMAGE_EXTENSIONS
    )


def _map_objects(
    annotation: voc.VocAnnotation,
    classes: Sequence[str],
    class_map: Mapping[str, str | None],
    dropped: Counter[str],
    renamed: Counter[str],
) -> tuple[list[voc.VocObject], list[str]]:
    """Apply the class map; returns (kept objects with our names, reasons for bad classes)."""
    kept: list[voc.VocObject] = []
    reasons: list[str] = []
    allowed = set(classes)
    for number, obj in enumerate(annotation.objects, start=1):
        if obj.name in class_map:
            target = class_map[obj.name]
            if target is None:
                dropped[obj.name] += 1
                continue
            if target not in allowed:
                reasons.append(
                    f"object {number}: data.class_map maps {obj.name!r} to {target!r}, which is "
                    f"not in model.classes ({', '.join(classes)}); fix data.class_map"
                )
                continue
            if target != obj.name:
                renamed[f"{obj.name}->{target}"] += 1
            kept.append(
                voc.VocObject(
                    target, obj.xmin, obj.ymin, obj.xmax, obj.ymax, obj.difficult, obj.truncated
                )
            )
        elif obj.name in allowed:
            kept.append(obj)
        else:
            mapped = ", ".join(f"{key}: {value}" for key, value in class_map.items()) or "empty"
            reasons.append(
                f"object {number}: unknown class {obj.name!r}: not in model.classes "
                f"({', '.join(classes)}) nor in data.class_map ({mapped}); " + CLASS_MAP_HINT
            )
    return kept, reasons


def import_dataset(
    annotations_dir: Path | str,
    images_dir: Path | str,
    out: Path | str,
    *,
    classes: Sequence[str],
    class_map: Mapping[str, str | None],
    split: SplitConfig,
    force: bool = False,
    allow_empty: bool = False,
    eval_only: bool = False,
    resplit: bool = False,
) -> ImportReport:
    """Convert an xml-folder + image-folder dataset into standard VOC under ``out``.

    Args:
        annotations_dir: Folder of VOC XML files (searched recursively); the file stem is the id.
        images_dir: Folder of images, possibly with split subfolders (searched recursively).
        out: Output VOC folder; must be new or empty unless ``force``.
        classes: Our class names (``model.classes``).
        class_map: Foreign name -> our name, or None to drop those boxes (``data.class_map``).
        split: Seeded train/val/test fractions (``data.split``), used when the source has no
            split folders of its own, or with ``resplit``.
        force: Replace a non-empty ``out``.
        allow_empty: Accept annotations with no objects (and keep images whose boxes were all
            dropped, as background); otherwise empty source annotations are errors and images
            left without boxes by ``class_map`` are skipped with a warning.
        eval_only: Put every image in the test split (an evaluation-only set).
        resplit: Ignore the source's split folders and split with ``split``.

    Returns:
        Counts per split and class, and the content hash of the written dataset. Pixel boxes are
        copied unchanged (1-based inclusive); the loader normalises them to [0, 1].

    Raises:
        DatasetInvalidError: The source has problems (all of them are listed); nothing written.
        DataError: Bad folders, ``out`` is not empty and ``force`` is False, images partly in
            split folders, or ``eval_only`` with ``resplit`` or with train/val folders.
    """
    if eval_only and resplit:
        raise DataError(
            "--eval-only and --resplit contradict each other: an evaluation-only set has no "
            "training split; give one of them"
        )
    annotations_dir, images_dir, out = Path(annotations_dir), Path(images_dir), Path(out)
    for folder, flag in ((annotations_dir, "--annotations"), (images_dir, "--images")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {flag} folder not found")
    voc.ensure_writable_output(out, force, sources=(annotations_dir, images_dir))

    problems: list[Problem] = []
    xml_files = sorted(
        path
        for path in annotations_dir.rglob("*")
        if path.is_file() and path.suffix.lower() == ".xml" and not path.name.startswith(".")
    )
    if not xml_files:
        raise DataError(f"{annotations_dir}: no .xml annotation files found")
    for stem, group in sorted(_group_by_stem(xml_files).items()):
        if len(group) > 1:
            problems.append(
                Problem(
                    str(group[0]),
                    f"duplicate annotation id {stem!r} ({', '.join(map(str, group))}); "
                    "rename or remove one",
                )
            )
    image_files = _index_images(images_dir)
    by_name: dict[str, list[Path]] = defaultdict(list)
    by_stem = _group_by_stem(image_files)
    for path in image_files:
        by_name[path.name].append(path)

    dropped: Counter[str] = Counter()
    renamed: Counter[str] = Counter()
    planned: list[_Planned] = []
    skipped: list[str] = []
    used_images: set[Path] = set()
    reported_stems: set[str] = set()
    for xml_path in xml_files:
        image_id = xml_path.stem
        data = xml_path.read_bytes()
        if not data:
            problems.append(
                Problem(str(xml_path), "zero-byte annotation; re-export it or remove it")
            )
            continue
        try:
            annotation = voc.parse_annotation(data)
        except DataError as error:
            problems.append(Problem(str(xml_path), f"{error}; fix the XML or remove the file"))
            continue
        wanted = Path(annotation.filename).name
        candidates = by_name.get(wanted) or by_stem.get(Path(wanted).stem) or by_stem.get(image_id)
        image_path: Path | None = None
        image_size: tuple[int, int] | None = None
        if not candidates:
            problems.append(
                Problem(
                    str(xml_path),
                    f"image {wanted!r} not found under {images_dir}; add it or remove the "
                    "annotation",
                )
            )
        elif len(candidates) > 1 or len(by_stem[candidates[0].stem]) > 1:
            stem = candidates[0].stem
            if stem not in reported_stems:
                reported_stems.add(stem)
                names = ", ".join(str(path) for path in by_stem[stem])
                problems.append(
                    Problem(
                        str(by_stem[stem][0]),
                        f"duplicate image file names for id {stem!r} ({names}); keep one and "
                        "rename or remove the others",
                    )
                )
        else:
            image_path = candidates[0]
            used_images.add(image_path)
            reason, image_size = decode_problem(image_path)
            if reason:
                problems.append(Problem(str(image_path), reason))
        kept, class_reasons = _map_objects(annotation, classes, class_map, dropped, renamed)
        reasons = class_reasons + annotation_problems(
            annotation,
            None,
            allow_empty=allow_empty,
            image_size=image_size,
            image_label=str(image_path) if image_path else wanted,
        )
        problems.extend(Problem(str(xml_path), reason) for reason in reasons)
        if image_path is None or reasons:
            continue
        if annotation.objects and not kept and not allow_empty:
            skipped.append(image_id)
            continue
        image_folder, image_split, image_problem = _split_folder(image_path, images_dir)
        xml_folder, xml_split, xml_problem = _split_folder(xml_path, annotations_dir)
        folder_problems = [reason for reason in (image_problem, xml_problem) if reason]
        if image_split and xml_split and image_split != xml_split:
            folder_problems.append(
                f"the annotation is in {xml_folder}/ ({xml_split}) but its image {image_path} "
                f"is in {image_folder}/ ({image_split}); move one so both are in the same split"
            )
        if folder_problems:
            problems.extend(Problem(str(xml_path), reason) for reason in folder_problems)
            continue
        planned.append(
            _Planned(
                image_id=image_id,
                source_image=image_path,
                annotation=voc.VocAnnotation(
                    filename=f"{image_id}{image_path.suffix}",
                    width=annotation.width,
                    height=annotation.height,
                    depth=annotation.depth,
                    objects=tuple(kept),
                    folder=voc.IMAGES_DIR,
                ),
                split_folder=image_folder or xml_folder,
                split=image_split or xml_split,
            )
        )
    if problems:
        raise DatasetInvalidError(f"import from {annotations_dir}", sorted(set(problems)))
    if not planned:
        raise DataError(
            f"{annotations_dir}: nothing to import: data.class_map dropped every box; "
            "check data.class_map"
        )
    unannotated = len(set(image_files) - used_images)
    if unannotated:
        logger.warning(
            "%d image(s) under %s have no annotation and are not imported", unannotated, images_dir
        )
    if skipped:
        logger.warning(
            "%d image(s) skipped: data.class_map dropped all their boxes (%s%s)",
            len(skipped),
            ", ".join(skipped[:5]),
            ", ..." if len(skipped) > 5 else "",
        )

    assignment, split_source = _assign_splits(planned, split, eval_only=eval_only, resplit=resplit)
    fractions = {"train": split.train, "val": split.val, "test": split.test}
    report = ImportReport(
        out=out,
        split_source=split_source,
        dropped_per_class=dict(sorted(dropped.items())),
        renamed_per_class=dict(sorted(renamed.items())),
        skipped_images=skipped,
        unannotated_images=unannotated,
    )
    with voc.staged_output(out, force) as staging:
        (staging / voc.IMAGES_DIR).mkdir()
        for item in planned:
            shutil.copyfile(item.source_image, staging / voc.IMAGES_DIR / item.annotation.filename)
            voc.write_annotation(
                item.annotation, staging / voc.ANNOTATIONS_DIR / f"{item.image_id}.xml"
            )
        for split_name, ids in assignment.items():
            voc.write_split(staging, split_name, ids)
        written_problems = check_dataset(staging, classes, allow_empty=allow_empty)
        if written_problems:  # a bug here, not in the source: keep `out` untouched
            raise DatasetInvalidError("imported dataset (internal error)", written_problems)
        report.hash = voc.dataset_hash(staging)
        counts = Counter(obj.name for item in planned for obj in item.annotation.objects)
        report.objects_per_class = {name: counts.get(name, 0) for name in classes}
        report.images_per_split = {name: len(ids) for name, ids in assignment.items()}
        (staging / REPORT_NAME).write_text(
            json.dumps(
                {
                    "images_per_split": report.images_per_split,
                    "objects_per_class": report.objects_per_class,
                    "dropped_per_class": report.dropped_per_class,
                    "renamed_per_class": report.renamed_per_class,
                    "skipped_images": report.skipped_images,
                    "unannotated_images": report.unannotated_images,
                    "class_map": dict(class_map),
                    "split_source": split_source,
                    "split": fractions | {"seed": split.seed}
                    if split_source == FROM_CONFIG
                    else None,
                    "sha256": report.hash,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    logger.info("imported %s: %s", out, report.line())
    return report


def _group_by_stem(paths: Sequence[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        groups[path.stem].append(path)
    return groups
