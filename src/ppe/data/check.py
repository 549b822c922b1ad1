"""Find every problem of a Pascal VOC dataset at once, one line each: ``<file>: <reason and fix>``.

Pixel boxes are checked in the VOC convention of :mod:`ppe.data.voc` (1-based inclusive,
``0 <= xmin < xmax <= width``, ``0 <= ymin < ymax <= height``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ppe.data import voc
from ppe.errors import DataError, DatasetInvalidError

logger = logging.getLogger(__name__)

CLASS_MAP_HINT = (
    "map it onto one of ours or drop it with data.class_map on import "
    "(e.g. --set data.class_map.hat=helmet, or data.class_map.person=null)"
)


@dataclass(frozen=True, order=True)
class Problem:
    """One problem of a dataset.

    Attributes:
        path: The file at fault (as found under the dataset root).
        reason: What is wrong and how to fix it.
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class DatasetSummary:
    """What a clean dataset holds.

    Attributes:
        images_per_split: Number of ids in each split file.
        objects_per_class: Number of boxes per class name (all splits).
        difficult: Number of boxes flagged ``difficult``.
        hash: :func:`ppe.data.voc.dataset_hash` of the folder.
    """

    images_per_split: dict[str, int] = field(default_factory=dict)
    objects_per_class: dict[str, int] = field(default_factory=dict)
    difficult: int = 0
    hash: str = ""

    @property
    def num_images(self) -> int:
        """Total number of images over the splits."""
        return sum(self.images_per_split.values())

    def line(self) -> str:
        """One-line summary for logs and the CLI."""
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        classes = ", ".join(f"{name} {count}" for name, count in self.objects_per_class.items())
        return (
            f"{self.num_images} images ({splits}); "
            f"{sum(self.objects_per_class.values())} objects ({classes}); "
            f"{self.difficult} difficult; sha256 {self.hash}"
        )


def decode_problem(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """Fully decode an image (``load``, not just ``verify``) to catch truncation.

    Returns:
        ``(reason, size)``: reason is None when the image decodes; size is ``(width, height)``
        when the header could be read.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            try:
                image.load()
            except (OSError, ValueError, SyntaxError) as error:
                return (
                    f"truncated or corrupt image ({error}); re-export the image or remove it "
                    "with its annotation",
                    size,
                )
    except UnidentifiedImageError:
        return ("not a decodable image; re-export it as JPEG or PNG or remove it", None)
    except OSError as error:
        return (f"cannot read image ({error}); re-export it or remove it", None)
    return None, size


def annotation_problems(
    annotation: voc.VocAnnotation,
    classes: Sequence[str] | None,
    *,
    allow_empty: bool,
    image_size: tuple[int, int] | None,
    image_label: str,
) -> list[str]:
    """Every problem of one parsed annotation (classes, boxes, size, emptiness).

    Args:
        annotation: Pixel boxes 1-based inclusive.
        classes: Allowed class names, or None to leave classes unchecked (the importer maps
            them first).
        allow_empty: Accept an annotation without objects.
        image_size: ``(width, height)`` of the decoded image, or None when unknown.
        image_label: How to name the image in messages.

    Returns:
        Reasons (without the file name), in object order.
    """
    reasons = []
    if image_size is not None and image_size != (annotation.width, annotation.height):
        reasons.append(
            f"<size> says {annotation.width}x{annotation.height} but {image_label} is "
            f"{image_size[0]}x{image_size[1]}; fix <size> (and the boxes if the image was resized)"
        )
    if not annotation.objects and not allow_empty:
        reasons.append(
            "annotation has no objects; annotate it or remove the image and annotation "
            "(or allow empty images with --allow-empty)"
        )
    for number, obj in enumerate(annotation.objects, start=1):
        if classes is not None and obj.name not in classes:
            reasons.append(
                f"object {number}: unknown class {obj.name!r} (allowed: {', '.join(classes)}); "
                + CLASS_MAP_HINT
            )
        problem = voc.box_problem(obj.box, annotation.width, annotation.height)
        if problem:
            reasons.append(f"object {number} ({obj.name}): {problem}")
    return reasons


def duplicate_stem_problems(paths: Iterable[Path], label: str) -> list[Problem]:
    """Image files whose names differ only by extension (or folder): their ids collide."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path)
    problems = []
    for stem, group in sorted(by_stem.items()):
        if len(group) > 1:
            names = ", ".join(str(path) for path in sorted(group))
            problems.append(
                Problem(
                    str(sorted(group)[0]),
                    f"duplicate image file names for id {stem!r} ({names}) in {label}; "
                    "keep one and rename or remove the others",
                )
            )
    return problems


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in voc.IMAGE_EXTENSIONS
    )


def _split_problems(root: Path) -> tuple[list[Problem], dict[str, list[str]]]:
    problems: list[Problem] = []
    splits: dict[str, list[str]] = {}
    existing = [split for split in voc.SPLITS if voc.split_file(root, split).is_file()]
    if not existing:
        problems.append(
            Problem(
                str(root / voc.SPLITS_DIR),
                "no split files (train.txt, val.txt, test.txt); create them, e.g. with "
                "`ppe data import`",
            )
        )
        return problems, splits
    if "train" not in existing:
        problems.append(
            Problem(str(voc.split_file(root, "train")), "missing train split; create it")
        )
    seen: dict[str, str] = {}
    for split in existing:
        ids = voc.read_split_ids(root, split)
        splits[split] = ids
        counts = Counter(ids)
        for image_id, count in sorted(counts.items()):
            if count > 1:
                problems.append(
                    Problem(
                        str(voc.split_file(root, split)),
                        f"id {image_id!r} listed {count} times; list each id once",
                    )
                )
        for image_id in counts:
            if image_id in seen:
                problems.append(
                    Problem(
                        str(voc.split_file(root, split)),
                        f"duplicate id {image_id!r} across splits (also in {seen[image_id]}); "
                        "keep it in exactly one split",
                    )
                )
            else:
                seen[image_id] = split
    return problems, splits


def _inspect(
    root: Path, classes: Sequence[str], allow_empty: bool
) -> tuple[list[Problem], DatasetSummary]:
    problems: list[Problem] = []
    summary = DatasetSummary()
    if not root.is_dir():
        return [Problem(str(root), "not a folder; give the dataset root")], summary
    annotations_dir = root / voc.ANNOTATIONS_DIR
    images_dir = root / voc.IMAGES_DIR
    for folder in (annotations_dir, images_dir):
        if not folder.is_dir():
            problems.append(
                Problem(
                    str(folder),
                    "folder missing; a VOC dataset has Annotations/, JPEGImages/ and "
                    "ImageSets/Main/ (convert other layouts with `ppe data import`)",
                )
            )
    split_problems, splits = _split_problems(root)
    problems.extend(split_problems)
    listed = {image_id for ids in splits.values() for image_id in ids}

    xml_files = (
        sorted(
            path
            for path in annotations_dir.iterdir()
            if path.is_file() and path.suffix.lower() == ".xml" and not path.name.startswith(".")
        )
        if annotations_dir.is_dir()
        else []
    )
    image_files = _image_files(images_dir)
    problems.extend(duplicate_stem_problems(image_files, str(images_dir)))
    annotated_ids = {path.stem for path in xml_files}
    used_images: set[Path] = set()
    class_counts: Counter[str] = Counter()
    difficult = 0
    for xml_path in xml_files:
        image_id = xml_path.stem
        if image_id not in listed and splits:
            problems.append(
                Problem(
                    str(xml_path),
                    "annotation not in any split; add its id to ImageSets/Main/<split>.txt "
                    "or remove it",
                )
            )
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
        image_path = voc.find_image(root, annotation, image_id)
        image_size = None
        if image_path is None:
            problems.append(
                Problem(
                    str(xml_path),
                    f"image {annotation.filename!r} not found in {images_dir}; add the image "
                    "or remove the annotation and its split entry",
                )
            )
            image_label = annotation.filename
        else:
            used_images.add(image_path)
            image_label = str(image_path)
            reason, image_size = decode_problem(image_path)
            if reason:
                problems.append(Problem(str(image_path), reason))
        for reason in annotation_problems(
            annotation,
            classes,
            allow_empty=allow_empty,
            image_size=image_size,
            image_label=image_label,
        ):
            problems.append(Problem(str(xml_path), reason))
        class_counts.update(obj.name for obj in annotation.objects)
        difficult += sum(obj.difficult for obj in annotation.objects)

    for split, ids in splits.items():
        for image_id in sorted(set(ids) - annotated_ids):
            problems.append(
                Problem(
                    str(voc.split_file(root, split)),
                    f"id {image_id!r} has no annotation {voc.ANNOTATIONS_DIR}/{image_id}.xml; "
                    "add it or remove the id",
                )
            )
    for image_path in image_files:
        if image_path not in used_images and image_path.stem not in annotated_ids:
            problems.append(
                Problem(
                    str(image_path),
                    "image has no annotation and is in no split; annotate it or remove it",
                )
            )
    summary.images_per_split = {split: len(ids) for split, ids in splits.items()}
    summary.objects_per_class = {name: class_counts.get(name, 0) for name in classes} | {
        name: count for name, count in sorted(class_counts.items()) if name not in classes
    }
    summary.difficult = difficult
    return problems, summary


def check_dataset(
    root: Path | str, classes: Sequence[str], *, allow_empty: bool = False
) -> list[Problem]:
    """Find every problem of a VOC dataset (it does not stop at the first).

    Checks: malformed or zero-byte XML, missing images, images that do not fully decode
    (truncated), ``<size>`` not matching the image, boxes outside the image or inverted/zero-area
    (pixel boxes 1-based inclusive), unknown classes, annotations without objects (unless
    ``allow_empty``), duplicate ids within or across splits, image file names that differ only by
    extension, split ids without an annotation, and annotations or images in no split.

    Args:
        root: Dataset folder.
        classes: Allowed class names (``model.classes``).
        allow_empty: Accept annotations without objects (background images).

    Returns:
        Problems sorted by file; empty when the dataset is clean.
    """
    problems, _ = _inspect(Path(root), classes, allow_empty)
    return sorted(problems)


def summarize_dataset(
    root: Path | str, classes: Sequence[str], *, allow_empty: bool = False
) -> DatasetSummary:
    """Check a dataset and describe it.

    Args:
        root: Dataset folder.
        classes: Allowed class names, or None to leave classes unchecked (the importer maps
            them first).
        allow_empty: Accept annotations without objects.

    Returns:
        Images per split, objects per class and the content hash.

    Raises:
        DatasetInvalidError: The dataset has problems (all listed).
    """
    root = Path(root)
    problems, summary = _inspect(root, classes, allow_empty)
    if problems:
        raise DatasetInvalidError(str(root), sorted(problems))
    summary.hash = voc.dataset_hash(root)
    return summary
