from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ppe.config import Config, available_profiles, config_from_mapping, load_config
from ppe.errors import ConfigError


def test_packaged_profiles_load_and_differ() -> None:
    assert {"smoke", "demo"} <= set(available_profiles())
    smoke, demo = load_config("smoke"), load_config("demo")
    assert smoke.name == "smoke" and demo.name == "demo"
    assert smoke.model.image_size < demo.model.image_size
    assert smoke.data.synth.num_images < demo.data.synth.num_images
    assert smoke.hash() != demo.hash()


def test_hardhat_profile_is_the_real_photo_recipe() -> None:
    config = load_config("hardhat")
    assert config.name == "hardhat"
    assert (config.model.architecture, config.model.image_size) == ("yolov3_tiny", 512)
    assert config.train.init_from == Path("outputs/weights/tiny-coco")
    assert config.model.anchors is None  # Darknet's: COCO's box rows stay usable
    assert (config.data.source, config.data.path) == ("import", Path("data/hardhat_voc"))
    # int8 lost under a point split and up to 2.2 raw on its 512 px models (issue16_recipe.md 11).
    assert config.export.output_layout == "split"


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.model.classes == ["helmet", "head"]
    assert config.model.architecture == "yolov3_tiny"


def test_overrides_are_parsed_as_yaml_scalars() -> None:
    config = load_config(
        "smoke", ["train.epochs=5", "train.mixed_precision=bfloat16", "model.classes=[a, b, c]"]
    )
    assert config.train.epochs == 5
    assert config.train.mixed_precision == "bfloat16"
    assert config.model.classes == ["a", "b", "c"]


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    config = load_config("demo", ["train.epochs=3"])
    path = config.save(tmp_path / "config.yaml")
    again = load_config(str(path))
    assert again == config
    assert again.hash() == config.hash()
    assert config_from_mapping(yaml.safe_load(path.read_text())) == config


def test_hash_changes_with_any_value() -> None:
    assert load_config("smoke").hash() != load_config("smoke", ["train.seed=1"]).hash()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.epoch=3"], r"unknown key 'train.epoch': did you mean 'train.epochs'\?"),
        (["tran.epochs=3"], r"unknown key 'tran': did you mean 'train'\?"),
        (
            ["data.split.trian=0.5"],
            r"unknown key 'data.split.trian': did you mean 'data.split.train'\?",
        ),
        (["model.image_size=100"], r"model.image_size: must be a multiple of 32 .* \(got 100\)"),
        (["train.epochs=0"], r"train.epochs: Input should be greater than or equal to 1 \(got 0\)"),
        (["train.learning_rate=-1"], r"train.learning_rate: Input should be greater than 0"),
        (["data.split.train=0.9"], r"data.split: train \+ val \+ test must be 1.0 \(got 1.2\)"),
        (
            ["model.architecture=yolov4"],
            r"model.architecture: Input should be 'yolov3' or 'yolov3_tiny'",
        ),
        (["model.classes=[helmet, helmet]"], r"model.classes: class names must be unique"),
        (["data.source=import"], r"needs data.path"),
        (
            ["edge.alert_min_frames=9"],
            r"alert_min_frames \(K\) must not exceed alert_window_frames \(N\)",
        ),
        (["train.epochs"], r"write it as section.key=value"),
        (
            ["train.positive_anchor_iou=0"],
            r"train.positive_anchor_iou: Input should be greater than 0",
        ),
        (["train.freeze_backbone_epochs=2"], r"freeze_backbone_epochs .* set train.init_from"),
        (
            ["train.init_from=weights", "train.epochs=3", "train.freeze_backbone_epochs=4"],
            r"freeze_backbone_epochs \(4\) must not exceed epochs \(3\)",
        ),
        (
            ["model.anchors=[[10, 14], [23, 27]]"],
            r"model: anchors: yolov3_tiny needs 6 .* `ppe data anchors` fits them",
        ),
        (
            ["model.anchors=[[10, 0]]"],
            r"model.anchors.0.1: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_values_are_named_with_the_fix(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config("smoke", overrides)


def test_unknown_profile_lists_the_choices() -> None:
    with pytest.raises(
        ConfigError,
        match=r"no such file and not a packaged profile; use one of demo, hardhat, smoke",
    ):
        load_config("nonexistent")


def test_yaml_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(str(bad))
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level must be a mapping"):
        load_config(str(listing))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  batch: 4\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: unknown key 'train.batch'"):
        load_config(str(unknown))


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("smoke", ["train.epochs=0", "train.batch_size=0"])
    assert "train.epochs" in str(caught.value) and "train.batch_size" in str(caught.value)


def test_config_rejects_assignment_of_bad_values() -> None:
    config = Config()
    with pytest.raises(ValueError, match="multiple of 32"):
        config.model.image_size = 100
