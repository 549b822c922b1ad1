"""The edge rollout obeys the Azure rules that would otherwise break it on a real hub.

Each test names the rule and its Microsoft documentation. The pipeline's own bash is taken from
the YAML and run here; the `az iot edge deployment` calls go to ``fake_iothub.py``, a mock of the
hub (no IoT Hub runs offline) that enforces the documented rules: Entra ID sign-in only, the
configuration quota, unique ids, jmespath ``--query`` as the Azure CLI evaluates it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .ado import PIPELINES, REPO_ROOT, flatten_items, load

STEPS = PIPELINES / "templates" / "steps"
DEPLOY_JOB = PIPELINES / "templates" / "jobs" / "edge_deploy.yml"
ROLLOUT = PIPELINES / "templates" / "stages" / "edge_rollout.yml"
ENTRY = PIPELINES / "edge_deployment_pipeline.yml"
INFRASTRUCTURE = REPO_ROOT / "infrastructure"
FAKE_HUB = Path(__file__).with_name("fake_iothub.py")
# jmespath as the Azure CLI ships it, from the hash-locked iotedgedev environment (make setup).
JMESPATH_PYTHON = REPO_ROOT / ".venv-iotedgedev" / "bin" / "python"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _inline(template: str, **parameters: Any) -> str:
    """A step template's inline bash with its `${{ parameters.x }}` replaced."""
    step = load(STEPS / template)["steps"][0]
    script = str(step["inputs"]["inlineScript"])
    for name, value in parameters.items():
        script = script.replace("${{ parameters." + name + " }}", str(value))
    assert "${{" not in script, script
    return script


def _hub(tmp_path: Path, limit: int = 100, metrics: list[dict[str, int]] | None = None) -> Path:
    state = tmp_path / "hub.json"
    state.write_text(
        json.dumps(
            {"limit": limit, "clock": 0, "deployments": [], "metrics": metrics or [],
             "polls": 0, "calls": []}
        )
    )  # fmt: skip
    return state


def _bin(tmp_path: Path) -> Path:
    if not JMESPATH_PYTHON.is_file():
        pytest.fail(f"{JMESPATH_PYTHON} is missing: run make setup")
    folder = tmp_path / "bin"
    if not folder.is_dir():
        folder.mkdir()
        az = folder / "az"
        az.write_text(f'#!/bin/sh\nexec "{JMESPATH_PYTHON}" "{FAKE_HUB}" "$@"\n')
        az.chmod(0o755)
        # A clock that advances one minute per reading, so a deadline passes without waiting.
        date = folder / "date"
        date.write_text(
            '#!/bin/bash\nn=$(cat "$FAKE_CLOCK" 2>/dev/null || echo 0)\n'
            'echo $(( n + 1 )) > "$FAKE_CLOCK"\necho $(( 1000000 + n * 60 ))\n'
        )
        date.chmod(0o755)
    return folder


def _run(
    script: str, tmp_path: Path, state: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    environment = {
        **os.environ,
        "PATH": f"{_bin(tmp_path)}:{os.environ['PATH']}",
        "FAKE_HUB_STATE": str(state),
        "FAKE_CLOCK": str(tmp_path / "clock"),
        **(env or {}),
    }
    return subprocess.run(
        ["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def _state(state: Path) -> dict[str, Any]:
    return dict(json.loads(state.read_text()))


def _az_commands(text: str) -> Iterator[str]:
    """Every `az ...` command in a script, continuation lines joined."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n\s*", " ", code)
    for match in re.finditer(r"(?<![\w-])az (iot [^\n;|)]*)", joined):
        yield match.group(1)


def _scripts_with_az_iot() -> dict[str, str]:
    texts = {}
    for path in sorted(PIPELINES.rglob("*.yml")):
        texts[str(path.relative_to(REPO_ROOT))] = path.read_text()
    for path in sorted((INFRASTRUCTURE / "scripts").glob("*.sh")):
        texts[str(path.relative_to(REPO_ROOT))] = path.read_text()
    return {name: text for name, text in texts.items() if "az iot " in text}


# ------------------------------------------------------------------------------------------------
# Defect 2: the azure-iot extension signs in with the hub's keys unless told otherwise
# ------------------------------------------------------------------------------------------------


def test_every_az_iot_hub_and_edge_call_signs_in_with_entra_id() -> None:
    """`--auth-type` defaults to `key`, which reads the hub's shared access keys
    (Microsoft.Devices/IotHubs/listkeys/action); the pipeline identity holds only the data-plane
    role IoT Hub Data Contributor, which `--auth-type login` uses.
    https://learn.microsoft.com/cli/azure/iot/edge/deployment#az-iot-edge-deployment-create
    https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-azure-ad"""
    scripts = _scripts_with_az_iot()
    assert any("edge_layered_deploy" in name for name in scripts)
    missing = [
        f"{name}: az {command.strip()[:90]}"
        for name, text in scripts.items()
        for command in _az_commands(text)
        if command.startswith(("iot hub", "iot edge")) and "--auth-type login" not in command
    ]
    assert missing == []


def test_the_layered_deployment_step_runs_against_a_hub_that_refuses_keys(tmp_path: Path) -> None:
    state = _hub(tmp_path)
    content = tmp_path / "layered.json"
    content.write_text(json.dumps({"content": {"modulesContent": {}}}))
    script = _inline(
        "edge_layered_deploy.yml", iothubName="iot-ppe-dev-ab12",
        deploymentId="ppedetector-staging-amd64-42", manifestFile=content, priority="10",
    )  # fmt: skip
    result = _run(script, tmp_path, state, {"TARGET_CONDITION": "tags.environment='staging'"})
    assert result.returncode == 0, result.stderr
    assert [d["id"] for d in _state(state)["deployments"]] == ["ppedetector-staging-amd64-42"]
    assert _state(state)["deployments"][0]["layered"] is True


# ------------------------------------------------------------------------------------------------
# Defect 1: ACR Tasks quick builds need management actions AcrPush does not have
# ------------------------------------------------------------------------------------------------

# What `az acr build` calls on the registry: upload the source, queue the run, follow it, read its
# log. https://learn.microsoft.com/azure/container-registry/container-registry-tasks-overview
# and the operations list https://learn.microsoft.com/azure/role-based-access-control/permissions/containers#microsoftcontainerregistry
QUICK_BUILD_ACTIONS = {
    "Microsoft.ContainerRegistry/registries/listBuildSourceUploadUrl/action",
    "Microsoft.ContainerRegistry/registries/scheduleRun/action",
    "Microsoft.ContainerRegistry/registries/runs/listLogSasUrl/action",
}
# Built-in definitions (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers#acrpush
# and .../general#reader): AcrPush holds pull/read and push/write, Reader holds */read.
BUILT_IN_ACTIONS = {
    "AcrPush": {
        "Microsoft.ContainerRegistry/registries/pull/read",
        "Microsoft.ContainerRegistry/registries/push/write",
    },
    "Reader": {"*/read"},
}


def _blocks(kind: str, type_name: str) -> list[tuple[str, dict[str, Any]]]:
    sys.path.insert(0, str(REPO_ROOT / "testing" / "integration"))
    from infrastructure.terraform_config import iter_blocks, parse_files, terraform_files

    parsed = parse_files([p for p in terraform_files(INFRASTRUCTURE) if p.parent == INFRASTRUCTURE])
    return [
        (block.labels[1], block.body)
        for block in iter_blocks(parsed)
        if block.kind == kind and block.labels[0] == type_name
    ]


def _granted(actions: set[str], wanted: str) -> bool:
    return any(re.fullmatch(re.escape(a).replace(r"\*", ".*"), wanted) for a in actions)


def test_the_pipeline_identity_may_run_acr_quick_builds() -> None:
    build = _inline(
        "edge_image_build.yml", registryName="cr", platform="amd64", tag="model1-1",
        moduleJson="m.json", dockerfileFolder="d",
    )  # fmt: skip
    assert "az acr build" in build
    definitions = dict(_blocks("resource", "azurerm_role_definition"))
    assignments = _blocks("resource", "azurerm_role_assignment")
    granted: set[str] = set()
    for _, body in assignments:
        if "azurerm_user_assigned_identity.pipeline" not in body["principal_id"]:
            continue
        role_id = body.get("role_definition_id", "")
        match = re.match(r"\$\{azurerm_role_definition\.(\w+)\.", role_id)
        if match and body["scope"] == "${azurerm_container_registry.this.id}":
            for permission in definitions[match.group(1)]["permissions"]:
                granted |= set(permission["actions"])
                assert not permission.get("not_actions")
    # The roles named in main.identity.tf (Reader on the group, AcrPush on the registry).
    for name in ("Reader", "AcrPush"):
        granted |= BUILT_IN_ACTIONS[name]
    missing = {a for a in QUICK_BUILD_ACTIONS if not _granted(granted, a)}
    assert missing == set()
    # Least privilege: no wildcard, nothing that writes task definitions.
    assert not any(
        "*" in a or a.endswith("/write")
        for a in granted - BUILT_IN_ACTIONS["Reader"] - BUILT_IN_ACTIONS["AcrPush"]
    )


# ------------------------------------------------------------------------------------------------
# Defect 5: the hub evaluates a new deployment shortly after creation, then every five minutes
# ------------------------------------------------------------------------------------------------

METRICS = ("targetedCount", "appliedCount", "reportedSuccessfulCount", "reportedFailedCount")


def _metrics(*rows: tuple[int, int, int, int]) -> list[dict[str, int]]:
    return [dict(zip(METRICS, row, strict=True)) for row in rows]


def _readiness(timeout: str = "10") -> str:
    return _inline(
        "edge_readiness.yml", iothubName="iot-ppe-dev-ab12", deploymentId="ppedetector-x-1",
        timeoutMinutes=timeout, pollSeconds=0,
    )  # fmt: skip


def test_readiness_waits_while_the_hub_has_not_evaluated_the_deployment(tmp_path: Path) -> None:
    """Targeted = 0 right after creation means "not evaluated yet", not "no device": IoT Hub
    evaluates a configuration's target condition shortly after creation and then every five
    minutes. https://learn.microsoft.com/azure/iot-hub/iot-hub-automatic-device-management"""
    state = _hub(tmp_path, metrics=_metrics((0, 0, 0, 0), (0, 0, 0, 0), (2, 1, 0, 0), (2, 2, 2, 0)))
    result = _run(_readiness(), tmp_path, state)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "targeted=" in line]
    assert lines[0].endswith("targeted=0 applied=0 reportedSuccess=0 reportedFailure=0")
    assert lines[-1].endswith("targeted=2 applied=2 reportedSuccess=2 reportedFailure=0")
    assert "All 2 device(s) report ppedetector-x-1 applied" in result.stdout


def test_readiness_fails_at_the_deadline_when_no_device_ever_matches(tmp_path: Path) -> None:
    state = _hub(tmp_path, metrics=_metrics((0, 0, 0, 0)))
    result = _run(_readiness("10"), tmp_path, state)
    assert result.returncode == 1
    assert "no device matched the target condition of ppedetector-x-1 within 10 minutes" in (
        result.stdout
    )
    # It polled through two evaluation cycles, not once.
    assert _state(state)["polls"] >= 10


def test_readiness_reports_counts_when_devices_lag_and_stops_on_a_failure(tmp_path: Path) -> None:
    state = _hub(tmp_path, metrics=_metrics((3, 2, 1, 0)))
    result = _run(_readiness(), tmp_path, state)
    assert result.returncode == 1
    assert (
        "targeted=3 applied=2 reportedSuccess=1 reportedFailure=0" in result.stdout.splitlines()[-1]
    )
    state = _hub(tmp_path, metrics=_metrics((3, 3, 1, 1)))
    result = _run(_readiness(), tmp_path, state)
    assert result.returncode == 1
    assert "1 of 3 device(s) report a failure" in result.stdout
    assert _state(state)["polls"] == 1


def test_readiness_refuses_a_deadline_shorter_than_two_evaluation_cycles(tmp_path: Path) -> None:
    result = _run(_readiness("5"), tmp_path, _hub(tmp_path))
    assert result.returncode == 1
    assert "use at least 10" in result.stdout
    for name in ("staging", "production"):
        variables = load(PIPELINES / "variables" / f"{name}.yml")["variables"]
        timeout = next(v["value"] for v in variables if v["name"] == "edgeReadinessTimeoutMinutes")
        assert int(timeout) >= 10, f"{name}: readiness timeout {timeout} minutes"


# ------------------------------------------------------------------------------------------------
# Defect 4: a hub holds 100 configurations (10 on the free tier); every build makes new ones
# ------------------------------------------------------------------------------------------------


def _job_steps() -> list[dict[str, Any]]:
    job = load(DEPLOY_JOB)["jobs"][0]
    return [s for s in flatten_items(job["strategy"]["runOnce"]["deploy"]["steps"])
            if isinstance(s, dict)]  # fmt: skip


def _per_platform() -> list[dict[str, Any]]:
    job = load(DEPLOY_JOB)["jobs"][0]
    steps = job["strategy"]["runOnce"]["deploy"]["steps"]
    return next(v for s in steps if isinstance(s, dict) for k, v in s.items() if "each" in k)


def _rollout_shape() -> tuple[list[str], list[str]]:
    """(environments, platforms) the entry pipeline rolls out to."""
    platforms = load(ENTRY)["extends"]["parameters"]["platforms"]
    text = ROLLOUT.read_text()
    environments = re.findall(r"^\s+environment: (\w+)$", text, flags=re.MULTILINE)
    return environments, platforms


def _terraform_limits() -> tuple[dict[str, int], int]:
    sys.path.insert(0, str(REPO_ROOT / "testing" / "integration"))
    from infrastructure.terraform_config import iter_blocks, parse_files

    parsed = parse_files([INFRASTRUCTURE / "main.edge.tf", INFRASTRUCTURE / "variables.tf"])
    limits: dict[str, int] = {}
    default = -1
    for block in iter_blocks(parsed):
        if block.kind == "locals" and "iothub_max_configurations" in block.body:
            limits = {k: int(v) for k, v in block.body["iothub_max_configurations"].items()}
        if block.kind == "variable" and block.labels[0] == "edge_deployments_to_keep":
            default = int(block.body["default"])
    return limits, default


def _prune(tmp_path: Path, state: Path, prefix: str, keep: int, current: str = "") -> None:
    script = _inline(
        "edge_prune_deployments.yml", iothubName="iot", prefix=prefix, keep=keep, current=current
    )
    result = _run(script, tmp_path, state)
    assert result.returncode == 0, result.stdout + result.stderr


def _create(tmp_path: Path, state: Path, ident: str, content: Path, layered: bool) -> None:
    if layered:
        script = _inline(
            "edge_layered_deploy.yml", iothubName="iot", deploymentId=ident,
            manifestFile=content, priority="10",
        )  # fmt: skip
    else:
        script = _inline(
            "edge_base_deploy.yml", iothubName="iot", environment=ident, manifestFile=content,
            priority="0", idVariable="edgeBaseDeploymentId",
        )  # fmt: skip
    result = _run(script, tmp_path, state, {"TARGET_CONDITION": "tags.environment='x'"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_prune_keeps_the_newest_and_the_current_and_leaves_other_prefixes_alone(
    tmp_path: Path,
) -> None:
    state = _hub(tmp_path)
    content = tmp_path / "c.json"
    content.write_text("{}")
    for build in range(1, 6):
        _create(tmp_path, state, f"ppedetector-staging-amd64-{build}", content, layered=True)
    _create(tmp_path, state, "ppedetector-staging-arm64v8-1", content, layered=True)
    _create(tmp_path, state, "ppedetector-production-amd64-1", content, layered=True)
    _prune(tmp_path, state, "ppedetector-staging-amd64-", keep=2)
    ids = {d["id"] for d in _state(state)["deployments"]}
    assert ids == {
        "ppedetector-staging-amd64-5", "ppedetector-staging-amd64-4",
        "ppedetector-staging-arm64v8-1", "ppedetector-production-amd64-1",
    }  # fmt: skip
    _prune(
        tmp_path, state, "ppedetector-staging-amd64-", keep=0, current="ppedetector-staging-amd64-4"
    )
    assert "ppedetector-staging-amd64-4" in {d["id"] for d in _state(state)["deployments"]}
    assert "ppedetector-staging-amd64-5" not in {d["id"] for d in _state(state)["deployments"]}
    bad = _run(_inline("edge_prune_deployments.yml", iothubName="iot", prefix="ppedetector-",
                       keep="two", current=""), tmp_path, state)  # fmt: skip
    assert bad.returncode == 1 and "whole number" in bad.stdout


def _rollout(tmp_path: Path, state: Path, environment: str, platforms: list[str], build: int,
             keep: int, base_content: Path) -> None:  # fmt: skip
    """The deploy job's hub calls in the job's order (checked by the next test)."""
    base = tmp_path / "base-id"
    script = _inline(
        "edge_base_deploy.yml", iothubName="iot", environment=environment,
        manifestFile=base_content, priority="0", idVariable="edgeBaseDeploymentId",
    )  # fmt: skip
    result = _run(script, tmp_path, state, {"TARGET_CONDITION": "x"})
    assert result.returncode == 0, result.stdout + result.stderr
    base.write_text(re.search(r"variable=edgeBaseDeploymentId\](\S+)", result.stdout).group(1))
    for platform in platforms:
        _prune(tmp_path, state, f"ppedetector-{environment}-{platform}-", keep)
        _create(tmp_path, state, f"ppedetector-{environment}-{platform}-{build}", base_content,
                layered=True)  # fmt: skip
    _prune(tmp_path, state, f"ppe-base-{environment}-", 0, current=base.read_text())


def test_the_job_prunes_before_it_creates_and_drops_the_old_base_last() -> None:
    steps = [str(s.get("template", "")).rsplit("/", 1)[-1] for s in _job_steps()]
    per_platform = [str(s.get("template", "")).rsplit("/", 1)[-1] for s in _per_platform()]
    assert steps.index("edge_base_deploy.yml") < steps.index("edge_readiness.yml")
    assert per_platform.index("edge_prune_deployments.yml") < per_platform.index(
        "edge_layered_deploy.yml"
    )
    assert steps[-1] == "edge_prune_deployments.yml"
    last = _job_steps()[-1]["parameters"]
    assert last["keep"] == "0" and last["current"] == "$(edgeBaseDeploymentId)"
    assert last["prefix"] == "ppe-base-${{ parameters.environment }}-"


@pytest.mark.parametrize("tier", ["F1", "S1"])
def test_repeated_rollouts_stay_within_the_hub_configuration_quota(
    tmp_path: Path, tier: str
) -> None:
    """Repeated builds rolled out to every environment and platform never exceed the tier's quota
    (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling), with the
    number of kept deployments Terraform puts in the variable group for that tier (the free-tier
    example sets 0)."""
    limits, default_keep = _terraform_limits()
    assert limits == {"F1": 10, "S1": 100, "S2": 100, "S3": 100}
    example = (INFRASTRUCTURE / "examples" / "dev_low_cost" / "main.tf").read_text()
    assert re.search(r'iothub_sku_name\s*=\s*"F1"', example)
    keep = int(re.search(r"edge_deployments_to_keep\s*=\s*(\d+)", example).group(1)) if (
        tier == "F1") else default_keep  # fmt: skip
    environments, platforms = _rollout_shape()
    assert environments == ["staging", "production"] and len(platforms) == 2
    state = _hub(tmp_path, limit=limits[tier])
    base_v1 = tmp_path / "base1.json"
    base_v1.write_text(json.dumps({"ttl": 86400}))
    base_v2 = tmp_path / "base2.json"
    base_v2.write_text(json.dumps({"ttl": 172800}))
    peak = 0
    for build in range(1, 6 if tier == "F1" else 8):
        content = base_v1 if build < 4 else base_v2  # the base changes once, at build 4
        for environment in environments:
            _rollout(tmp_path, state, environment, platforms, build, keep, content)
            peak = max(peak, len(_state(state)["deployments"]))
    final = {d["id"] for d in _state(state)["deployments"]}
    assert peak <= limits[tier]
    # Steady state: one base per environment, keep + 1 layered per environment and platform.
    assert len(final) == len(environments) * (1 + len(platforms) * (keep + 1))
    assert f"ppedetector-production-arm64v8-{build}" in final


# ------------------------------------------------------------------------------------------------
# Defect 3: layered deployments need a base deployment on every targeted device
# ------------------------------------------------------------------------------------------------


def _render(tmp_path: Path, kind: str) -> dict[str, Any]:
    import os

    out = tmp_path / f"{kind}.json"
    env = {
        **os.environ,
        "CONTAINER_REGISTRY_SERVER": "crppedev0a1b.azurecr.io",
        "CONTAINER_REGISTRY_USERNAME": "edge-pull",
        "CONTAINER_REGISTRY_PASSWORD": "not-a-real-password",  # pragma: allowlist secret
    }
    command = [
        sys.executable, "-m", "ppe", "edge", "manifest", "--platform", "amd64",
        "--tag", "model3-7", "--model-version", "3",
        "--env-file", "environments/iotedge/.env.template", "--out", str(out),
    ] + ([f"--{kind}"] if kind != "full" else [])  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(out.read_text()))


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """IoT Hub's merge of a layered deployment into a base: dotted paths set nested keys."""
    merged = json.loads(json.dumps(base))
    for module, sections in layer.items():
        target = merged.setdefault(module, {})
        for path, value in sections.items():
            keys = path.replace("properties.desired.", "properties.desired\0", 1).split("\0")
            head, rest = keys[0], keys[1].split(".") if len(keys) > 1 else []
            node = target.setdefault(head, {})
            for key in rest[:-1]:
                node = node.setdefault(key, {})
            if rest:
                node[rest[-1]] = value
            else:
                target[head] = value
    return merged


def test_base_plus_layered_is_the_full_manifest_and_the_base_holds_the_runtime(
    tmp_path: Path,
) -> None:
    """The base brings edgeAgent and edgeHub 1.6 (1.5 left support on 2026-11-10), edgeHub's store
    on a host folder (https://learn.microsoft.com/azure/iot-edge/how-to-access-host-storage-from-module)
    and the store-and-forward time-to-live; the layered deployment adds only the module
    (https://learn.microsoft.com/azure/iot-edge/module-deployment-monitoring#layered-deployment)."""
    full = _render(tmp_path, "full")["modulesContent"]
    base = _render(tmp_path, "base")["content"]["modulesContent"]
    layered = _render(tmp_path, "layered")["content"]["modulesContent"]
    assert _merge(base, layered) == full
    agent = base["$edgeAgent"]["properties.desired"]
    hub = base["$edgeHub"]["properties.desired"]
    assert agent["modules"] == {} and "ppedetector" not in base
    assert "registryCredentials" not in agent["runtime"]["settings"]
    assert agent["systemModules"]["edgeAgent"]["settings"]["image"].endswith(":1.6")
    edge_hub = agent["systemModules"]["edgeHub"]
    assert edge_hub["settings"]["image"].endswith(":1.6")
    folder = edge_hub["env"]["storageFolder"]["value"]
    binds = json.loads(edge_hub["settings"]["createOptions"])["HostConfig"]["Binds"]
    env_template = (REPO_ROOT / "environments" / "iotedge" / ".env.template").read_text()
    host = re.search(r"^EDGEHUB_HOST_STORE_DIR=(\S+)$", env_template, re.MULTILINE).group(1)
    assert binds == [f"{host}:{folder}"]
    ttl = re.search(r"^EDGEHUB_STORE_FORWARD_TTL_SECS=(\d+)$", env_template, re.MULTILINE)
    assert hub["storeAndForwardConfiguration"]["timeToLiveSecs"] == int(ttl.group(1))
    assert hub["routes"] == {}


def test_the_base_deployment_id_follows_its_content(tmp_path: Path) -> None:
    state = _hub(tmp_path)
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"a": 1, "b": 2}))
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"b": 2, "a": 1}, indent=2))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1, "b": 3}))
    _create(tmp_path, state, "staging", one, layered=False)
    _create(tmp_path, state, "staging", same, layered=False)  # same content: left alone
    assert len(_state(state)["deployments"]) == 1
    _create(tmp_path, state, "staging", other, layered=False)
    deployments = _state(state)["deployments"]
    assert len(deployments) == 2
    assert all(re.fullmatch(r"ppe-base-staging-[0-9a-f]{12}", d["id"]) for d in deployments)
    assert not any(d["layered"] for d in deployments)


def test_devices_are_configured_only_by_automatic_deployments() -> None:
    """A device's modules are set either per device or by automatic deployments, not both
    (https://learn.microsoft.com/azure/iot-edge/module-deployment-monitoring): nothing the
    project ships or documents calls `az iot edge set-modules`."""
    places = [*PIPELINES.rglob("*.yml"), *(INFRASTRUCTURE / "scripts").glob("*"),
              *(REPO_ROOT / "notebooks").glob("*.ipynb"),
              REPO_ROOT / "environments" / "iotedge" / "README.md",
              INFRASTRUCTURE / "README.md", REPO_ROOT / "README.md"]  # fmt: skip
    offenders = [
        str(p.relative_to(REPO_ROOT))
        for p in places
        if p.is_file() and re.search(r"iot edge set-modules\s+(\\\s*)?--", p.read_text())
    ]
    assert offenders == []
