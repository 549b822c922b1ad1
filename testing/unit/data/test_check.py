from __future__ import annotations

import shutil
from pathlib import Path

from ppe.data import voc
from ppe.data.check import Problem, check_dataset, summarize_dataset

CLASSES = ["helmet", "head"]
GOOD = {"a": [("helmet", 1, 1, 20, 20)], "b": [("head", 5, 5, 30, 40)], "c": [("head", 2, 2, 9, 9)]}


def reasons(problems: list[Problem]) -> list[str]:
    return [str(problem) for problem in problems]


def test_clean_dataset_has_no_problems_and_a_summary(make_voc) -> None:  # type: ignore[no-untyped-def]
    root = make_voc(GOOD, splits={"train": ["a", "b"], "val": ["c"], "test": []})
    assert check_dataset(root, CLASSES) == []
    summary = summarize_dataset(root, CLASSES)
    assert summary.images_per_split == {"train": 2, "val": 1, "test": 0}
    assert summary.objects_per_class == {"helmet": 1, "head": 2}
    assert summary.hash == voc.dataset_hash(root)
    assert "3 images" in summary.line() and summary.hash in summary.line()


def test_every_problem_is_found_at_once(make_voc) -> None:  # type: ignore[no-untyped-def]
    root = make_voc(
        {
            "a": [("helmet", 1, 1, 20, 20), ("hat", 1, 1, 5, 5)],  # unknown class
            "b": [("head", 5, 5, 70, 40)],  # outside the 64x48 image
            "c": [("head", 30, 5, 10, 40)],  # inverted
            "d": [],  # empty
            "e": [("head", 1, 1, 5, 5)],  # image removed below
            "f": [("head", 1, 1, 5, 5)],  # image truncated below
            "g": [("head", 1, 1, 5, 5)],  # malformed XML below
            "h": [("head", 1, 1, 5, 5)],  # zero-byte XML below
            "i": [("head", 1, 1, 5, 5)],  # a second image file i.jpg below
            "j": [("head", 1, 1, 5, 5)],  # size mismatch below
        },
        splits={
            "train": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "ghost"],
            "val": ["a"],  # duplicate across splits
            "test": [],
        },
    )
    images, annotations = root / "JPEGImages", root / "Annotations"
    (images / "e.png").unlink()
    truncated = (images / "f.png").read_bytes()
    (images / "f.png").write_bytes(truncated[: len(truncated) // 2])
    (annotations / "g.xml").write_text("<annotation><size>", encoding="utf-8")
    (annotations / "h.xml").write_bytes(b"")
    shutil.copyfile(images / "i.png", images / "i.jpg")
    (annotations / "j.xml").write_text(
        (annotations / "j.xml").read_text(encoding="utf-8").replace("<width>64<", "<width>65<"),
        encoding="utf-8",
    )
    shutil.copyfile(images / "a.png", images / "stray.png")  # in no split, no annotation
    voc.write_annotation(
        voc.VocAnnotation("k.png", 64, 48, objects=(voc.VocObject("head", 1, 1, 4, 4),)),
        annotations / "k.xml",
    )
    shutil.copyfile(images / "a.png", images / "k.png")  # annotated but in no split

    lines = reasons(check_dataset(root, CLASSES))
    expected = [
        (annotations / "a.xml", "object 2: unknown class 'hat' (allowed: helmet, head)"),
        (annotations / "b.xml", "box [5, 5, 70, 40] is outside the 64x48 image"),
        (annotations / "c.xml", "box [30, 5, 10, 40] is inverted or has zero area"),
        (annotations / "d.xml", "annotation has no objects"),
        (annotations / "e.xml", "image 'e.png' not found in"),
        (images / "f.png", "truncated or corrupt image"),
        (annotations / "g.xml", "malformed XML"),
        (annotations / "h.xml", "zero-byte annotation"),
        (images / "i.jpg", "duplicate image file names for id 'i'"),
        (annotations / "j.xml", "<size> says 65x48 but"),
        (root / "ImageSets/Main/val.txt", "duplicate id 'a' across splits (also in train)"),
        (root / "ImageSets/Main/train.txt", "id 'ghost' has no annotation"),
        (images / "stray.png", "image has no annotation and is in no split"),
        (annotations / "k.xml", "annotation not in any split"),
    ]
    for path, reason in expected:
        assert any(line.startswith(f"{path}: ") and reason in line for line in lines), (
            path,
            reason,
            lines,
        )
    assert len(lines) == len(expected)
    assert "data.class_map" in next(line for line in lines if "'hat'" in line)


def test_allow_empty_accepts_background_images(make_voc) -> None:  # type: ignore[no-untyped-def]
    root = make_voc({"a": [("helmet", 1, 1, 20, 20)], "d": []})
    assert reasons(check_dataset(root, CLASSES)) == [
        f"{root / 'Annotations' / 'd.xml'}: annotation has no objects; annotate it or remove "
        "the image and annotation (or allow empty images with --allow-empty)"
    ]
    assert check_dataset(root, CLASSES, allow_empty=True) == []


def test_missing_layout_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    lines = reasons(check_dataset(tmp_path / "ds", CLASSES))
    assert any("Annotations: folder missing" in line for line in lines)
    assert any("JPEGImages: folder missing" in line for line in lines)
    assert any("no split files" in line for line in lines)
    assert reasons(check_dataset(tmp_path / "nope", CLASSES)) == [
        f"{tmp_path / 'nope'}: not a folder; give the dataset root"
    ]


def test_truncated_jpeg_is_caught_by_decoding(make_voc) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    root = make_voc({"a": [("helmet", 1, 1, 20, 20)]})
    png = root / "JPEGImages" / "a.png"
    jpeg = png.with_suffix(".jpg")
    Image.open(png).save(jpeg, quality=90)
    png.unlink()
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text(encoding="utf-8").replace("a.png", "a.jpg"), encoding="utf-8")
    assert check_dataset(root, CLASSES) == []
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    with Image.open(jpeg) as image:
        image.verify()  # the header alone looks fine: verify() is not enough
    assert [str(problem).split(" (")[0] for problem in check_dataset(root, CLASSES)] == [
        f"{jpeg}: truncated or corrupt image"
    ]
