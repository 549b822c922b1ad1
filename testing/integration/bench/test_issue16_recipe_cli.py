"""The trained experiments of ``benchmarks.issue16_recipe`` (``--variant-minutes`` and
``--ema-minutes``) run end to end on real photos and the official COCO weights, with a budget that
stops after the first step and a small input size: their records are complete, their models are
written, and a variant pairs with an earlier model on the same images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from benchmarks.issue16_recipe import main

from ppe.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "hardhat_sample"
# A tiny run: 96 px, batch 4, float32 (precision "none") on any CPU; a 0.06 s budget stops after
# the first step.
TINY = ["model.image_size=96", "train.batch_size=4", "train.mixed_precision=none"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored sample laid out with its own train (8) and val (4) folders."""
    root = tmp_path_factory.mktemp("photos")
    shutil.copytree(SAMPLE / "annotations", root / "annotations")
    images = sorted((SAMPLE / "images" / "val").iterdir())
    for split, chosen in (("train", images[:8]), ("val", images[8:])):
        (root / "images" / split).mkdir(parents=True)
        for image in chosen:
            shutil.copy(image, root / "images" / split / image.name)
    return root


def _run(photos: Path, weights: Path, work: Path, *args: str) -> dict[str, object]:
    out = work / "record.json"
    tiny = [part for override in TINY for part in ("--set", override)]
    paths = ["--data", str(photos), "--weights", str(weights), "--work", str(work)]
    code = main([*paths, "--out", str(out), *tiny, *args])
    assert code == 0
    record: dict[str, object] = json.loads(out.read_text())
    return record


def test_ema_then_a_variant_paired_with_its_raw_model(
    photos: Path, darknet_weights: Path, tmp_path: Path
) -> None:
    ema = _run(photos, darknet_weights, tmp_path / "ema", "--ema-minutes", "0.001")
    assert ema["experiment"] == "issue16_recipe_ema"
    result = ema["ema"]
    assert isinstance(result, dict)
    assert result["policy"] == "float32" and result["ema_decay"] == 0.999
    assert result["overrides"] == [*TINY, "train.ema_decay=0.999"]
    assert (result["scored_split"], result["images"]) == ("val", 4)
    assert result["training"]["steps"] >= 1
    for name in ("ema", "raw"):
        assert 0.0 <= result[name]["map50"] <= 1.0
        low, high = result[name]["map50_interval"]
        assert low <= high
        assert (tmp_path / "ema" / f"ema_paired_{name}" / "model.json").is_file()
    assert set(result["ema_minus_raw"]) == {"difference", "interval"}

    raw = tmp_path / "ema" / "ema_paired_raw"
    variant = _run(
        photos, darknet_weights, tmp_path / "variant", "--variant-minutes", "0.001",
        "--set", "train.ema_decay=0", "--against", str(raw),
    )  # fmt: skip
    assert variant["experiment"] == "issue16_recipe_variant"
    result = variant["variant"]
    assert isinstance(result, dict)
    assert result["overrides"] == [*TINY, "train.ema_decay=0"]
    assert (tmp_path / "variant" / "variant" / "model.json").is_file()
    against = result["against"]
    assert against["model"] == "ema_paired_raw"
    assert against["map50"] == pytest.approx(ema["ema"]["raw"]["map50"])  # type: ignore[index]
    paired = against["variant_minus_against"]
    assert paired["difference"] == pytest.approx(result["map50"] - against["map50"], abs=1e-3)

    # --score: both models at their own size (96) and rebuilt at 128, paired with the first.
    variant_model = tmp_path / "variant" / "variant"
    out = tmp_path / "sizes.json"
    paths = ["--data", str(photos), "--weights", str(darknet_weights), "--out", str(out)]
    sizes = ["--score", str(raw), "--score", str(variant_model), "--sizes", "128"]
    assert main([*paths, *sizes]) == 0
    scores = json.loads(out.read_text())["across_sizes"]
    assert (scores["scored_split"], scores["images"]) == ("val", 4)
    first, second = "ema/ema_paired_raw", "variant/variant"
    assert scores[first]["trained_at"] == scores[second]["trained_at"] == 96
    assert set(scores[first]["map50_at"]) == {"96", "128"}
    assert scores[first]["map50_at"]["96"] == pytest.approx(against["map50"], abs=1e-4)
    assert scores[second]["map50_at"]["96"] == pytest.approx(result["map50"], abs=1e-4)
    assert scores["paired_with_first"] == {second: {"against": first, **paired}}


def test_an_unknown_setting_is_named_before_any_training(
    photos: Path, darknet_weights: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"train\.no_such_key"):
        _run(
            photos,
            darknet_weights,
            tmp_path,
            "--variant-minutes",
            "1",
            "--set",
            "train.no_such_key=1",
        )
    assert not (tmp_path / "variant").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "model.image_size=96"], "--score scores saved models: drop --set"),
        (["--sizes", "416,big"], "--sizes '416,big': give input sizes such as 416,512"),
    ],
)
def test_score_refuses_settings_it_would_ignore_and_bad_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["--data", str(tmp_path), "--weights", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--score", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
