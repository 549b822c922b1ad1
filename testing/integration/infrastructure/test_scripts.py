"""The helper scripts: the .env writer and the IoT Edge device-identity script."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .contract import PIPELINE_VARIABLE_KEYS
from .terraform_config import INFRASTRUCTURE

WRITE_ENV = INFRASTRUCTURE / "scripts" / "write_env.py"
CREATE_DEVICE = INFRASTRUCTURE / "scripts" / "create_edge_device.sh"


def _output_json(tmp_path: Path, variables: dict[str, str]) -> Path:
    path = tmp_path / "pipeline_variables.json"
    # Shape of `terraform output -json pipeline_variables`.
    path.write_text(json.dumps({"sensitive": False, "type": ["map", "string"], "value": variables}))
    return path


def _dotenv(path: Path) -> dict[str, str]:
    """Read a dotenv file the way the pipelines and scripts do: `source` it in bash."""
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE)
    loop = f'for n in {" ".join(names)}; do printf "%s\\0" "${{!n}}"; done'
    script = f'set -a; source "{path}"; {loop}'
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return dict(zip(names, shell.stdout.split("\0")[:-1], strict=True))


def test_write_env_turns_the_output_into_a_dotenv(tmp_path: Path) -> None:
    variables = {key: f"value-{key.lower()}" for key in PIPELINE_VARIABLE_KEYS}
    variables["ACR_LOGIN_SERVER"] = "crppedevab12.azurecr.io"
    variables["MODEL_NAME"] = 'odd "name" $HOME'
    out = tmp_path / ".env"
    completed = subprocess.run(
        [
            sys.executable,
            str(WRITE_ENV),
            "--from-json",
            str(_output_json(tmp_path, variables)),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"wrote {len(PIPELINE_VARIABLE_KEYS)} variables" in completed.stderr
    written = _dotenv(out)
    assert set(written) == PIPELINE_VARIABLE_KEYS
    assert written == variables  # quotes and $ survive the round trip through bash


@pytest.mark.parametrize(
    ("variables", "message"),
    [({"lower_case": "x"}, "not an upper-case variable name"), ({"A": "two\nlines"}, "one-line")],
)
def test_write_env_rejects_malformed_output(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(WRITE_ENV),
            "--from-json",
            str(_output_json(tmp_path, variables)),
            "--out",
            str(tmp_path / ".env"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode != 0
    assert message in completed.stderr
    assert not (tmp_path / ".env").exists()


@pytest.fixture
def fake_az(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An `az` on PATH that records its arguments and prints a connection string."""
    log = tmp_path / "az.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{log}"\n'
        'if [[ "$*" == *"connection-string show"* ]]; then\n'
        '  echo "HostName=h;DeviceId=d;SharedAccessKey=k"\n'
        "fi\n"
    )
    az.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "IOTHUB_NAME": "iot-ppe-dev-ab12",
        "AZURE_RESOURCE_GROUP": "rg-ppe-dev-westeurope",
        "PPE_DOTENV": str(tmp_path / "no.env"),  # never the developer's real .env
    }
    return env, log


def test_device_script_creates_an_edge_identity_with_entra_auth(
    tmp_path: Path, fake_az: tuple[dict[str, str], Path]
) -> None:
    env, log = fake_az
    manifest = tmp_path / "deployment.amd64.json"
    manifest.write_text("{}")
    secret = tmp_path / "device.conn"
    subprocess.run(
        [
            "bash",
            str(CREATE_DEVICE),
            "site-01-cam",
            "--manifest",
            str(manifest),
            "--connection-string-file",
            str(secret),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    calls = log.read_text().splitlines()
    assert calls[0] == "extension add --upgrade --yes --name azure-iot --only-show-errors"
    assert calls[1] == (
        "iot hub device-identity create --hub-name iot-ppe-dev-ab12 --device-id site-01-cam "
        "--edge-enabled --auth-type login --output none"
    )
    assert calls[2].startswith("iot hub device-identity connection-string show")
    assert calls[3] == (
        f"iot edge set-modules --hub-name iot-ppe-dev-ab12 --device-id site-01-cam "
        f"--content {manifest} --auth-type login --output none"
    )
    assert secret.read_text().startswith("HostName=")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_device_script_enrolls_through_dps(fake_az: tuple[dict[str, str], Path]) -> None:
    env, log = fake_az
    env = {**env, "DPS_NAME": "provs-ppe-dev-ab12"}
    subprocess.run(
        ["bash", str(CREATE_DEVICE), "cam-2", "--dps"], env=env, check=True, capture_output=True
    )
    enrol = log.read_text().splitlines()[1]
    assert enrol.startswith("iot dps enrollment create --dps-name provs-ppe-dev-ab12")
    assert "--attestation-type symmetrickey --edge-enabled true" in enrol
    assert "--iot-hubs iot-ppe-dev-ab12.azure-devices.net" in enrol


@pytest.mark.parametrize(
    ("args", "unset", "message"),
    [
        (["Bad Device"], None, "DEVICE_ID must be"),
        (["cam-1"], "IOTHUB_NAME", "IOTHUB_NAME is not set"),
        (["cam-1", "--manifest", "missing.json"], None, "manifest not found"),
        (["cam-1", "--dps"], None, "DPS_NAME is not set"),
    ],
)
def test_device_script_rejects_bad_input(
    fake_az: tuple[dict[str, str], Path], args: list[str], unset: str | None, message: str
) -> None:
    env, log = fake_az
    env = {k: v for k, v in env.items() if k != unset}
    completed = subprocess.run(
        ["bash", str(CREATE_DEVICE), *args], env=env, capture_output=True, text=True, check=False
    )
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "device-identity create" not in (log.read_text() if log.exists() else "")
