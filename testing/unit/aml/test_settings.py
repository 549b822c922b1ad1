"""Settings from Terraform's outputs: the .env reader, the environment overlay, missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppe.aml.settings import (
    SETTINGS_KEYS,
    AmlSettings,
    JobOptions,
    load_settings,
    merged_environment,
    read_env_file,
)
from ppe.errors import ConfigError

VALUES = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_RESOURCE_GROUP": "rg-ppe-dev-westeurope",
    "AML_WORKSPACE": "mlw-ppe-dev-ab12",
    "AML_GPU_CLUSTER": "gpu-cluster",
    "AML_CPU_CLUSTER": "cpu-cluster",
    "MODEL_NAME": "ppe-hardhat-yolov3",
}


def _write(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f'{key}="{value}"\n' for key, value in values.items()))
    return path


def test_env_file_syntax(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# written by terraform\n"
        "\n"
        "PLAIN=value # trailing comment\n"
        "export EXPORTED=yes\n"
        "SINGLE='a # not a comment'\n"
        'DOUBLE="with \\"quotes\\" and \\$dollar"\n'
        "EMPTY=\n"
        "SPACED = spaced value \n"
        "HASH=a#b\n"
    )
    assert read_env_file(env) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SINGLE": "a # not a comment",
        "DOUBLE": 'with "quotes" and $dollar',
        "EMPTY": "",
        "SPACED": "spaced value",
        "HASH": "a#b",
    }


def test_env_file_missing_reads_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "absent.env") == {}


@pytest.mark.parametrize(
    ("line", "match"),
    [("NO_EQUALS", "expected KEY=value"), ("1BAD=x", "expected KEY=value"), ('Q="open', "quote")],
)
def test_env_file_errors_name_the_line(tmp_path: Path, line: str, match: str) -> None:
    env = tmp_path / ".env"
    env.write_text(f"OK=1\n{line}\n")
    with pytest.raises(ConfigError, match=rf"\.env:2: .*{match}"):
        read_env_file(env)


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env = _write(tmp_path / ".env", VALUES)
    settings = load_settings({"AML_GPU_CLUSTER": "gpu-override", "AML_CPU_CLUSTER": ""}, env)
    assert settings.gpu_cluster == "gpu-override"
    # An empty variable does not hide the file's value.
    assert settings.cpu_cluster == "cpu-cluster"
    assert settings.workspace == "mlw-ppe-dev-ab12"
    assert merged_environment({"X": "1"}, None) == {"X": "1"}


def test_settings_from_environment_only() -> None:
    settings = load_settings(VALUES, None)
    assert settings == AmlSettings(
        subscription_id=VALUES["AZURE_SUBSCRIPTION_ID"],
        resource_group=VALUES["AZURE_RESOURCE_GROUP"],
        workspace=VALUES["AML_WORKSPACE"],
        gpu_cluster="gpu-cluster",
        cpu_cluster="cpu-cluster",
        model_name="ppe-hardhat-yolov3",
    )


@pytest.mark.parametrize("key", sorted(SETTINGS_KEYS.values()))
def test_missing_key_is_one_line_naming_it_and_the_fix(tmp_path: Path, key: str) -> None:
    env = _write(tmp_path / ".env", {k: v for k, v in VALUES.items() if k != key})
    with pytest.raises(ConfigError) as caught:
        load_settings({}, env)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{key} is not set")
    assert "infrastructure/scripts/write_env.py` after terraform apply" in message
    assert "or set it in the environment" in message


def test_job_environment_carries_the_workspace() -> None:
    environment = load_settings(VALUES, None).job_environment()
    for key, value in VALUES.items():
        assert environment[key] == value
    assert environment["AZUREML_WORKSPACE_NAME"] == VALUES["AML_WORKSPACE"]


def test_job_options() -> None:
    assert JobOptions().data_uri() == "azureml:ppe-hardhat-voc@latest"
    assert JobOptions(data_version="0123abcd").data_uri() == "azureml:ppe-hardhat-voc:0123abcd"
    with pytest.raises(ConfigError, match="gpu nodes 0"):
        JobOptions(gpu_nodes=0)
