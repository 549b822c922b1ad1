"""`ppe edge manifest`: the command-line entry of the renderer."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from ppe import cli
from ppe.cli import edge as commands
from ppe.iotedge import manifest as m

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "environments" / "iotedge" / "deployment.template.json"
SCHEMAS = REPO_ROOT / "testing" / "fixtures" / "schemas" / "iotedge"


def edge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppe")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def run(argv: list[str]) -> int:
    args = edge_parser().parse_args(argv)
    status: int = args.func(args)
    return status


@pytest.fixture
def env_file(tmp_path: Path, edge_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in edge_env:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "site.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in edge_env.items()))
    return path


def base_args(env_file: Path, out: Path) -> list[str]:
    return [
        "edge", "manifest", "--platform", "arm64v8", "--tag", "42", "--model-version", "5",
        "--env-file", str(env_file), "--template", str(TEMPLATE), "--schemas", str(SCHEMAS),
        "--out", str(out),
    ]  # fmt: skip


def test_edge_group_is_registered_in_the_cli() -> None:
    assert "ppe.cli.edge" in cli.COMMAND_MODULES
    assert commands.add_manifest_command in commands.SUBCOMMANDS
    args = edge_parser().parse_args(["edge", "manifest", "--platform", "amd64", "--tag", "t",
                                     "--model-version", "1", "--out", "x.json"])  # fmt: skip
    assert args.func is commands.run_manifest
    assert args.template == commands.DEFAULT_TEMPLATE


def test_manifest_command_writes_the_rendered_manifest(
    env_file: Path, edge_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "config" / "deployment.arm64v8.json"
    with caplog.at_level(logging.INFO, logger="ppe.cli.edge"):
        assert run(base_args(env_file, out)) == 0
    written = json.loads(out.read_text())
    assert written == m.render_manifest(TEMPLATE, edge_env, "arm64v8", tag="42", model_version=5)
    assert out.stat().st_mode & 0o777 == 0o600
    assert str(out) in caplog.text
    assert "ppeacr.azurecr.io/ppedetector:0.1.0-42-arm64v8" in caplog.text


def test_environment_overrides_the_env_file(
    env_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMERA_ID", "from-the-pipeline")
    out = tmp_path / "manifest.json"
    assert run(base_args(env_file, out)) == 0
    module = json.loads(out.read_text())["modulesContent"]["$edgeAgent"]["properties.desired"][
        "modules"
    ]["ppedetector"]
    assert module["env"]["CAMERA_ID"] == {"value": "from-the-pipeline"}


def test_layered_flag_writes_the_layered_content(env_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "layer.json"
    assert run([*base_args(env_file, out), "--layered"]) == 0
    content = json.loads(out.read_text())["content"]["modulesContent"]
    assert "properties.desired.modules.ppedetector" in content["$edgeAgent"]


def test_missing_variable_fails_with_its_name(
    env_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env_file.write_text(
        "\n".join(line for line in env_file.read_text().splitlines() if "CAMERA_ID" not in line)
    )
    out = tmp_path / "manifest.json"
    with pytest.raises(m.ManifestError, match=r"CAMERA_ID \(line \d+\)"):
        run(base_args(env_file, out))
    assert not out.exists()


def test_cli_main_reports_errors_on_one_line(
    env_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        status = cli.main(base_args(tmp_path / "no-such.env", tmp_path / "x.json"))
    assert status == 1
    assert "--env-file" in caplog.text and "no such file" in caplog.text
