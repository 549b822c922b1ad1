"""`.pre-commit-config.yaml`: local hooks only, every entry present or pinned, the wrappers work.

pre-commit itself is not run here (it would install hook environments); the hooks' commands are
checked instead, and the small wrapper scripts are exercised directly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG = REPO_ROOT / ".pre-commit-config.yaml"
TOOLS = REPO_ROOT / "testing" / "tools"
REQUIRED_HOOKS = {
    "ruff",
    "ruff-format",
    "mypy",
    "nbstripout",
    "yamllint",
    "checkov",
    "detect-secrets",
    "hclfmt",
    "terraform-fmt",
}
PINNED = re.compile(r"^[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.+-]*$")


def hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def test_every_repo_is_local_so_hooks_run_offline() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"] * len(config["repos"])
    assert {hook["id"] for hook in hooks()} == REQUIRED_HOOKS


@pytest.mark.parametrize("hook", hooks(), ids=lambda hook: hook["id"])
def test_hook_entry_exists_or_is_pinned(hook: dict[str, Any]) -> None:
    argv = shlex.split(hook["entry"])
    language = hook["language"]
    assert language in {"system", "script", "python"}, language
    if language == "python":
        dependencies = hook.get("additional_dependencies", [])
        assert dependencies, f"{hook['id']}: a python hook needs pinned additional_dependencies"
        for requirement in dependencies:
            assert PINNED.match(requirement), f"{hook['id']}: {requirement!r} is not pinned with =="
        assert argv[0] in {re.split("==", dep)[0] for dep in dependencies}
        return
    executable = REPO_ROOT / argv[0]
    assert executable.is_file(), f"{hook['id']}: {argv[0]} is missing (run `make setup`)"
    assert os.access(executable, os.X_OK), f"{hook['id']}: {argv[0]} is not executable"
    for argument in argv[1:]:
        if argument.endswith((".py", ".sh", ".mjs")):
            assert (REPO_ROOT / argument).is_file(), f"{hook['id']}: {argument} is missing"
    for key in ("files", "exclude"):
        if key in hook:
            re.compile(hook[key])


def test_system_hooks_use_the_project_environments() -> None:
    by_id = {hook["id"]: hook for hook in hooks()}
    # The same tools as `make lint`, from the environment uv.lock pins.
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for hook_id, command in (
        ("ruff", "ruff check"),
        ("ruff-format", "ruff format"),
        ("mypy", "mypy"),
    ):
        assert by_id[hook_id]["entry"].startswith(f".venv/bin/{command}")
        assert f"$(VENV)/bin/{command}" in makefile
    assert by_id["mypy"]["pass_filenames"] is False
    # checkov and detect-secrets each come from their own environment: checkov shadows
    # python-hcl2, and its bc-detect-secrets fork overwrites detect-secrets' own package.
    assert ".venv-detect-secrets/bin/detect-secrets-hook" in by_id["detect-secrets"]["entry"]
    assert "--baseline .secrets.baseline" in by_id["detect-secrets"]["entry"]
    assert "precommit_checkov.py" in by_id["checkov"]["entry"]


def test_yamllint_config_is_used_and_valid() -> None:
    entry = next(hook["entry"] for hook in hooks() if hook["id"] == "yamllint")
    assert "--config-file .yamllint.yaml" in entry
    config = yaml.safe_load((REPO_ROOT / ".yamllint.yaml").read_text(encoding="utf-8"))
    assert config["extends"] == "default"
    assert config["rules"]["line-length"]["max"] == 100


def test_secrets_baseline_lists_only_reviewed_findings() -> None:
    baseline = json.loads((REPO_ROOT / ".secrets.baseline").read_text(encoding="utf-8"))
    assert baseline["plugins_used"], "the baseline must record the plugins it was made with"
    for path, findings in baseline["results"].items():
        assert (REPO_ROOT / path).is_file(), f"{path} is in the baseline but not in the tree"
        for finding in findings:
            assert finding.get("is_secret") is False, f"{path}: unreviewed {finding['type']}"


def run_terraform_fmt(path_dirs: list[Path], target: Path) -> subprocess.CompletedProcess[str]:
    script = TOOLS / "precommit_terraform_fmt.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(script), str(target)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": os.pathsep.join(str(d) for d in path_dirs)},
        timeout=60,
        check=False,
    )


def test_terraform_fmt_hook_says_it_skips_without_terraform(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    target = tmp_path / "main.tf"
    target.write_text('locals {\n  a = "x"\n}\n')
    result = run_terraform_fmt([empty], target)
    assert result.returncode == 0
    assert "terraform not installed: skipped" in result.stdout


def test_terraform_fmt_hook_checks_with_a_terraform_on_path(tmp_path: Path) -> None:
    # A stand-in `terraform` that records its arguments and fails like `fmt -check` does.
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir()
    log = tmp_path / "args.txt"
    fake.write_text(f'#!/bin/sh\necho "$@" > {log}\nexit 3\n')
    fake.chmod(0o755)
    target = tmp_path / "main.tf"
    target.write_text("locals {}\n")
    result = run_terraform_fmt([fake.parent, Path("/bin"), Path("/usr/bin")], target)
    assert result.returncode == 3
    assert log.read_text().split() == ["fmt", "-check", "-diff", str(target)]
    assert target.read_text() == "locals {}\n"


def hclfmt(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOLS / "precommit_hclfmt.py"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hclfmt_hook_passes_formatted_and_diffs_unformatted_hcl(tmp_path: Path) -> None:
    if not (TOOLS / "node_modules" / "@cdktf" / "hcl-tools").is_dir():
        pytest.fail("testing/tools/node_modules lacks @cdktf/hcl-tools: run `make setup-node`")
    good = tmp_path / "good.tf"
    good.write_text('locals {\n  name = "ppe"\n  id   = 1\n}\n')
    bad = tmp_path / "bad.tf"
    bad.write_text('locals {\nname = "ppe"\n  id = 1\n}\n')
    assert hclfmt(good).returncode == 0
    result = hclfmt(good, bad)
    assert result.returncode == 1
    assert '-name = "ppe"' in result.stderr and '+  name = "ppe"' in result.stderr
    assert "good.tf" not in result.stderr
    assert bad.read_text() == 'locals {\nname = "ppe"\n  id = 1\n}\n'  # reported, not rewritten


def test_checkov_hook_reports_failed_checks_and_parse_errors() -> None:
    sys.path.insert(0, str(TOOLS))
    try:
        from precommit_checkov import problems
    finally:
        sys.path.remove(str(TOOLS))
    report = {
        "results": {
            "parsing_errors": ["/x/broken.tf"],
            "failed_checks": [
                {
                    "check_id": "CKV_AZURE_1",
                    "file_path": "/main.tf",
                    "file_line_range": [3, 9],
                    "resource": "azurerm_storage_account.this",
                    "check_name": "Ensure something",
                }
            ],
        }
    }
    assert problems(report) == [
        "does not parse: /x/broken.tf",
        "CKV_AZURE_1 /main.tf:3 azurerm_storage_account.this: Ensure something",
    ]
    assert problems({"results": {"parsing_errors": [], "failed_checks": []}}) == []
