from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ppe.data import voc
from ppe.errors import DataError

CLASSES = ["helmet", "head"]


def test_annotation_write_read_round_trip(tmp_path: Path) -> None:
    annotation = voc.VocAnnotation(
        filename="a.png",
        width=416,
        height=320,
        depth=3,
        objects=(
            voc.VocObject("helmet", 1, 2, 30, 40),
            voc.VocObject("head", 100.5, 20, 150, 90.25, difficult=True, truncated=True),
        ),
        folder="JPEGImages",
    )
    path = voc.write_annotation(annotation, tmp_path / "Annotations" / "a.xml")
    assert voc.read_annotation(path) == annotation
    assert b"<xmin>1</xmin>" in path.read_bytes()  # integral values are written as integers


def test_parse_defaults_and_errors() -> None:
    minimal = (
        b"<annotation><filename>x.jpg</filename><size><width>10</width><height>8</height>"
        b"</size><object><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
        b"<ymax>4</ymax></bndbox></object></annotation>"
    )
    parsed = voc.parse_annotation(minimal)
    assert (parsed.depth, parsed.objects[0].difficult, parsed.objects[0].truncated) == (
        3,
        False,
        False,
    )
    with pytest.raises(DataError, match="malformed XML"):
        voc.parse_annotation(b"<annotation><size>")
    with pytest.raises(DataError, match=r"missing <size/width>"):
        voc.parse_annotation(b"<annotation><filename>x.jpg</filename></annotation>")
    with pytest.raises(DataError, match="malformed XML"):  # entities are refused (defusedxml)
        voc.parse_annotation(
            b'<!DOCTYPE a [<!ENTITY e "x">]><annotation><filename>&e;</filename></annotation>'
        )
    with pytest.raises(DataError, match="not a number"):
        voc.parse_annotation(minimal.replace(b"<xmin>1</xmin>", b"<xmin>one</xmin>"))


def test_box_convention_full_image_and_zero_tolerance() -> None:
    # 1-based inclusive: columns 1..W cover the whole image.
    assert voc.normalised_box((1, 1, 64, 48), 64, 48) == (0.0, 0.0, 1.0, 1.0)
    # 0 (written by 0-based exporters) reads like 1.
    assert voc.normalised_box((0, 0, 32, 24), 64, 48) == (0.0, 0.0, 0.5, 0.5)
    assert voc.pixel_box((0.0, 0.0, 1.0, 1.0), 64, 48) == (1, 1, 64, 48)


@given(
    width=st.integers(8, 2000),
    height=st.integers(8, 2000),
    data=st.data(),
)
def test_pixel_box_inverts_normalised_box(width: int, height: int, data: st.DataObject) -> None:
    xmin = data.draw(st.integers(1, width - 1))
    xmax = data.draw(st.integers(xmin + 1, width))
    ymin = data.draw(st.integers(1, height - 1))
    ymax = data.draw(st.integers(ymin + 1, height))
    normalised = voc.normalised_box((xmin, ymin, xmax, ymax), width, height)
    assert voc.pixel_box(normalised, width, height) == (xmin, ymin, xmax, ymax)


def test_load_split_boxes_labels_difficult(make_voc) -> None:  # type: ignore[no-untyped-def]
    root = make_voc(
        {
            "a": [("head", 1, 1, 32, 24), ("helmet", 33, 25, 64, 48)],
            "b": [("helmet", 17, 13, 48, 36)],
        },
        splits={"train": ["b", "a"], "val": [], "test": []},
    )
    annotation = voc.read_annotation(root / "Annotations" / "a.xml")
    assert annotation.objects[0].name == "head"
    samples = voc.load_split(root, "train", CLASSES)
    assert [sample.image_id for sample in samples] == ["b", "a"]  # split-file order
    a = samples[1]
    assert a.image_path == root / "JPEGImages" / "a.png"
    assert (a.width, a.height) == (64, 48)
    assert a.boxes.dtype == np.float32 and a.boxes.shape == (2, 4)
    np.testing.assert_allclose(a.boxes, [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], atol=1e-7)
    assert a.labels.dtype == np.int32 and a.labels.tolist() == [1, 0]
    assert a.difficult.dtype == np.bool_ and a.difficult.tolist() == [False, False]
    np.testing.assert_array_equal(a.pixel_boxes, [[1, 1, 32, 24], [33, 25, 64, 48]])
    np.testing.assert_allclose(samples[0].boxes, [[0.25, 0.25, 0.75, 0.75]], atol=1e-7)
    assert voc.load_split(root, "val", CLASSES) == []


def test_load_split_errors(make_voc) -> None:  # type: ignore[no-untyped-def]
    root = make_voc({"a": [("hat", 1, 1, 10, 10)]})
    with pytest.raises(DataError, match=r"unknown class 'hat'.*helmet, head.*class_map"):
        voc.load_split(root, "train", CLASSES)
    (root / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(DataError, match="split file not found"):
        voc.load_split(root, "val", CLASSES)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        voc.load_split(root, "dev", CLASSES)


def test_split_ids_seeded_disjoint_and_sized() -> None:
    ids = [f"img{i:03d}" for i in range(100)]
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    first = voc.split_ids(ids, fractions, seed=3)
    assert first == voc.split_ids(list(reversed(ids)), fractions, seed=3)
    assert first != voc.split_ids(ids, fractions, seed=4)
    assert {name: len(members) for name, members in first.items()} == {
        "train": 70,
        "val": 15,
        "test": 15,
    }
    assert sorted(image_id for members in first.values() for image_id in members) == ids
    tiny = voc.split_ids(["a", "b"], fractions, seed=0)
    assert len(tiny["train"]) >= 1 and sum(map(len, tiny.values())) == 2


def test_dataset_hash_stable_and_sensitive(make_voc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = make_voc({"a": [("head", 1, 1, 10, 10)], "b": [("helmet", 2, 2, 20, 20)]})
    digest = voc.dataset_hash(root)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert voc.dataset_hash(root) == digest
    # Location, timestamps and unrelated files do not matter.
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)
    os.utime(copy / "JPEGImages" / "a.png", (0, 0))
    (copy / "README.txt").write_text("notes", encoding="utf-8")
    (copy / "JPEGImages" / ".DS_Store").write_bytes(b"junk")
    assert voc.dataset_hash(copy) == digest
    # One byte of one image changes it.
    image = copy / "JPEGImages" / "b.png"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    assert voc.dataset_hash(copy) != digest
    # So does a renamed file, and a changed split file.
    shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / "ImageSets" / "Main" / "train.txt").write_text("a\n", encoding="utf-8")
    assert voc.dataset_hash(copy) != digest
    shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / "JPEGImages" / "a.png").rename(copy / "JPEGImages" / "c.png")
    assert voc.dataset_hash(copy) != digest
    with pytest.raises(DataError, match="not a dataset folder"):
        voc.dataset_hash(tmp_path / "missing")


def test_staged_output_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), voc.staged_output(out, force=False) as staging:
        (staging / "file").write_text("x", encoding="utf-8")
        raise RuntimeError("boom")
    assert sorted(tmp_path.iterdir()) == []
    with voc.staged_output(out, force=False) as staging:
        (staging / "file").write_text("1", encoding="utf-8")
    assert (out / "file").read_text(encoding="utf-8") == "1"
    with pytest.raises(DataError, match=r"not empty.*--force"), voc.staged_output(out, force=False):
        pass
    with voc.staged_output(out, force=True) as staging:
        (staging / "other").write_text("2", encoding="utf-8")
    assert sorted(path.name for path in out.iterdir()) == ["other"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
