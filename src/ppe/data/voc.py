"""Pascal VOC datasets: typed annotations, reading and writing, splits and a content hash.

Layout (the only one the rest of the package reads)::

    <root>/Annotations/<id>.xml
    <root>/JPEGImages/<id>.<ext>          (JPEG or PNG; the XML's <filename> names it)
    <root>/ImageSets/Main/{train,val,test}.txt   (one id per line)

Box conventions, used consistently for reading, writing and checking:

* **Pixel boxes** (``VocObject``, ``Sample.pixel_boxes``) are the XML values, Pascal VOC style:
  1-based and inclusive, so a box covering the pixel columns ``c0..c1`` (0-based) is written
  ``xmin = c0 + 1``, ``xmax = c1 + 1``. A valid box satisfies ``0 <= xmin < xmax <= width`` and
  ``0 <= ymin < ymax <= height``; ``xmin = 0`` is tolerated (many exporters write 0-based values)
  and read like ``xmin = 1``.
* **Normalised boxes** (``Sample.boxes``) are ``[xmin, ymin, xmax, ymax]`` float32 in [0, 1] of the
  pixel *edges*: ``x0 = (xmin - 1) / width`` (clipped at 0), ``x1 = xmax / width``, likewise for y.
  :func:`pixel_box` is the exact inverse for boxes on the pixel grid, so normalise -> write ->
  read returns the same normalised box.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedET
import numpy as np
import numpy.typing as npt
from defusedxml import DefusedXmlException

from ppe.errors import DataError

logger = logging.getLogger(__name__)

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
SPLITS_DIR = "ImageSets/Main"
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class VocObject:
    """One annotated object.

    Attributes:
        name: Class name as written in the XML.
        xmin: Left pixel column, 1-based inclusive (0 tolerated, see the module docstring).
        ymin: Top pixel row, 1-based inclusive.
        xmax: Right pixel column, 1-based inclusive.
        ymax: Bottom pixel row, 1-based inclusive.
        difficult: VOC ``difficult`` flag: ignored by mAP (neither counted nor penalised).
        truncated: VOC ``truncated`` flag: the object extends beyond the image or is cut.
    """

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Pixel box ``(xmin, ymin, xmax, ymax)``, 1-based inclusive."""
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass(frozen=True)
class VocAnnotation:
    """The contents of one ``Annotations/<id>.xml`` file.

    Attributes:
        filename: Image file name inside ``JPEGImages/`` (the XML ``<filename>``).
        width: Image width in pixels (``<size><width>``).
        height: Image height in pixels.
        depth: Number of channels (3 for RGB).
        objects: The annotated objects, pixel boxes 1-based inclusive.
        folder: The XML ``<folder>`` (informational only).
    """

    filename: str
    width: int
    height: int
    depth: int = 3
    objects: tuple[VocObject, ...] = field(default_factory=tuple)
    folder: str = "JPEGImages"


@dataclass(frozen=True, eq=False)
class Sample:
    """One image of a split, ready for an input pipeline or an evaluator.

    Attributes:
        image_id: The VOC id (``Annotations/<image_id>.xml``).
        image_path: Path of the image file.
        width: Image width in pixels (from the XML).
        height: Image height in pixels (from the XML).
        boxes: ``(N, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1].
        labels: ``(N,)`` int32 indices into the ``classes`` passed to :func:`load_split`.
        difficult: ``(N,)`` bool VOC ``difficult`` flags.
        pixel_boxes: ``(N, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` exactly as in the XML
            (pixels, 1-based inclusive), for evaluation against the original annotation.
    """

    image_id: str
    image_path: Path
    width: int
    height: int
    boxes: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int32]
    difficult: npt.NDArray[np.bool_]
    pixel_boxes: npt.NDArray[np.float32]


# ----------------------------------------------------------------------------------------------
# Box conversions


def normalised_box(
    box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Convert a VOC pixel box to normalised edge coordinates.

    Args:
        box: ``[xmin, ymin, xmax, ymax]`` in pixels, 1-based inclusive.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``(xmin, ymin, xmax, ymax)`` normalised to [0, 1] (clipped).
    """
    xmin, ymin, xmax, ymax = box
    return (
        min(max((xmin - 1.0) / width, 0.0), 1.0),
        min(max((ymin - 1.0) / height, 0.0), 1.0),
        min(max(xmax / width, 0.0), 1.0),
        min(max(ymax / height, 0.0), 1.0),
    )


def pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Convert a normalised box to VOC pixel coordinates (the inverse of :func:`normalised_box`).

    Args:
        box: ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1].
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``(xmin, ymin, xmax, ymax)`` integer pixels, 1-based inclusive, inside the image.
    """
    x0, y0, x1, y1 = box
    xmin = min(max(round(x0 * width), 0), width - 1) + 1
    ymin = min(max(round(y0 * height), 0), height - 1) + 1
    xmax = min(max(round(x1 * width), xmin), width)
    ymax = min(max(round(y1 * height), ymin), height)
    return xmin, ymin, xmax, ymax


def box_problem(box: Sequence[float], width: int, height: int) -> str | None:
    """Say what is wrong with a pixel box, or None when it is valid.

    Args:
        box: ``[xmin, ymin, xmax, ymax]`` in pixels, 1-based inclusive.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``"inverted or zero-area ..."``, ``"outside the image ..."`` or None.
    """
    xmin, ymin, xmax, ymax = box
    shown = f"[{_fmt(xmin)}, {_fmt(ymin)}, {_fmt(xmax)}, {_fmt(ymax)}]"
    if xmin >= xmax or ymin >= ymax:
        return (
            f"box {shown} is inverted or has zero area; "
            "it needs xmin < xmax and ymin < ymax (swap or fix the corners)"
        )
    if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
        return (
            f"box {shown} is outside the {width}x{height} image; it needs "
            f"0 <= xmin < xmax <= {width} and 0 <= ymin < ymax <= {height} "
            "(clip it to the image or fix <size>)"
        )
    return None


# ----------------------------------------------------------------------------------------------
# XML


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _text(node: ET.Element, path: str, what: str) -> str:
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise DataError(f"missing <{path}> in {what}")
    return child.text.strip()


def _number(node: ET.Element, path: str, what: str) -> float:
    raw = _text(node, path, what)
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"<{path}> in {what} is not a number: {raw!r}") from None
    if not np.isfinite(value):
        raise DataError(f"<{path}> in {what} is not finite: {raw!r}")
    return value


def _flag(node: ET.Element, path: str) -> bool:
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        return False
    try:
        return float(child.text.strip()) != 0
    except ValueError:
        return child.text.strip().lower() == "true"


def parse_annotation(data: bytes, default_filename: str = "") -> VocAnnotation:
    """Parse the bytes of a VOC XML annotation (with defusedxml: no entities, no external refs).

    Args:
        data: The file's bytes.
        default_filename: Used when the XML has no ``<filename>``.

    Returns:
        The annotation; pixel boxes as written (1-based inclusive), not validated against the
        image (see :func:`box_problem` and :mod:`ppe.data.check`).

    Raises:
        DataError: The XML is empty, malformed, or misses a required field (the message says
            which; it does not name the file, callers add it).
    """
    if not data.strip():
        raise DataError("empty file (no XML content)")
    try:
        root = DefusedET.fromstring(data)
    except ParseError as error:
        raise DataError(f"malformed XML ({error})") from None
    except DefusedXmlException as error:
        raise DataError(f"malformed XML (forbidden construct: {error})") from None
    if root.tag != "annotation":
        raise DataError(f"malformed XML (root element is <{root.tag}>, not <annotation>)")
    filename_node = root.find("filename")
    filename = (
        filename_node.text.strip()
        if filename_node is not None and filename_node.text and filename_node.text.strip()
        else default_filename
    )
    if not filename:
        raise DataError("missing <filename>")
    width = _number(root, "size/width", "the annotation")
    height = _number(root, "size/height", "the annotation")
    if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
        raise DataError(f"<size> must be positive integers, got {_fmt(width)}x{_fmt(height)}")
    depth_node = root.find("size/depth")
    depth = 3
    if depth_node is not None and depth_node.text and depth_node.text.strip():
        try:
            depth = int(float(depth_node.text))
        except ValueError:
            raise DataError(f"<size/depth> is not a number: {depth_node.text!r}") from None
    folder_node = root.find("folder")
    folder = folder_node.text.strip() if folder_node is not None and folder_node.text else ""
    objects = []
    for index, node in enumerate(root.findall("object"), start=1):
        what = f"object {index}"
        name = _text(node, "name", what)
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise DataError(f"missing <bndbox> in {what} ({name})")
        objects.append(
            VocObject(
                name=name,
                xmin=_number(bndbox, "xmin", f"{what} ({name})"),
                ymin=_number(bndbox, "ymin", f"{what} ({name})"),
                xmax=_number(bndbox, "xmax", f"{what} ({name})"),
                ymax=_number(bndbox, "ymax", f"{what} ({name})"),
                difficult=_flag(node, "difficult"),
                truncated=_flag(node, "truncated"),
            )
        )
    return VocAnnotation(
        filename=filename,
        width=int(width),
        height=int(height),
        depth=depth,
        objects=tuple(objects),
        folder=folder,
    )


def read_annotation(path: Path) -> VocAnnotation:
    """Read one VOC XML file.

    Args:
        path: The ``.xml`` file.

    Returns:
        The parsed annotation (pixel boxes 1-based inclusive).

    Raises:
        DataError: Unreadable, empty or malformed; the message starts with the path.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return parse_annotation(data, default_filename="")
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def annotation_to_xml(annotation: VocAnnotation) -> bytes:
    """Serialise an annotation as VOC XML (UTF-8, indented).

    Args:
        annotation: Pixel boxes 1-based inclusive; written as integers when integral.

    Returns:
        The XML document's bytes.
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = annotation.folder
    ET.SubElement(root, "filename").text = annotation.filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(annotation.width)
    ET.SubElement(size, "height").text = str(annotation.height)
    ET.SubElement(size, "depth").text = str(annotation.depth)
    ET.SubElement(root, "segmented").text = "0"
    for obj in annotation.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        bndbox = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box, strict=True):
            ET.SubElement(bndbox, key).text = _fmt(value)
    ET.indent(root, space="    ")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return body + b"\n"


def write_annotation(annotation: VocAnnotation, path: Path) -> Path:
    """Write one VOC XML file (parents created).

    Args:
        annotation: Pixel boxes 1-based inclusive.
        path: Destination ``.xml`` path.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(annotation_to_xml(annotation))
    return path


# ----------------------------------------------------------------------------------------------
# Splits


def split_file(root: Path, split: str) -> Path:
    """Path of ``ImageSets/Main/<split>.txt`` under ``root``."""
    return root / SPLITS_DIR / f"{split}.txt"


def read_split_ids(root: Path, split: str) -> list[str]:
    """Ids listed in ``ImageSets/Main/<split>.txt`` (first token of each non-empty line).

    Raises:
        DataError: The split file does not exist.
    """
    path = split_file(root, split)
    if not path.is_file():
        raise DataError(
            f"{path}: split file not found; a VOC dataset lists its ids in "
            f"ImageSets/Main/{{{','.join(SPLITS)}}}.txt (create it with `ppe data import`)"
        )
    return [
        line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def write_split(root: Path, split: str, ids: Sequence[str]) -> Path:
    """Write ``ImageSets/Main/<split>.txt`` (one id per line; an empty split is an empty file)."""
    path = split_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image_id}\n" for image_id in ids), encoding="utf-8")
    return path


def split_ids(
    ids: Sequence[str], fractions: Mapping[str, float], seed: int
) -> dict[str, list[str]]:
    """Seeded random split of ids into train/val/test.

    The ids are sorted first, so the result depends only on the set of ids, the fractions and the
    seed. Sizes are ``round(n * val)`` and ``round(n * test)``, the rest goes to train (at least
    one id when there are any). Each split's ids come back sorted.

    Args:
        ids: The ids to split (unique).
        fractions: ``{"train": ..., "val": ..., "test": ...}`` adding up to 1.
        seed: Seed of the permutation.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.
    """
    ordered = sorted(ids)
    count = len(ordered)
    permutation = np.random.default_rng(seed).permutation(count)
    num_val = round(count * fractions.get("val", 0.0))
    num_test = round(count * fractions.get("test", 0.0))
    while count and num_val + num_test >= count:
        if num_test >= num_val and num_test:
            num_test -= 1
        else:
            num_val -= 1
    shuffled = [ordered[int(index)] for index in permutation]
    result = {
        "val": sorted(shuffled[:num_val]),
        "test": sorted(shuffled[num_val : num_val + num_test]),
        "train": sorted(shuffled[num_val + num_test :]),
    }
    return {split: result[split] for split in SPLITS}


# ----------------------------------------------------------------------------------------------
# Loading


def find_image(root: Path, annotation: VocAnnotation, image_id: str) -> Path | None:
    """Locate the image of an annotation: ``JPEGImages/<filename>``, else ``JPEGImages/<id>.*``."""
    images = root / IMAGES_DIR
    named = images / Path(annotation.filename).name
    if named.is_file():
        return named
    candidates = sorted(
        path
        for path in images.glob(f"{image_id}.*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )
    return candidates[0] if len(candidates) == 1 else None


def load_split(root: Path | str, split: str, classes: Sequence[str]) -> list[Sample]:
    """Load the samples of one split of a VOC dataset.

    Args:
        root: Dataset folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``).
        split: ``train``, ``val`` or ``test``.
        classes: Class names; ``labels`` index into this sequence.

    Returns:
        One :class:`Sample` per id, in split-file order. ``boxes`` are ``(N, 4)`` float32
        ``[xmin, ymin, xmax, ymax]`` normalised to [0, 1]; ``pixel_boxes`` the XML values
        (1-based inclusive pixels).

    Raises:
        DataError: Missing split file, annotation or image, malformed XML, or a class not in
            ``classes`` (run ``ppe data check`` to list every problem at once).
    """
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    index = {name: position for position, name in enumerate(classes)}
    samples = []
    for image_id in read_split_ids(root, split):
        xml_path = root / ANNOTATIONS_DIR / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DataError(
                f"{split_file(root, split)}: id {image_id!r} has no {ANNOTATIONS_DIR}/"
                f"{image_id}.xml; add it or remove the id (see `ppe data check`)"
            )
        annotation = read_annotation(xml_path)
        image_path = find_image(root, annotation, image_id)
        if image_path is None:
            raise DataError(
                f"{xml_path}: image {annotation.filename!r} not found in {root / IMAGES_DIR}"
            )
        unknown = sorted({obj.name for obj in annotation.objects} - index.keys())
        if unknown:
            raise DataError(
                f"{xml_path}: unknown class {', '.join(map(repr, unknown))}; allowed: "
                f"{', '.join(classes)} (map or drop foreign classes with data.class_map on import)"
            )
        pixel = np.array([obj.box for obj in annotation.objects], dtype=np.float32).reshape(-1, 4)
        boxes = np.array(
            [
                normalised_box(obj.box, annotation.width, annotation.height)
                for obj in annotation.objects
            ],
            dtype=np.float32,
        ).reshape(-1, 4)
        samples.append(
            Sample(
                image_id=image_id,
                image_path=image_path,
                width=annotation.width,
                height=annotation.height,
                boxes=boxes,
                labels=np.array([index[obj.name] for obj in annotation.objects], dtype=np.int32),
                difficult=np.array([obj.difficult for obj in annotation.objects], dtype=np.bool_),
                pixel_boxes=pixel,
            )
        )
    logger.debug("loaded %d samples from %s split %s", len(samples), root, split)
    return samples


# ----------------------------------------------------------------------------------------------
# Hash


def dataset_files(root: Path) -> list[Path]:
    """Every annotation, image and split file of a dataset, sorted by relative POSIX path.

    Files under ``Annotations/``, ``JPEGImages/`` and ``ImageSets/`` (recursively); hidden files
    (names starting with ``.``, e.g. ``.DS_Store``) are skipped.
    """
    files: list[Path] = []
    for top in (ANNOTATIONS_DIR, IMAGES_DIR, "ImageSets"):
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            files.extend(Path(dirpath) / name for name in filenames if not name.startswith("."))
    return sorted(
        (path for path in files if path.is_file()), key=lambda p: p.relative_to(root).as_posix()
    )


def dataset_hash(root: Path | str) -> str:
    """Content hash of a VOC dataset: sha256 hex over relative paths and bytes.

    For each file of :func:`dataset_files` in sorted order, the hash takes the relative POSIX
    path, a NUL byte, the size as 8 little-endian bytes and the content (streamed in 1 MiB
    chunks). It does not depend on the root's location, timestamps or permissions.

    Args:
        root: Dataset folder.

    Returns:
        64 hex characters.

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a dataset folder")
    digest = hashlib.sha256()
    for path in dataset_files(root):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Atomic output folders


def ensure_writable_output(out: Path, force: bool, sources: Sequence[Path] = ()) -> None:
    """Refuse an output folder that is non-empty (unless ``force``) or overlaps a source.

    Raises:
        DataError: With the fix (``--force`` or another folder).
    """
    resolved = out.resolve()
    for source in sources:
        source_resolved = source.resolve()
        if (
            resolved == source_resolved
            or resolved in source_resolved.parents
            or source_resolved in resolved.parents
        ):
            raise DataError(
                f"{out}: the output folder overlaps the input {source}; choose another --out"
            )
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise DataError(
            f"{out}: output folder is not empty; choose an empty or new folder, "
            "or pass --force to replace it"
        )


@contextlib.contextmanager
def staged_output(out: Path, force: bool) -> Iterator[Path]:
    """Build a folder next to ``out`` and move it into place only if the block succeeds.

    Yields a temporary folder in ``out``'s parent. On success ``out`` is replaced by it
    (``force``) or created; on any exception the temporary folder is removed and ``out`` is
    left untouched.

    Raises:
        DataError: ``out`` is non-empty and ``force`` is False.
    """
    ensure_writable_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.replace(trash / "old")
            staging.replace(out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
