"""The manifest step takes the devices' registry user name and password from one secret version.

The registry password rotates across two tokens (infrastructure/modules/edge/locals.tf): the key
vault secret holds the current password and names its token in the `acr-token` tag. Read in two
calls, a rotation between them would pair one token's name with the other's password. Key Vault
has no offline emulator, so `az keyvault secret show` is a stand-in here (this test says so); its
`--query` runs on jmespath and its `--output tsv` on knack's formatter, both from the Azure CLI's
own environment (make setup), so the script meets the output the real CLI prints
(https://learn.microsoft.com/cli/azure/keyvault/secret#az-keyvault-secret-show,
https://learn.microsoft.com/cli/azure/format-output-azure-cli#tsv-output-format).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .ado import PIPELINES, REPO_ROOT, load

AZ_PYTHON = REPO_ROOT / ".venv-azure-cli" / "bin" / "python"
MANIFEST_STEP = PIPELINES / "templates" / "steps" / "edge_manifest.yml"

# The stand-in: `az keyvault secret show` answers with the secret in FAKE_SECRET (the JSON Key
# Vault returns), other commands fail.
FAKE_AZ = """
import json, os, sys
import jmespath
from knack.output import format_tsv

args = sys.argv[1:]
if args[:3] != ["keyvault", "secret", "show"]:
    sys.exit(f"unexpected az call: {args}")
options = dict(zip(args[3::2], args[4::2]))
secret = json.load(open(os.environ["FAKE_SECRET"]))
if options["--vault-name"] != secret["vault"] or options["--name"] != secret["name"]:
    sys.exit("(SecretNotFound) A secret with (name/id) was not found in this key vault.")
result = jmespath.search(options["--query"], secret["document"])
assert options["--output"] == "tsv", options


class Result:
    def __init__(self, result):
        self.result = result
        self.is_query_active = True


sys.stdout.write(format_tsv(Result(result)))
"""

# Stands in for `ppe`: records the credentials the manifest would receive.
FAKE_PPE = """#!/bin/sh
printf '%s\\n%s\\n' "$CONTAINER_REGISTRY_USERNAME" "$CONTAINER_REGISTRY_PASSWORD" > "$PPE_SAW"
"""


def _script() -> str:
    step = load(MANIFEST_STEP)["steps"][0]
    script = str(step["inputs"]["inlineScript"])
    values = {
        "keyVaultName": "kv-ppe",
        "passwordSecretName": "edge-registry-token-password",
        "platform": "amd64",
        "tag": "model3-42",
        "modelVersion": "3",
        "outFile": "out/amd64.json",
        "envFile": "environments/iotedge/.env.template",
        "kind": "layered",
    }
    for name, value in values.items():
        script = script.replace("${{ parameters." + name + " }}", value)
    assert "${{" not in script, script
    return script


def _run(tmp_path: Path, document: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], Path]:
    if not AZ_PYTHON.is_file():
        pytest.fail(f"{AZ_PYTHON} is missing: run make setup")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "fake_az.py").write_text(FAKE_AZ)
    az = tools / "az"
    az.write_text(f'#!/bin/sh\nexec "{AZ_PYTHON}" "{tools / "fake_az.py"}" "$@"\n')
    az.chmod(0o755)
    work = tmp_path / "sources"
    work.mkdir()
    # The templates' tooling step puts `ppe` first on PATH (steps/ppe_tooling.yml).
    ppe = tools / "ppe"
    ppe.write_text(FAKE_PPE)
    ppe.chmod(0o755)
    secret = tmp_path / "secret.json"
    secret.write_text(
        json.dumps(
            {"vault": "kv-ppe", "name": "edge-registry-token-password", "document": document}
        )
    )
    saw = tmp_path / "saw.txt"
    environment = {
        **os.environ,
        "PATH": f"{tools}:{os.environ['PATH']}",
        "FAKE_SECRET": str(secret),
        "PPE_SAW": str(saw),
        "CONTAINER_REGISTRY_SERVER": "ppeacr.azurecr.io",
    }
    completed = subprocess.run(
        ["bash", "-c", _script()],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed, saw


def test_user_name_and_password_come_from_the_same_secret(tmp_path: Path) -> None:
    password = "Zm9v/YmFy+cGFzcw=="  # pragma: allowlist secret
    document = {
        "id": "https://kv-ppe.vault.azure.net/secrets/edge-registry-token-password/0a1b2c",
        "value": password,
        "tags": {"acr-token": "edge-pull-odd", "workload": "ppe"},
        "contentType": "text/plain",
    }
    completed, saw = _run(tmp_path, document)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert saw.read_text().splitlines() == ["edge-pull-odd", password]
    # The agent masks the password from here on.
    assert f"##vso[task.setvariable variable=edgeRegistryPassword;issecret=true]{password}" in (
        completed.stdout
    )


def test_a_secret_without_its_token_name_stops_the_rollout(tmp_path: Path) -> None:
    # The secret as Terraform wrote it before the rotation across two tokens: no acr-token tag.
    document = {"value": "Zm9vYmFy", "tags": {"workload": "ppe"}}  # pragma: allowlist secret
    completed, saw = _run(tmp_path, document)
    assert completed.returncode == 1
    assert "lacks its value or its acr-token tag" in completed.stdout
    assert not saw.exists()
