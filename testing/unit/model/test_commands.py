"""`ppe weights import-darknet`: argument parsing and user errors (the real run is an
integration test)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ppe.cli import model as commands
from ppe.errors import PpeError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppe")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parses_import_darknet(tmp_path: Path) -> None:
    args = _parser().parse_args(
        [
            "weights",
            "import-darknet",
            "--weights",
            "w.weights",
            "--architecture",
            "yolov3_tiny",
            "--out",
            str(tmp_path / "m"),
            "--classes",
            "helmet,head",
        ]
    )
    assert args.func is commands.import_darknet
    assert args.architecture == "yolov3_tiny"
    assert args.classes == "helmet,head"
    assert args.image_size == 416
    assert args.names is None


def test_rejects_unknown_architecture(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(
            [
                "weights",
                "import-darknet",
                "--weights",
                "w",
                "--architecture",
                "yolov5",
                "--out",
                "o",
            ]
        )
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classes", "helmet,,head"], "must be unique, non-empty names"),
        (["--classes", "helmet,helmet"], "must be unique, non-empty names"),
        (["--image-size", "100"], "multiple of 32"),
    ],
)
def test_user_errors_are_ppe_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    args = _parser().parse_args(
        [
            "weights",
            "import-darknet",
            "--weights",
            str(tmp_path / "w.weights"),
            "--architecture",
            "yolov3_tiny",
            "--out",
            str(tmp_path / "out"),
            *extra,
        ]
    )
    with pytest.raises(PpeError, match=message):
        args.func(args)


def test_existing_out_and_empty_names(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    base = ["weights", "import-darknet", "--weights", "w", "--architecture", "yolov3_tiny"]
    args = _parser().parse_args([*base, "--out", str(tmp_path / "out")])
    with pytest.raises(PpeError, match="already exists"):
        args.func(args)
    (tmp_path / "names.txt").write_text("\n\n")
    args = _parser().parse_args(
        [*base, "--out", str(tmp_path / "new"), "--names", str(tmp_path / "names.txt")]
    )
    with pytest.raises(PpeError, match="is empty"):
        args.func(args)
