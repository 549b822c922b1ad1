"""Static checks of the edge module Dockerfiles (no Docker engine here), the model they bake in
(staged by environments/docker/stage_model.sh) and its agreement with the deployment template."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ppe.config import EdgeConfig
from ppe.edge.runtime import SPEC_FILE
from ppe.export import INT8_FILE
from ppe.iotedge import manifest as m
from ppe.iotedge.staging import MODEL_FILES, STAGED_MODEL_DIR
from ppe.run.documents import ClassThresholds
from ppe.run.layout import LABELS_FILE, THRESHOLDS_FILE

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKER_DIR = REPO_ROOT / "environments" / "docker"
TEMPLATE = REPO_ROOT / "environments" / "iotedge" / "deployment.template.json"
REQUIREMENTS = DOCKER_DIR / "requirements-edge.txt"
STAGE_SCRIPT = DOCKER_DIR / "stage_model.sh"
# Where stage_model.sh puts the exported model inside the build context (ignored by git).
MODEL_CONTEXT = STAGED_MODEL_DIR
UV = REPO_ROOT / ".tools" / "bin" / "uv"
PLATFORMS = ("amd64", "arm64v8")
# The `ppe` command the scripts run (stage_model.sh and build_image.sh read PPE).
PPE = f"{sys.executable} -m ppe"
Steps = list[tuple[str, str]]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, f"{path.name}: dangling line continuation"
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def stages(steps: Steps) -> list[tuple[str, str | None, Steps]]:
    """(FROM image or stage, stage name or None, the stage's instructions) of each build stage."""
    found: list[tuple[str, str | None, Steps]] = []
    for keyword, args in steps:
        if keyword == "FROM":
            base, *name = re.split(r" as ", args, flags=re.IGNORECASE)
            found.append((base, name[0] if name else None, []))
        elif found:
            found[-1][2].append((keyword, args))
    return found


def stage_names(steps: Steps) -> set[str]:
    return {name for _, name, _ in stages(steps) if name}


@pytest.fixture(params=PLATFORMS)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[tuple[str, str]]]:
    platform: str = request.param
    return platform, instructions(DOCKER_DIR / f"Dockerfile.{platform}")


def test_base_image_is_slim_python_3_11_pinned_by_version(
    dockerfile: tuple[str, list[tuple[str, str]]],
) -> None:
    platform, steps = dockerfile
    # One stage starts from an image; the others from it (the same base for the install stage and
    # the image, so the installed paths and scripts hold in the image).
    images = [base for base, _, _ in stages(steps) if base not in stage_names(steps)]
    assert len(images) == 1
    # FROM ${BASE_IMAGE}: the default of the ARG before it is the official image for users;
    # `make edge-image` passes a base made locally from Debian's packages.
    if images[0] == "${BASE_IMAGE}":
        defaults = [args.split("=", 1)[1] for keyword, args in steps if keyword == "ARG"]
        images = [next(value for value in defaults if "python:" in value)]
    prefix = "arm64v8/" if platform == "arm64v8" else ""
    match = re.fullmatch(
        rf"{re.escape(prefix)}python:(3\.11\.\d+)-slim(-\w+)?(?P<digest>@sha256:[0-9a-f]{{64}})?",
        images[0],
    )
    assert match, f"Dockerfile.{platform}: FROM {images[0]} is not a pinned 3.11 slim tag"
    assert "latest" not in images[0]
    # The official multi-platform index is pinned by digest (the one this repository could find);
    # a digest in a FROM is what `docker build` verifies the pulled index against:
    # https://docs.docker.com/reference/dockerfile/#from
    if platform == "amd64":
        assert match["digest"], "Dockerfile.amd64: pin the default base image by digest"


def test_runs_as_a_non_root_user(dockerfile: tuple[str, list[tuple[str, str]]]) -> None:
    platform, steps = dockerfile
    users = [(index, args) for index, (keyword, args) in enumerate(steps) if keyword == "USER"]
    assert users, f"Dockerfile.{platform} has no USER"
    index, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    entrypoint = next(i for i, (keyword, _) in enumerate(steps) if keyword == "ENTRYPOINT")
    assert index < entrypoint
    uid = user.split(":")[0]
    created = next(args for keyword, args in steps if keyword == "RUN" and "useradd" in args)
    assert f"--uid {uid}" in created


def test_installs_only_the_edge_layer_wheel_and_no_tensorflow(
    dockerfile: tuple[str, list[tuple[str, str]]],
) -> None:
    platform, steps = dockerfile
    text = (DOCKER_DIR / f"Dockerfile.{platform}").read_text()
    assert "tensorflow" not in " ".join(args.lower() for _, args in steps)
    installs = [
        command
        for keyword, args in steps
        if keyword == "RUN"
        for command in args.split("&&")
        if "pip install" in command
    ]
    assert len(installs) == 3, installs
    # The build backends first, into the install stage's own Python, then the locked packages,
    # both hash-checked; every build runs without build isolation, on those backends. The locked
    # packages and the wheel go to staging roots, all of them even where the stage's Python has
    # one already, and only those roots reach the image (test_the_image_stage_copies_...).
    assert "--require-hashes" in installs[0] and "requirements-build.txt" in installs[0]
    assert "--root" not in installs[0]
    assert "--require-hashes" in installs[1] and "requirements-edge.txt" in installs[1]
    assert "--no-build-isolation" in installs[1] and "--ignore-installed" in installs[1]
    assert re.search(r"--root /\S+", installs[1])
    # The package itself only as the ppe-edge wheel of the edge layer, built in the same RUN
    # (testing/unit/edge/test_edge_package.py proves what that wheel holds).
    assert re.search(
        r"pip install --no-deps --no-index --root /\S+ dist/ppe_edge-\*-py3-none-any\.whl\s*$",
        installs[2].strip(),
    )
    build = next(args for keyword, args in steps if keyword == "RUN" and "ppe_edge-" in args)
    assert "from ppe.iotedge.package import build_edge_wheel" in build
    assert "pip check" in text


def test_the_image_stage_copies_only_the_installed_packages(
    dockerfile: tuple[str, Steps],
) -> None:
    # A layer keeps what it added even when a later layer deletes it: the requirements, the
    # wheelhouse, the build backends and the source stay in the install stage, and the image's
    # stage copies only the staging roots that stage installed into
    # (https://docs.docker.com/build/building/multi-stage/).
    platform, steps = dockerfile
    *earlier, (image_base, _, image) = stages(steps)
    assert earlier, f"Dockerfile.{platform}: build the packages in a stage of their own"
    names = [name for _, name, _ in earlier]
    assert image_base in names, "the image starts from the same base as the install stage"
    installed = {
        root
        for _, _, stage in earlier
        for keyword, args in stage
        if keyword == "RUN"
        for root in re.findall(r"pip install [^&]*--root (\S+)", args)
    }
    copies = [args for keyword, args in image if keyword == "COPY"]
    from_stages = [args for args in copies if args.startswith("--from=")]
    for args in from_stages:
        match = re.fullmatch(r"--from=(\S+) (\S+) (\S+)", args)
        assert match, args
        stage, source, destination = match.groups()
        assert stage in names, args
        assert source.rstrip("/") in installed and destination == "/", args
    assert {re.split(r"\s", a)[1].rstrip("/") for a in from_stages} == installed
    # Besides the installed packages, the image's stage copies the staged model only.
    assert [a for a in copies if a not in from_stages] == [f"{MODEL_CONTEXT}/ /app/model/"]
    text = " ".join(args for _, args in image)
    for build_input in ("requirements-", "wheelhouse", "/tmp/pip", "pyproject.toml", "src"):
        assert not re.search(rf"(^|[\s/]){re.escape(build_input)}", text), build_input
    # pip check where pip sees the whole installed set: in the image, after the copies.
    runs = [args for keyword, args in image if keyword == "RUN"]
    assert any("pip check" in args for args in runs), "pip check the image's own packages"
    assert not any("pip check" in args for _, _, s in earlier for _, args in s)


def test_locked_requirements_have_hashes_and_no_tensorflow() -> None:
    text = REQUIREMENTS.read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE)
    names = {name.lower() for name, _ in pins}
    assert {"ai-edge-litert", "azure-iot-device"} <= names
    assert not any("tensorflow" in name or name == "keras" for name in names)
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)


def test_locked_requirements_match_uv_lock() -> None:
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: run `make setup`")
    command = [
        str(UV), "export", "--frozen", "--no-dev", "--extra", "edge", "--no-emit-project",
        "--format", "requirements-txt", "--no-header",
    ]  # fmt: skip
    exported = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout

    def body(text: str) -> list[str]:  # without the header comment naming the command
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert body(REQUIREMENTS.read_text()) == body(exported), (
        "environments/docker/requirements-edge.txt is stale; regenerate it with: "
        ".tools/bin/uv export --frozen --no-dev --extra edge --no-emit-project "
        "--format requirements-txt -o environments/docker/requirements-edge.txt"
    )


def test_both_platforms_have_the_same_steps() -> None:
    amd64 = instructions(DOCKER_DIR / "Dockerfile.amd64")
    arm64 = instructions(DOCKER_DIR / "Dockerfile.arm64v8")

    def normalised(steps: Steps) -> Steps:  # the base image's repository and digest aside
        return [
            (
                keyword,
                re.sub(r"@sha256:[0-9a-f]{64}", "", args.replace("arm64v8/python:", "python:")),
            )
            for keyword, args in steps
        ]

    assert normalised(arm64) == normalised(amd64)
    # The files differ in their header (the platform, the base image's default) only: from the
    # first FROM on they are the same text, comments included.
    texts = [(DOCKER_DIR / f"Dockerfile.{platform}").read_text() for platform in PLATFORMS]
    amd64_text, arm64_text = (text[text.index("\nFROM ") :] for text in texts)
    assert amd64_text == arm64_text


def env_values(steps: Steps) -> dict[str, str]:
    """Every ``ENV`` the Dockerfile sets (``KEY=value`` pairs, one or many per instruction)."""
    values: dict[str, str] = {}
    for keyword, args in steps:
        if keyword == "ENV":
            for item in args.split():
                key, _, value = item.partition("=")
                values[key] = value
    return values


def model_copies(steps: Steps) -> tuple[str, set[str], int] | None:
    """(destination folder, file names, step index) of the COPY that bakes in the staged model.

    The staged folder is copied whole, so the file names are what staging puts there
    (:data:`MODEL_FILES`); a COPY naming files of it is a second list to keep in step.
    """
    for index, (keyword, args) in enumerate(steps):
        if keyword != "COPY":
            continue
        *sources, destination = args.split()
        if sources and all(s.rstrip("/") == MODEL_CONTEXT for s in sources):
            return posixpath.normpath(destination), set(MODEL_FILES), index
        if sources and any(s.startswith(f"{MODEL_CONTEXT}/") for s in sources):
            raise AssertionError(
                f"COPY {args}: copy the staged folder {MODEL_CONTEXT}/ as a whole; its files are "
                "listed once, in ppe.iotedge.staging.MODEL_FILES"
            )
    return None


def model_path_errors(template: dict[str, Any], steps: Steps) -> list[str]:
    """Where the deployment template makes the module look for its model, against the image.

    Args:
        template: the expanded deployment template (createOptions as objects).
        steps: a Dockerfile's instructions.

    Returns:
        One line per disagreement; empty when MODEL_PATH and LABELS_PATH name files the
        Dockerfile bakes in (with model.json beside the model), the image's own ENV agrees, the
        files are root-owned and read-only, and no host bind hides them.
    """
    errors: list[str] = []
    agent = template["modulesContent"]["$edgeAgent"]["properties.desired"]
    module = agent["modules"][m.MODULE_NAME]
    env = {name: item["value"] for name, item in module.get("env", {}).items()}
    copied = model_copies(steps)
    if copied is None:
        return [f"no COPY of {MODEL_CONTEXT}/* into the image"]
    folder, names, copy_index = copied
    if "--chown" in steps[copy_index][1]:
        errors.append("the model COPY must leave the files owned by root (no --chown)")
    image_env = env_values(steps)
    for variable, suffix in (("MODEL_PATH", ".tflite"), ("LABELS_PATH", ".txt")):
        value = env.get(variable, "")
        directory, name = posixpath.split(value)
        if directory != folder or name not in names or not name.endswith(suffix):
            errors.append(
                f"template {variable}={value!r} is not a {suffix} file the Dockerfile copies to "
                f"{folder}/ ({sorted(names)})"
            )
        if image_env.get(variable) != value:
            errors.append(f"image ENV {variable}={image_env.get(variable)!r}, template {value!r}")
    if SPEC_FILE not in names:
        errors.append(f"{SPEC_FILE} is not copied next to the model; the runtime reads it there")
    chmods = [
        args for keyword, args in steps[copy_index + 1 :] if keyword == "RUN" and "chmod" in args
    ]
    # Read-only as staged (COPY keeps the mode): a chmod of the files would store the model again
    # in a layer of its own, so the build only refuses a writable file.
    if not any(f"find {folder} -type f -perm /0222" in c and "exit 1" in c for c in chmods):
        errors.append(f"the build does not refuse writable files in {folder}")
    if any(re.search(rf"chmod [0-7]+ [^&]*{re.escape(folder)}/", c) for c in chmods):
        errors.append(f"a chmod of the files in {folder} stores the model in a second layer")
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    if not users or users[0] < copy_index:
        errors.append("the model must be copied and locked down before USER drops root")
    host = module["settings"]["createOptions"].get("HostConfig", {})
    for bind in host.get("Binds", []):
        target = bind.split(":")[1]
        if folder == target or folder.startswith(target.rstrip("/") + "/"):
            errors.append(f"host bind {bind!r} hides the model baked in at {folder}")
    return errors


@pytest.fixture
def template(edge_env: dict[str, str]) -> dict[str, Any]:
    return m.expand_template(TEMPLATE, edge_env, "amd64", tag="model3-1", model_version=3)


def test_template_model_path_points_where_the_dockerfile_copies_the_model(
    dockerfile: tuple[str, Steps], template: dict[str, Any]
) -> None:
    _, steps = dockerfile
    assert model_path_errors(template, steps) == []
    folder, names, _ = model_copies(steps) or ("", set(), 0)
    assert names == set(MODEL_FILES)
    env = template["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["ppedetector"]
    assert env["env"]["MODEL_PATH"]["value"] == f"{folder}/{INT8_FILE}"


def test_a_template_reading_the_model_from_the_host_is_caught(
    dockerfile: tuple[str, Steps], template: dict[str, Any]
) -> None:
    _, steps = dockerfile
    old = copy.deepcopy(template)
    module = old["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]["ppedetector"]
    module["env"]["MODEL_PATH"]["value"] = "/app/data/models/3/model.tflite"
    module["settings"]["createOptions"]["HostConfig"]["Binds"] = ["/var/lib/ppedetector:/app"]
    errors = model_path_errors(old, steps)
    assert any("template MODEL_PATH='/app/data/models/3/model.tflite'" in e for e in errors), errors
    assert any("image ENV MODEL_PATH" in e for e in errors), errors
    assert any("hides the model" in e for e in errors), errors


def test_a_dockerfile_copying_the_model_elsewhere_or_writable_is_caught(
    dockerfile: tuple[str, Steps], template: dict[str, Any]
) -> None:
    _, steps = dockerfile
    moved = [
        (keyword, args.replace("/app/model/", "/opt/model/") if keyword == "COPY" else args)
        for keyword, args in steps
    ]
    errors = model_path_errors(template, moved)
    assert any("is not a .tflite file the Dockerfile copies to /opt/model/" in e for e in errors)
    unchecked = [
        (keyword, args.replace("-perm /0222", "-perm /0000") if keyword == "RUN" else args)
        for keyword, args in steps
    ]
    errors = model_path_errors(template, unchecked)
    assert any("does not refuse writable files" in e for e in errors), errors
    second_layer = [
        (keyword, f"chmod 0444 /app/model/* && {args}" if "-perm /0222" in args else args)
        for keyword, args in steps
    ]
    assert any("second layer" in e for e in model_path_errors(template, second_layer))
    # A COPY that lists the staged files again (as the Dockerfiles once did) is refused.
    listed = " ".join(f"{MODEL_CONTEXT}/{name}" for name in MODEL_FILES)
    relisted = [
        (keyword, f"{listed} /app/model/" if keyword == "COPY" and MODEL_CONTEXT in args else args)
        for keyword, args in steps
    ]
    with pytest.raises(AssertionError, match="copy the staged folder"):
        model_path_errors(template, relisted)


def test_healthcheck_entrypoint_port_and_queue_dir_match_the_manifest(
    dockerfile: tuple[str, Steps], template: dict[str, Any]
) -> None:
    _, steps = dockerfile
    values = dict(steps)
    assert "/healthz" in values["HEALTHCHECK"]
    assert values["HEALTHCHECK"].split(" CMD ")[0].count("--") >= 3
    assert json.loads(values["ENTRYPOINT"]) == ["ppe", "edge", "run"]
    port = str(EdgeConfig().http_port)
    assert values["EXPOSE"] == port
    assert env_values(steps)["HTTP_PORT"] == port
    module = template["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][
        "ppedetector"
    ]
    queue = module["env"]["QUEUE_DIR"]["value"]
    assert env_values(steps)["QUEUE_DIR"] == queue
    # The one writable host volume is the durable queue; the other bind is the read-only secret
    # folder holding the file SCORE_TOKEN_FILE names.
    binds = [bind.split(":") for bind in module["settings"]["createOptions"]["HostConfig"]["Binds"]]
    assert [target for _, target, *mode in binds if mode != ["ro"]] == [queue]
    secrets = [target for _, target, *mode in binds if mode == ["ro"]]
    token_file = module["env"]["SCORE_TOKEN_FILE"]["value"]
    assert secrets == [str(Path(token_file).parent)]
    dirs = next(args for keyword, args in steps if keyword == "RUN" and "install -d" in args)
    assert re.search(rf"install -d -o ppe -g ppe -m 0750 {re.escape(queue)}(\s|$)", dirs), dirs


# --- the staged model ---------------------------------------------------------------------------


def _check_command(steps: Steps) -> list[str]:
    """The build-time RUN that loads MODEL_PATH/LABELS_PATH as the module's user (exec form)."""
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    checks = [
        json.loads(args)
        for keyword, args in steps[users[-1] :]
        if keyword == "RUN" and "MODEL_PATH" in args
    ]
    assert len(checks) == 1, "one RUN after USER must load the baked-in model"
    command: list[str] = checks[0]
    return command


@pytest.fixture
def export_dir(tmp_path: Path, edge_models: Path, tflite_models: ModuleType) -> Path:
    """A folder shaped like `ppe export`'s output, with a real (tiny, rigged) int8 model."""
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copyfile(edge_models / "rigged_int8.tflite", folder / INT8_FILE)
    shutil.copyfile(edge_models / "rigged_fp32.tflite", folder / "model_fp32.tflite")
    shutil.copyfile(edge_models / "labels.txt", folder / "labels.txt")
    # The model.json written with them: spec and output layout (ppe.export.litert_manifest).
    shutil.copyfile(edge_models / SPEC_FILE, folder / SPEC_FILE)
    (folder / "metrics.json").write_text("{}")
    chosen = ClassThresholds(
        split="val", criterion="max F1", thresholds={"helmet": 0.4, "head": 0.3}
    )
    chosen.write(folder / THRESHOLDS_FILE)
    return folder


def _stage(tmp_path: Path, export: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a copy of stage_model.sh (so the repository's own staging folder stays untouched)."""
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir(exist_ok=True)
    script = docker_dir / STAGE_SCRIPT.name
    shutil.copyfile(STAGE_SCRIPT, script)
    result = subprocess.run(
        ["bash", str(script), str(export)],
        env={**os.environ, "PPE": PPE},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, docker_dir / "model"


def _load_in_image_layout(steps: Steps, staged: Path) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's model check, with the image's model folder mapped onto ``staged``."""
    folder, _, _ = model_copies(steps) or ("", set(), 0)
    image_env = env_values(steps)
    env = {
        **os.environ,
        "MODEL_PATH": str(staged / posixpath.relpath(image_env["MODEL_PATH"], folder)),
        "LABELS_PATH": str(staged / posixpath.relpath(image_env["LABELS_PATH"], folder)),
    }
    command = _check_command(steps)
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=120
    )


def test_staged_export_loads_with_the_dockerfiles_own_check(
    dockerfile: tuple[str, Steps], tmp_path: Path, export_dir: Path
) -> None:
    _, steps = dockerfile
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    # Exactly the files the Dockerfile copies: no fp32 model, no metrics, nothing from before.
    assert sorted(p.name for p in staged.iterdir()) == sorted(MODEL_FILES)
    for name in MODEL_FILES:
        assert (staged / name).read_bytes() == (export_dir / name).read_bytes()
        assert (staged / name).stat().st_mode & 0o777 == 0o444
    loaded = _load_in_image_layout(steps, staged)
    assert loaded.returncode == 0, loaded.stderr


def test_the_dockerfiles_check_rejects_labels_that_disagree_with_the_model(
    dockerfile: tuple[str, Steps], tmp_path: Path, export_dir: Path
) -> None:
    _, steps = dockerfile
    (export_dir / "labels.txt").write_text("person\nhelmet\n")
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    loaded = _load_in_image_layout(steps, staged)
    assert loaded.returncode != 0
    assert "disagree" in loaded.stderr


def test_the_dockerfiles_check_rejects_thresholds_for_another_model(
    dockerfile: tuple[str, Steps], tmp_path: Path, export_dir: Path
) -> None:
    _, steps = dockerfile
    ClassThresholds(split="val", criterion="max F1", thresholds={"person": 0.5}).write(
        export_dir / THRESHOLDS_FILE
    )
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    loaded = _load_in_image_layout(steps, staged)
    assert loaded.returncode != 0
    assert "names classes the model lacks (['person'])" in loaded.stderr


def test_staging_replaces_an_earlier_model_and_refuses_an_incomplete_export(
    tmp_path: Path, export_dir: Path
) -> None:
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    (staged / "model_fp32.tflite").write_bytes(b"left over from an earlier build")
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in staged.iterdir()) == sorted(MODEL_FILES)
    # An export of a model folder without per-class thresholds: the fix is named, nothing staged.
    (export_dir / THRESHOLDS_FILE).unlink()
    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 1
    assert f"{export_dir / THRESHOLDS_FILE} is missing" in result.stderr
    assert "run 'ppe thresholds --model" in result.stderr
    assert sorted(p.name for p in staged.iterdir()) == sorted(MODEL_FILES)  # the earlier stage
    (export_dir / INT8_FILE).unlink()
    result, _ = _stage(tmp_path, export_dir)
    assert result.returncode == 1
    assert f"{export_dir / INT8_FILE} is missing" in result.stderr
    assert (
        subprocess.run(["bash", str(STAGE_SCRIPT)], capture_output=True, check=False).returncode
        == 2
    )


def test_the_staged_model_is_ignored_by_git() -> None:
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    staged = [f"{MODEL_CONTEXT}/{name}" for name in MODEL_FILES]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *staged],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.split() == staged, "a staged model could be committed"


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined (a shell or Dockerfile command is one line)."""
    return re.sub(r"\\\n", " ", text).splitlines()


def model_file_lists(text: str) -> list[str]:
    """Lines of ``text`` that name three or more of :data:`MODEL_FILES`: another list of them."""
    return [
        line.strip()
        for line in _logical_lines(text)
        if sum(name in line for name in MODEL_FILES) >= 3
    ]


def test_the_staged_model_files_are_listed_once() -> None:
    # ppe.iotedge.staging.MODEL_FILES is the list; the scripts run `ppe edge stage-model`, the
    # Dockerfiles copy the staged folder whole and the image build step checks it with
    # `ppe edge stage-model --check`. This fails when a copy of the list reappears anywhere.
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split("\0")  # fmt: skip
    copies = {}
    for name in tracked:
        path = REPO_ROOT / name
        if not name or not path.is_file() or path.suffix in {".png", ".jpg", ".tflite", ".npz"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if found := model_file_lists(text):
            copies[name] = found
    assert copies == {}, f"a second list of the staged model's files: {copies}"
    # The detector itself: the lists this repository used to hold are caught.
    assert model_file_lists(f"files=({' '.join(MODEL_FILES)})")
    first, second, third, _ = (f"{MODEL_CONTEXT}/{name}" for name in MODEL_FILES)
    assert model_file_lists(f"COPY {first} {second} \\\n  {third} /app/model/")
    assert not model_file_lists(f"ENV MODEL_PATH=/app/model/{INT8_FILE} LABELS_PATH=x")


def test_stage_model_check_names_what_is_wrong_with_a_staged_folder(
    tmp_path: Path, export_dir: Path
) -> None:
    def check(folder: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PPE.split(), "edge", "stage-model", "--check", str(folder)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    result, staged = _stage(tmp_path, export_dir)
    assert result.returncode == 0, result.stderr
    assert check(staged).returncode == 0
    # The export itself is no staged model: it holds the fp32 model and the metrics too.
    extra = check(export_dir)
    assert extra.returncode != 0
    assert "holds files the image must not carry (metrics.json, model_fp32.tflite)" in extra.stderr
    (staged / LABELS_FILE).write_bytes(b"")
    empty = check(staged)
    assert empty.returncode != 0
    assert f"{staged / LABELS_FILE} is missing or empty" in empty.stderr
    missing = check(tmp_path / "nowhere")
    assert "does not exist; stage a model first" in missing.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_exactly_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for platform in PLATFORMS:
        for keyword, args in instructions(DOCKER_DIR / f"Dockerfile.{platform}"):
            if keyword != "COPY":
                continue
            *sources, _ = args.split()
            if sources[0].startswith("--from="):
                continue  # from a build stage, not from the context
            for source in sources:
                if source.rstrip("/") == MODEL_CONTEXT:
                    pass  # staged at build time by stage_model.sh, from `ppe export`'s output
                else:
                    assert (REPO_ROOT / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for secret in (
        ".env",
        "environments/iotedge/.env",
        "outputs/model.tflite",
        "outputs/runs/1/export/model_int8.tflite",
        ".venv/bin/python",
    ):
        assert _ignored(secret, patterns), f"{secret} would be sent to the Docker daemon"


def test_no_buildkit_only_syntax_since_iotedgedev_builds_with_the_classic_builder() -> None:
    for platform in PLATFORMS:
        text = (DOCKER_DIR / f"Dockerfile.{platform}").read_text()
        assert "RUN --mount" not in text, "BuildKit-only syntax breaks iotedgedev's classic build"
        assert "# syntax=" not in text
        assert "\nADD " not in text, "use COPY"
