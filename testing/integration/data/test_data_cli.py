"""``ppe data import|check|hash|synth`` end to end, in-process through ``ppe.cli.main``."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ppe.cli import main
from ppe.data import voc

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(80)

SourceFactory = Callable[[int], Path]


def import_args(source: Path, out: Path, *extra: str) -> list[str]:
    return [
        "data", "import",
        "--annotations", str(source / "annotations"),
        "--images", str(source / "images"),
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def xml_counts(annotations: Path) -> Counter[str]:
    return Counter(
        obj.name for path in annotations.glob("*.xml") for obj in voc.read_annotation(path).objects
    )


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_import_real_hardhat_then_check_is_clean(
    hardhat_voc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "voc"
    assert main(import_args(hardhat_voc, out)) == 0
    source_counts = xml_counts(hardhat_voc / "annotations")
    num_images = len(list((hardhat_voc / "annotations").glob("*.xml")))
    # data.class_map drops `person`; helmet and head are kept as they are.
    written = xml_counts(out / "Annotations")
    assert written == Counter(helmet=source_counts["helmet"], head=source_counts["head"])
    ids = {split: voc.read_split_ids(out, split) for split in voc.SPLITS}
    assert sum(map(len, ids.values())) == num_images
    # The full set comes in its own train/ and val/ folders: the import keeps them. The vendored
    # sample is a val/ folder alone (nothing to train on): it is split with data.split.
    own = {
        split: sorted(path.stem for path in (hardhat_voc / "images" / split).glob("*.png"))
        for split in voc.SPLITS
    }
    if own["train"]:
        assert ids == own
    else:
        assert len(ids["train"]) == num_images - round(num_images * 0.15) * 2
    # Images are copied byte for byte, PNG kept as PNG inside JPEGImages/.
    for image in (hardhat_voc / "images").rglob("*.png"):
        assert (out / "JPEGImages" / image.name).read_bytes() == image.read_bytes()
    capsys.readouterr()

    assert main(["data", "check", str(out)]) == 0
    summary = capsys.readouterr().out
    assert summary.count("\n") == 1
    digest = voc.dataset_hash(out)
    assert f"{num_images} images" in summary and digest in summary
    assert f"helmet {source_counts['helmet']}, head {source_counts['head']}" in summary

    assert main(["data", "hash", str(out)]) == 0
    assert capsys.readouterr().out == f"{digest}\n"

    # Same source: same dataset. A non-empty --out needs --force.
    assert main(import_args(hardhat_voc, out)) == 1
    assert voc.dataset_hash(out) == digest
    assert main(import_args(hardhat_voc, out, "--force")) == 0
    assert voc.dataset_hash(out) == digest
    # Kept folders win over data.split (the seed changes nothing) unless --resplit is given.
    assert main(import_args(hardhat_voc, out, "--force", "--set", "data.split.seed=1")) == 0
    assert (voc.dataset_hash(out) == digest) == bool(own["train"])
    assert main(import_args(hardhat_voc, out, "--force", "--resplit")) == 0
    ids = {split: voc.read_split_ids(out, split) for split in voc.SPLITS}
    assert len(ids["train"]) == num_images - round(num_images * 0.15) * 2
    resplit = voc.dataset_hash(out)
    seed_1 = import_args(hardhat_voc, out, "--force", "--resplit", "--set", "data.split.seed=1")
    assert main(seed_1) == 0
    assert voc.dataset_hash(out) != resplit


def test_import_renames_with_class_map(sample_source: SourceFactory, tmp_path: Path) -> None:
    source = sample_source(3)
    for path in (source / "annotations").glob("*.xml"):
        path.write_text(
            path.read_text(encoding="utf-8").replace("<name>helmet</name>", "<name>hat</name>"),
            encoding="utf-8",
        )
    out = tmp_path / "voc"
    assert main(import_args(source, out)) == 0  # the default class_map has hat: helmet
    assert xml_counts(out / "Annotations")["helmet"] > 0
    assert "hat" not in xml_counts(out / "Annotations")


def test_check_lists_problems_and_exits_1(
    sample_source: SourceFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "voc"
    assert main(import_args(sample_source(3), out)) == 0
    first = sorted((out / "Annotations").glob("*.xml"))[0]
    first.write_text("<annotation>", encoding="utf-8")
    (out / "ImageSets" / "Main" / "val.txt").write_text("ghost\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{first}: malformed XML") for line in lines)
    assert any("id 'ghost' has no annotation" in line for line in lines)


def corrupt_xml(source: Path, old: str, new: str) -> Path:
    """Replace ``old`` once in the first annotation (sorted by name) that contains it."""
    path = next(
        path
        for path in sorted((source / "annotations").glob("*.xml"))
        if old in path.read_text(encoding="utf-8")
    )
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def first_object(path: Path) -> tuple[str, int, int, int, int]:
    obj = voc.read_annotation(path).objects[0]
    return obj.name, int(obj.xmin), int(obj.ymin), int(obj.xmax), int(obj.ymax)


def run_bad_import(source: Path, out: Path, caplog: pytest.LogCaptureFixture, *extra: str) -> str:
    caplog.clear()
    assert main(import_args(source, out, *extra)) == 1
    assert_nothing_written(out)
    return caplog.text


def test_bad_malformed_xml(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    path = corrupt_xml(source, "</size>", "")
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert f"{path}: malformed XML (mismatched tag" in message


def test_bad_missing_image(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    image = sorted((source / "images" / "val").glob("*.png"))[1]
    image.unlink()
    message = run_bad_import(source, tmp_path / "voc", caplog)
    xml = source / "annotations" / f"{image.stem}.xml"
    assert f"{xml}: image '{image.name}' not found under {source / 'images'}" in message


def test_bad_truncated_image(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    image = sorted((source / "images" / "val").glob("*.png"))[2]
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert f"{image}: truncated or corrupt image" in message


def test_bad_box_outside_image(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    path = sorted((source / "annotations").glob("*.xml"))[0]
    _, xmin, ymin, xmax, ymax = first_object(path)
    assert corrupt_xml(source, f"<xmax>{xmax}</xmax>", "<xmax>999</xmax>") == path
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert re.search(
        rf"{re.escape(str(path))}: object 1 \(\w+\): box \[{xmin}, {ymin}, 999, {ymax}\] is "
        r"outside the 41\dx41\d image",
        message,
    ), message


def test_bad_inverted_box(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    path = sorted((source / "annotations").glob("*.xml"))[0]
    name, xmin, ymin, xmax, ymax = first_object(path)
    assert corrupt_xml(source, f"<ymax>{ymax}</ymax>", f"<ymax>{ymin - 1}</ymax>") == path
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert (
        f"{path}: object 1 ({name}): box [{xmin}, {ymin}, {xmax}, {ymin - 1}] is inverted or has "
        "zero area" in message
    )


def test_bad_unknown_class(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    path = corrupt_xml(source, "<name>helmet</name>", "<name>vest</name>")
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert re.search(
        rf"{re.escape(str(path))}: object \d+: unknown class 'vest': not in model\.classes "
        r"\(helmet, head\) nor in data\.class_map \(hat: helmet, person: None\)",
        message,
    ), message
    assert "data.class_map" in message


def test_bad_empty_annotation(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    path = sorted((source / "annotations").glob("*.xml"))[0]
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"<object>.*?</object>", "", text, flags=re.DOTALL), encoding="utf-8")
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert f"{path}: annotation has no objects" in message
    assert main(import_args(source, tmp_path / "voc", "--allow-empty")) == 0


def test_bad_duplicate_file_names(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    image = sorted((source / "images" / "val").glob("*.png"))[0]
    (source / "images" / "train").mkdir()
    duplicate = source / "images" / "train" / f"{image.stem}.jpg"
    duplicate.write_bytes(image.read_bytes())
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert f"duplicate image file names for id '{image.stem}' ({duplicate}, {image})" in message


def test_bad_config_key(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    message = run_bad_import(
        sample_source(2), tmp_path / "voc", caplog, "--set", "data.split.trian=0.5"
    )
    assert "unknown key 'data.split.trian'" in message
    assert "did you mean 'data.split.train'" in message


def test_all_problems_reported_together(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = sample_source(4)
    corrupt_xml(source, "<name>helmet</name>", "<name>vest</name>")
    sorted((source / "images" / "val").glob("*.png"))[3].unlink()
    message = run_bad_import(source, tmp_path / "voc", caplog)
    assert "2 problems" in message and "unknown class 'vest'" in message and "not found" in message


def test_existing_output_untouched_on_failure(sample_source: SourceFactory, tmp_path: Path) -> None:
    source = sample_source(3)
    out = tmp_path / "voc"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(import_args(source, out)) == 1  # not empty, no --force
    corrupt_xml(source, "</size>", "")
    assert main(import_args(source, out, "--force")) == 1  # bad source: --out left alone
    assert [path.name for path in out.iterdir()] == ["keep.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["src", "voc"]


def test_synth_cli_writes_clean_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert (
        main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--config",
                "smoke",
                "--set",
                "data.synth.num_images=12",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert line.startswith(f"{out}: 12 scenes") and voc.dataset_hash(out) in line
    assert main(["data", "check", str(out), "--config", "smoke"]) == 0
    assert len(list((out / "JPEGImages").glob("*.jpg"))) == 12


def _split_source(tmp_path: Path, layout: list[str]) -> Path:
    """Sample pairs, the i-th image and its XML in the folder ``layout[i]`` ('' for none)."""
    from testing.integration.data.conftest import SAMPLE

    source = tmp_path / "split-src"
    names = sorted(path.stem for path in (SAMPLE / "annotations").glob("*.xml"))
    for name, folder in zip(names, layout, strict=False):
        image_dir = source / "images" / folder if folder else source / "images"
        xml_dir = source / "annotations" / folder if folder else source / "annotations"
        image_dir.mkdir(parents=True, exist_ok=True)
        xml_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / "annotations" / f"{name}.xml", xml_dir / f"{name}.xml")
        shutil.copyfile(SAMPLE / "images" / "val" / f"{name}.png", image_dir / f"{name}.png")
    return source


def test_import_keeps_train_val_test_folders(tmp_path: Path) -> None:
    # Roboflow-style names: train/, valid/, test/ (valid means val).
    source = _split_source(tmp_path, ["train", "train", "valid", "test", "train"])
    out = tmp_path / "voc"
    assert main(import_args(source, out)) == 0
    sizes = {split: len(voc.read_split_ids(out, split)) for split in voc.SPLITS}
    assert sizes == {"train": 3, "val": 1, "test": 1}
    assert json.loads((out / "import.json").read_text())["split"] is None
    record = json.loads((out / "import.json").read_text())
    assert record["split_source"] == "the source's split folders" and record["split"] is None


def test_import_refuses_images_partly_in_split_folders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _split_source(tmp_path, ["train", "val", ""])
    out = tmp_path / "voc"
    assert main(import_args(source, out)) == 1
    message = caplog.text
    assert str(source / "images") in message and "in no train/, val/ or test/ folder" in message
    assert "--resplit" in message
    assert_nothing_written(out)
    assert main(import_args(source, out, "--resplit")) == 0


def test_split_folders_without_training_images_are_split_with_data_split(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _split_source(tmp_path, ["val", "val", "test", "val"])
    out = tmp_path / "voc"
    assert main(import_args(source, out)) == 0
    assert "hold no training images" in caplog.text and "--eval-only" in caplog.text
    assert len(voc.read_split_ids(out, "train")) == 4 - 2 * round(4 * 0.15)
    assert json.loads((out / "import.json").read_text())["split_source"] == "data.split (seeded)"


def test_import_refuses_an_xml_and_image_in_different_splits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _split_source(tmp_path, ["train", "val"])
    xml = next((source / "annotations" / "val").glob("*.xml"))
    xml.rename(source / "annotations" / "train" / xml.name)
    out = tmp_path / "voc"
    assert main(import_args(source, out)) == 1
    assert f"{source / 'annotations' / 'train'}/ (train)" in caplog.text
    assert "move one so both are in the same split" in caplog.text
    assert_nothing_written(out)


def test_eval_only_puts_every_image_in_test(
    sample_source: SourceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A source with a train/ folder is a full dataset: --eval-only refuses it, naming it.
    full = _split_source(tmp_path, ["train", "val", "test"])
    out = tmp_path / "voc"
    assert main(import_args(full, out, "--eval-only")) == 1
    assert f"{full / 'images' / 'train'}: --eval-only puts every image" in caplog.text
    assert_nothing_written(out)
    source = sample_source(4)  # images under images/val/
    assert main(import_args(source, out, "--eval-only")) == 0
    sizes = {split: len(voc.read_split_ids(out, split)) for split in voc.SPLITS}
    assert sizes == {"train": 0, "val": 0, "test": 4}
    assert main(["data", "check", str(out)]) == 0
    record = json.loads((out / "import.json").read_text())
    assert record["split_source"] == "evaluation only (every image in test)"
    # Evaluation-only and re-splitting contradict each other.
    with pytest.raises(SystemExit):
        main(import_args(source, tmp_path / "x", "--eval-only", "--resplit"))
