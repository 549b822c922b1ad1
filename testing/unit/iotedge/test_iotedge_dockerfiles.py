"""Static checks of the edge module Dockerfiles (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest

from ppe.config import EdgeConfig

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKER_DIR = REPO_ROOT / "environments" / "docker"
TEMPLATE = REPO_ROOT / "environments" / "iotedge" / "deployment.template.json"
REQUIREMENTS = DOCKER_DIR / "requirements-edge.txt"
UV = REPO_ROOT / ".tools" / "bin" / "uv"
PLATFORMS = ("amd64", "arm64v8")


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


@pytest.fixture(params=PLATFORMS)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[tuple[str, str]]]:
    platform: str = request.param
    return platform, instructions(DOCKER_DIR / f"Dockerfile.{platform}")


def test_base_image_is_slim_python_3_11_pinned_by_version(
    dockerfile: tuple[str, list[tuple[str, str]]],
) -> None:
    platform, steps = dockerfile
    images = [args for keyword, args in steps if keyword == "FROM"]
    assert len(images) == 1
    prefix = "arm64v8/" if platform == "arm64v8" else ""
    match = re.fullmatch(rf"{re.escape(prefix)}python:(3\.11\.\d+)-slim(-\w+)?", images[0])
    assert match, f"Dockerfile.{platform}: FROM {images[0]} is not a pinned 3.11 slim tag"
    assert "latest" not in images[0]


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


def test_installs_only_the_edge_extra_and_no_tensorflow(
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
    assert len(installs) == 2, installs
    assert "--require-hashes" in installs[0] and "requirements-edge.txt" in installs[0]
    assert re.search(r"""pip install --no-deps ["']?\.\[edge\]["']?\s*$""", installs[1].strip())
    assert "pip check" in text


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
    normalised = [(keyword, args.replace("arm64v8/python:", "python:")) for keyword, args in arm64]
    assert normalised == amd64


def test_healthcheck_entrypoint_port_and_data_dirs_match_the_manifest(
    dockerfile: tuple[str, list[tuple[str, str]]],
) -> None:
    _, steps = dockerfile
    values = dict(steps)
    assert "/healthz" in values["HEALTHCHECK"]
    assert values["HEALTHCHECK"].split(" CMD ")[0].count("--") >= 3
    assert json.loads(values["ENTRYPOINT"]) == ["ppe", "edge", "run"]
    port = str(EdgeConfig().http_port)
    assert values["EXPOSE"] == port
    assert any(f"HTTP_PORT={port}" in args for keyword, args in steps if keyword == "ENV")
    template = TEMPLATE.read_text()
    assert '"QUEUE_DIR": { "value": "/app/data/queue" }' in template
    assert ':/app/data"]' in template
    dirs = next(args for keyword, args in steps if keyword == "RUN" and "install -d" in args)
    assert "-o ppe -g ppe" in dirs
    for folder in ("/app/data/models", "/app/data/queue"):
        assert folder in dirs.split()


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
            for source in sources:
                assert (REPO_ROOT / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for secret in (".env", "environments/iotedge/.env", "outputs/model.tflite", ".venv/bin/python"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the Docker daemon"


def test_no_buildkit_only_syntax_since_iotedgedev_builds_with_the_classic_builder() -> None:
    for platform in PLATFORMS:
        text = (DOCKER_DIR / f"Dockerfile.{platform}").read_text()
        assert "RUN --mount" not in text, "BuildKit-only syntax breaks iotedgedev's classic build"
        assert "# syntax=" not in text
        assert "\nADD " not in text, "use COPY"
