"""Our renderer against `iotedgedev solution genconfig`, run as users run it.

iotedgedev lives in its own environment (.venv-iotedgedev, `make setup-tools`). It runs in a
copy of environments/iotedge with a test .env, HOME pointed at a temporary folder whose
settings turn telemetry off, and a minimal environment, so nothing of this machine leaks in.
The manifests are compared as parsed JSON: no normalisation is needed, because both sides
stringify createOptions with the same separators and split them at the same 512 characters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ppe.iotedge import manifest as m

REPO_ROOT = Path(__file__).resolve().parents[3]
IOTEDGE_DIR = REPO_ROOT / "environments" / "iotedge"
SCHEMAS = REPO_ROOT / "testing" / "fixtures" / "schemas" / "iotedge"
TOOL_VENV = REPO_ROOT / ".venv-iotedgedev"

# Written as users write .env: the registry names come from Terraform outputs by interpolation.
DOTENV = """\
CONTAINER_REGISTRY_SERVER=${ACR_LOGIN_SERVER}
CONTAINER_REGISTRY_USERNAME=${EDGE_REGISTRY_TOKEN_NAME}
CONTAINER_REGISTRY_PASSWORD="pull/Token+Pass="
CONTAINER_TAG=model9-20261123.7
MODEL_VERSION=9
CAMERA_ID=site-2 gate  # inline comment
FRAME_SOURCE='rtsp://cam.local:554/live?channel=1'
PPE_HOST_QUEUE_DIR={queue_dir}
PPE_HOST_SECRETS_DIR=/etc/ppedetector/secrets
PPE_HTTP_HOST_IP=127.0.0.1
PPE_MEMORY_BYTES=536870912
EDGEHUB_STORE_FORWARD_TTL_SECS=172800
EDGEHUB_HOST_STORE_DIR=/var/lib/iotedge-hub
MODULES_PATH=modules
CONFIG_OUTPUT_DIR=config
"""
TERRAFORM_OUTPUTS = {"ACR_LOGIN_SERVER": "PpeAcr.azurecr.io", "EDGE_REGISTRY_TOKEN_NAME": "edge"}


def tool(name: str) -> Path:
    path = TOOL_VENV / "bin" / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make setup` (it builds .venv-iotedgedev)")
    return path


def genconfig(solution: Path, home: Path, platform: str) -> dict[str, object]:
    settings = home / ".iotedgedev"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "setting.ini").write_text("[DEFAULT]\nfirsttime = no\ncollect_telemetry = no\n")
    env = {
        "PATH": f"{TOOL_VENV / 'bin'}{os.pathsep}{os.defpath}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **TERRAFORM_OUTPUTS,
    }
    command = [str(tool("iotedgedev")), "solution", "genconfig"]
    command += ["-f", "deployment.template.json", "-P", platform, "--fail-on-validation-error"]
    result = subprocess.run(
        command, cwd=solution, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (settings / "setting.ini").read_text().count("collect_telemetry = no") == 1
    output: dict[str, object] = json.loads(
        (solution / "config" / f"deployment.{platform}.json").read_text()
    )
    return output


@pytest.fixture
def solution(tmp_path: Path) -> Path:
    copy = tmp_path / "solution"
    shutil.copytree(IOTEDGE_DIR, copy, ignore=shutil.ignore_patterns(".env", "config"))
    return copy


@pytest.mark.parametrize(
    ("platform", "queue_dir"),
    [
        ("amd64", "/var/lib/ppedetector"),
        ("arm64v8", "/var/lib/ppedetector"),
        # A long host path pushes createOptions past 512 characters: both must chunk alike.
        ("amd64", "/mnt/" + "/".join(["site-storage"] * 60)),
    ],
)
def test_our_manifest_equals_iotedgedev_genconfig(
    solution: Path, tmp_path: Path, platform: str, queue_dir: str
) -> None:
    dotenv = DOTENV.replace("{queue_dir}", queue_dir)
    (solution / ".env").write_text(dotenv)
    theirs = genconfig(solution, tmp_path / "home", platform)

    env = {**m.parse_dotenv(dotenv, TERRAFORM_OUTPUTS), **TERRAFORM_OUTPUTS}
    ours = m.render_manifest(solution / "deployment.template.json", env, platform)
    assert ours == theirs
    assert m.manifest_errors(ours, SCHEMAS) == []
    module = ours["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["ppedetector"]
    assert (
        module["settings"]["image"]
        == f"ppeacr.azurecr.io/ppedetector:0.1.0-model9-20261123.7-{platform}"
    )
    assert ("createOptions01" in module["settings"]) == (len(queue_dir) > 200)


def test_our_dotenv_parser_agrees_with_python_dotenv(solution: Path) -> None:
    text = (solution / ".env.template").read_text() + DOTENV.replace("{queue_dir}", "/srv/ppe")
    script = (
        "import io, json, sys\n"
        "from dotenv import dotenv_values\n"
        "print(json.dumps(dotenv_values(stream=io.StringIO(sys.stdin.read()))))\n"
    )
    result = subprocess.run(
        [str(tool("python")), "-c", script],
        input=text,
        env={"PATH": os.defpath, **TERRAFORM_OUTPUTS},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert m.parse_dotenv(text, TERRAFORM_OUTPUTS) == json.loads(result.stdout)
