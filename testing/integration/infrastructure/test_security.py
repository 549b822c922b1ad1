"""checkov (zero failed checks, every skip justified) and secret scanning over infrastructure/.

Both run from `.venv-checkov`: checkov bundles a fork of python-hcl2 that shadows the main
environment's `hcl2` import, so it lives in its own environment (`make setup-tools`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .terraform_config import INFRASTRUCTURE, REPO_ROOT, SETUP_HINT, Block

TOOL_ENV = REPO_ROOT / ".venv-checkov" / "bin"
# detect-secrets has an environment of its own: checkov's also installs bc-detect-secrets, a fork
# that writes the same package, so which one ran there depended on install order.
SECRETS_ENV = REPO_ROOT / ".venv-detect-secrets" / "bin"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def _tool(name: str, env: Path = TOOL_ENV) -> str:
    path = env / name
    if not path.is_file():
        pytest.fail(f"{path.relative_to(REPO_ROOT)} is missing; {SETUP_HINT}")
    return str(path)


def start_checkov(directory: Path) -> subprocess.Popen[str]:
    """Start checkov's Terraform framework, offline, over one directory (JSON on stdout)."""
    return subprocess.Popen(
        [
            _tool("checkov"),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # In-process runners: forking one worker per CPU only adds start-up time here.
        env={**os.environ, "CHECKOV_PARALLELIZATION_TYPE": "none"},
    )


def checkov_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a checkov run and return its report (one framework, so one JSON object)."""
    stdout, stderr = process.communicate(timeout=300)
    if not stdout.strip():
        pytest.fail(f"checkov printed nothing (exit {process.returncode}): {stderr}")
    report = json.loads(stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    return dict(reports[0])


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    # checkov exits 0 when HCL does not parse, so the gate is the report's parsing_errors; a
    # second run over a deliberately broken file (started in parallel) proves they are reported.
    broken = tmp_path_factory.mktemp("checkov-broken")
    (broken / "main.tf").write_text('resource "azurerm_resource_group" "x" {\n  name = \n}\n')
    runs = {"infrastructure": start_checkov(INFRASTRUCTURE), "broken": start_checkov(broken)}
    return {name: checkov_result(process) for name, process in runs.items()}


@pytest.fixture(scope="module")
def checkov_report(checkov_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return checkov_reports["infrastructure"]


def test_checkov_reports_parse_errors(checkov_reports: dict[str, dict[str, Any]]) -> None:
    assert checkov_reports["broken"]["summary"]["parsing_errors"] == 1


def test_checkov_parses_everything_and_fails_nothing(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"]["parsing_errors"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["passed"] >= 25
    assert summary["resource_count"] >= 40


def test_every_skip_is_justified_and_used(checkov_report: dict[str, Any]) -> None:
    comments: dict[tuple[str, str], str] = {}
    for path in INFRASTRUCTURE.rglob("*.tf"):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                check_id, reason = match.group(1), (match.group(2) or "").strip()
                assert len(reason) >= 30, f"{path.name}: {check_id} needs a real reason"
                comments[(path.name, check_id)] = reason
    skipped = {
        (Path(c["file_path"]).name, c["check_id"])
        for c in checkov_report["results"]["skipped_checks"]
    }
    # A skip comment that matches no skipped check is stale: the check no longer applies.
    assert set(comments) == skipped
    assert len(checkov_report["results"]["skipped_checks"]) == checkov_report["summary"]["skipped"]


def scan_secrets(root: Path, paths: list[Path]) -> dict[str, Any]:
    """Run detect-secrets (all default plugins) over files and return its baseline JSON.

    detect-secrets silently ignores files outside its working directory, so it runs in `root`
    with relative paths.
    """
    relative = [str(p.relative_to(root)) for p in paths]
    completed = subprocess.run(
        [_tool("detect-secrets", SECRETS_ENV), "scan", "--all-files", *relative],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=True,
    )
    return dict(json.loads(completed.stdout))


def test_no_secrets_in_infrastructure() -> None:
    files = sorted(
        p
        for p in INFRASTRUCTURE.rglob("*")
        if p.is_file() and ".terraform" not in p.parts and "tfstate" not in p.name
    )
    assert len(files) >= 25
    report = scan_secrets(REPO_ROOT, files)
    assert report["results"] == {}


def test_secret_scanner_finds_a_planted_credential(tmp_path: Path) -> None:
    leaked = tmp_path / "leak.tf"
    leaked.write_text(
        'provider "azuredevops" {\n'
        '  personal_access_token = "q3x9vtl2m8k4z7w1r5p0n6b2c8d4f7g1h3j5k9l2m4n6p8r0"\n'
        "}\n"
        'locals {\n  key = "AKIAIOSFODNN7EXAMPLE"\n}\n'
    )
    report = scan_secrets(tmp_path, [leaked])
    found = {finding["type"] for finding in report["results"].get("leak.tf", [])}
    assert found == {"Base64 High Entropy String", "AWS Access Key"}


FORBIDDEN_ARGUMENTS = re.compile(
    r"^\s*(is_secret|secret_value|serviceprincipalkey|serviceprincipalcertificate|client_secret"
    r"|personal_access_token|admin_password|password)\s*=",
    re.MULTILINE,
)


def test_no_secret_variables_or_credential_arguments() -> None:
    for path in INFRASTRUCTURE.rglob("*.tf"):
        text = path.read_text(encoding="utf-8")
        found = FORBIDDEN_ARGUMENTS.findall(text)
        assert found == [], f"{path.relative_to(REPO_ROOT)} sets {found}"
        assert not re.search(r"^\s*sensitive\s*=\s*true", text, re.MULTILINE), path


def test_registry_admin_user_is_off(blocks: list[Block]) -> None:
    registries = [b for b in blocks if b.labels[:1] == ("azurerm_container_registry",)]
    assert [b.body.get("admin_enabled") for b in registries] == [False]
