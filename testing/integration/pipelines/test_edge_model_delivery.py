"""The model reaches the device inside the module image: the edge deployment pipeline stages the
export in the build context before `az acr build`, tags the image with the model version, and
refuses a manifest whose image or MODEL_VERSION is not the one built.

The scripts are taken from the YAML and run here (bash and the real `ppe` CLI), not only read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .ado import PIPELINES, REPO_ROOT, flatten_items, load

PACKAGE_JOB = PIPELINES / "templates" / "jobs" / "edge_package.yml"
IMAGE_BUILD = PIPELINES / "templates" / "steps" / "edge_image_build.yml"
ENVIRONMENT_STAGE = PIPELINES / "templates" / "stages" / "edge_environment.yml"
DEPLOY_JOB = PIPELINES / "templates" / "jobs" / "edge_deploy.yml"
MODULE_JSON = REPO_ROOT / "environments" / "iotedge" / "modules" / "ppedetector" / "module.json"
LOGIN_SERVER = "crppedev0a1b.azurecr.io"


def _package_steps() -> list[dict[str, Any]]:
    job = load(PACKAGE_JOB)["jobs"][0]
    return [step for step in flatten_items(job["steps"]) if isinstance(step, dict)]


def _index(steps: list[dict[str, Any]], predicate: Any) -> list[int]:
    return [i for i, step in enumerate(steps) if predicate(step)]


def _ppe_export_out(steps: list[dict[str, Any]]) -> str:
    export = next(s["script"] for s in steps if "ppe export" in str(s.get("script", "")))
    match = re.search(r'--out\s+"([^"]+)"', export)
    assert match, export
    return match.group(1)


def test_the_export_is_staged_in_the_build_context_before_the_images_are_built() -> None:
    steps = _package_steps()
    export_out = _ppe_export_out(steps)
    exported = _index(steps, lambda s: "ppe export" in str(s.get("script", "")))
    published = _index(steps, lambda s: s.get("artifact") == "edge-model")
    staged = _index(steps, lambda s: "stage_model.sh" in str(s.get("script", "")))
    builds = _index(steps, lambda s: str(s.get("template", "")).endswith("edge_image_build.yml"))
    # (one build step template, repeated by `${{ each platform }}`)
    assert len(exported) == len(published) == len(staged) == len(builds) == 1
    # export -> publish (the edge-model artifact) -> stage that same folder -> every image build
    assert exported[0] < published[0] < staged[0] < min(builds)
    assert steps[published[0]]["publish"] == export_out
    script = steps[staged[0]]["script"]
    # stage_model.sh and the build context are the templates repository's (ppe_tooling.yml puts
    # it at $(ppeTooling): this repository here, the pinned checkout in a consumer's job).
    assert script == f'bash "$(ppeTooling)/environments/docker/stage_model.sh" "{export_out}"'
    assert (REPO_ROOT / "environments" / "docker" / "stage_model.sh").is_file()
    assert all(steps[i]["parameters"]["buildContext"] == "$(ppeTooling)" for i in builds)
    # The build step checks <dockerfileFolder>/model, which is where stage_model.sh (kept next
    # to the Dockerfiles) writes.
    folder = next(p for p in load(IMAGE_BUILD)["parameters"] if p["name"] == "dockerfileFolder")
    assert (REPO_ROOT / folder["default"] / "stage_model.sh").is_file()
    assert (
        "${{ parameters.dockerfileFolder }}/model/"
        in load(IMAGE_BUILD)["steps"][0]["inputs"]["inlineScript"]
    )


def _champion_step() -> dict[str, Any]:
    return next(s for s in _package_steps() if s.get("name") == "champion")


def _run_champion(tmp_path: Path, version: str, tag: str) -> dict[str, str]:
    """Run the champion step's bash as the agent would, returning the variables it sets."""
    edge_out = tmp_path / "edge"
    edge_out.mkdir()
    (edge_out / "model_version").write_text(f"{version}\n")
    script = _champion_step()["script"]
    script = script.replace("$(edgeOut)", str(edge_out)).replace("${{ parameters.tag }}", tag)
    assert "$(" not in script.replace('"$(cat', ""), script
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    variables = {}
    for match in re.finditer(
        r"##vso\[task\.setvariable variable=(\w+)(;isOutput=true)?\](.*)", result.stdout
    ):
        key = match.group(1) + (" (output)" if match.group(2) else "")
        variables[key] = match.group(3)
    return variables


def test_the_image_tag_names_the_model_version(tmp_path: Path) -> None:
    variables = _run_champion(tmp_path, "7", "20261124.3")
    assert variables == {
        "modelVersion (output)": "7",
        "imageTag (output)": "model7-20261124.3",
        "imageTag": "model7-20261124.3",
    }
    # The image builds take that tag; the build step refuses a tag without a model version.
    builds = [
        s for s in _package_steps() if str(s.get("template", "")).endswith("edge_image_build.yml")
    ]
    assert {s["parameters"]["tag"] for s in builds} == {"$(imageTag)"}
    inline = load(IMAGE_BUILD)["steps"][0]["inputs"]["inlineScript"]
    pattern = re.search(r"=~ (\S+) \]\]", inline)
    assert pattern, "edge_image_build.yml no longer checks the tag"

    def accepted(tag: str) -> bool:
        test = f'tag={tag!r}; [[ "${{tag}}" =~ {pattern.group(1)} ]]'
        return subprocess.run(["bash", "-c", test], timeout=10, check=False).returncode == 0

    assert accepted(variables["imageTag"])
    assert not accepted("20261124.3")
    assert not accepted("model-20261124.3")


def test_deploy_stages_read_tag_and_version_from_the_same_package_step() -> None:
    stage = load(ENVIRONMENT_STAGE)["stages"][0]
    variables = {v["name"]: v["value"] for v in stage["variables"] if "name" in v}
    assert variables["modelVersion"] == (
        "$[ stageDependencies.package.package.outputs['champion.modelVersion'] ]"
    )
    assert variables["imageTag"] == (
        "$[ stageDependencies.package.package.outputs['champion.imageTag'] ]"
    )
    arguments = stage["jobs"][0]["parameters"]
    assert arguments["imageTag"] == "$(imageTag)"
    assert arguments["modelVersion"] == "$(modelVersion)"
    job = load(DEPLOY_JOB)["jobs"][0]
    steps = job["strategy"]["runOnce"]["deploy"]["steps"]
    per_platform = next(
        v for s in steps if isinstance(s, dict) for k, v in s.items() if "each" in k
    )
    manifest = next(s for s in per_platform if s["template"].endswith("edge_manifest.yml"))
    assert manifest["parameters"]["tag"] == "${{ parameters.imageTag }}"
    assert manifest["parameters"]["modelVersion"] == "${{ parameters.modelVersion }}"


def _deploy_check() -> tuple[str, str]:
    """The deploy job's manifest check: (the bash that builds the reference, its Python)."""
    job = load(DEPLOY_JOB)["jobs"][0]
    steps = job["strategy"]["runOnce"]["deploy"]["steps"]
    per_platform = next(
        v for s in steps if isinstance(s, dict) for k, v in s.items() if "each" in k
    )
    check = next(
        s for s in per_platform if "Check the" in str(s.get("parameters", {}).get("displayName"))
    )
    script = check["parameters"]["script"]
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", script, flags=re.DOTALL)
    assert match, script
    return script, match.group(1)


def _render(tmp_path: Path, image_tag: str, model_version: str, platform: str) -> Path:
    """`ppe edge manifest --layered` exactly as edge_manifest.yml runs it."""
    out = tmp_path / f"{platform}.json"
    env = {
        **os.environ,
        "CONTAINER_REGISTRY_SERVER": LOGIN_SERVER,
        "CONTAINER_REGISTRY_USERNAME": "edge-pull",
        "CONTAINER_REGISTRY_PASSWORD": "not-a-real-password",  # pragma: allowlist secret
    }
    command = [
        sys.executable, "-m", "ppe", "edge", "manifest", "--platform", platform,
        "--tag", image_tag, "--model-version", model_version,
        "--env-file", "environments/iotedge/.env.template", "--out", str(out), "--layered",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def _check(manifest: Path, image_tag: str, model_version: str, platform: str) -> Any:
    _, python = _deploy_check()
    module = json.loads(MODULE_JSON.read_text())["image"]
    repository = module["repository"].rsplit("/", 1)[-1].lower()
    image = f"{LOGIN_SERVER}/{repository}:{module['tag']['version']}-{image_tag}-{platform}"
    return subprocess.run(
        [sys.executable, "-c", python, str(manifest), image, model_version],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("platform", ["amd64", "arm64v8"])
def test_the_deploy_check_accepts_the_manifest_of_the_built_image(
    tmp_path: Path, platform: str
) -> None:
    script, _ = _deploy_check()
    assert 'reference="${repository}:${version}-${{ parameters.imageTag }}-${{ platform }}"' in (
        script
    )
    manifest = _render(tmp_path, "model7-20261124.3", "7", platform)
    result = _check(manifest, "model7-20261124.3", "7", platform)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_deploy_check_refuses_a_manifest_for_another_model(tmp_path: Path) -> None:
    # Rendered for model 8, while the package job built model 7 into the image.
    manifest = _render(tmp_path, "model7-20261124.3", "8", "amd64")
    result = _check(manifest, "model7-20261124.3", "7", "amd64")
    assert result.returncode == 1
    assert "MODEL_VERSION 8 is not the baked-in model 7" in result.stdout
    # An image from another build (or without the model in its tag) is refused too.
    manifest = _render(tmp_path, "20261124.3", "7", "amd64")
    result = _check(manifest, "20261124.3", "7", "amd64")
    assert result.returncode == 1
    assert "does not name model version 7" in result.stdout
    manifest = _render(tmp_path, "model7-20261124.2", "7", "amd64")
    result = _check(manifest, "model7-20261124.3", "7", "amd64")
    assert result.returncode == 1
    assert "is not crppedev0a1b.azurecr.io/ppedetector:" in result.stdout
