"""The module image, built offline and run as the module: a real container against mosquitto.

The image is built once per session by ``environments/docker/build_image.sh`` (what
``make edge-image`` runs) with a tiny rigged model, and reused while its inputs are unchanged
(the tag is a hash of them). Docker is Debian's ``docker.io``; ``environments/docker/dockerd.sh``
starts a daemon with no bridge when none answers, so every container uses ``--network host`` and
reaches the broker and the tests on loopback.

Each container is created as the IoT Edge agent creates the module: through the Docker Engine
API's ``ContainerCreate`` with the createOptions of the manifest that ``ppe edge manifest``
renders from ``environments/iotedge/deployment.template.json`` and the ``.env.template``
defaults (one source of truth: memory and pids limits, a read-only root filesystem, every
capability dropped, ``no-new-privileges``, the outbox volume, the read-only secret folder
holding the ``/score`` token) and the module's env from the same manifest
(https://learn.microsoft.com/azure/iot-edge/how-to-use-create-options,
https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Container/operation/ContainerCreate).
Only what a test machine must change is overridden, and each override is named where it is made:
the host network (the daemon has no bridge), the HTTP port, the test's frame folder and broker.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmarks.edge_image import DOCKERFILE, LOCAL_BASE, default_base, image_sizes, size_target
from testing.edge_fixtures import PHOTOS, local_module_env, module_manifest
from testing.integration.edge.test_mqtt import (
    ALERT_LOG,
    DEVICE,
    MODULE,
    REPO,
    Broker,
    Observer,
    broker,
    free_port,
    wait_for,
)
from testing.unit.edge.test_server_faults import bomb_png

import ppe
from ppe.edge.runtime import SPEC_FILE
from ppe.export import INT8_FILE
from ppe.iotedge import manifest as edge_manifest
from ppe.iotedge.engine import module_container_body, start_container
from ppe.iotedge.staging import MODEL_FILES
from ppe.run.documents import ClassThresholds
from ppe.run.layout import thresholds_file

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(50)

__all__ = ["broker"]

DOCKER_DIR = REPO / "environments" / "docker"
MODULE_UID = 10001
TOKEN = "container-test-token-0123456789"
#: Inputs of the image: a change to any of them builds a new one.
IMAGE_INPUTS = ("pyproject.toml", "src", "environments/docker", ".dockerignore")


def _content_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    paths: list[Path] = []
    for name in IMAGE_INPUTS:
        path = REPO / name
        paths += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    skipped = {"__pycache__", "model", "wheelhouse"}  # build outputs and the staged model
    paths = [p for p in paths if not skipped & set(p.relative_to(REPO).parts)]
    for path in [*paths, *sorted(model_dir.iterdir())]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def docker_env() -> dict[str, str]:
    """The environment for the docker CLI (a daemon that answers, started if needed)."""
    if shutil.which("docker") is None or shutil.which("mmdebstrap") is None:
        pytest.fail(
            "docker or mmdebstrap is missing: run `make setup` (Debian docker.io, mmdebstrap)"
        )
    result = subprocess.run(
        [str(DOCKER_DIR / "dockerd.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"no Docker daemon: {result.stderr.strip()}")
    return {**os.environ, "DOCKER_HOST": result.stdout.strip()}


def docker(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory, edge_models: Path, tflite_models: ModuleType
) -> Path:
    """The staged model: the tiny rigged int8 model (nine heads on every frame) and its spec."""
    folder = tmp_path_factory.mktemp("model")
    shutil.copyfile(edge_models / "rigged_int8.tflite", folder / INT8_FILE)
    shutil.copyfile(edge_models / "labels.txt", folder / "labels.txt")
    # The model.json written with it: spec and output layout (ppe.export.litert_manifest).
    shutil.copyfile(edge_models / SPEC_FILE, folder / SPEC_FILE)
    # Per-class thresholds at or below every live score_threshold the tests set: the image ships
    # and loads the file, and the rigged detections stay what the tests expect.
    ClassThresholds(
        split="val", criterion="max F1", thresholds=dict.fromkeys(tflite_models.CLASS_NAMES, 0.05)
    ).write(thresholds_file(folder))
    return folder


def build_image(docker_env: dict[str, str], model_dir: Path, platform: str) -> str:
    """The module image for ``platform``, built offline once per content hash."""
    tag = f"ppedetector:test-{platform}-{_content_hash(model_dir)}"
    known = subprocess.run(
        ["docker", "image", "inspect", tag], env=docker_env, capture_output=True, check=False
    )
    if known.returncode == 0:
        return tag
    pip = REPO / ".tools" / "bin" / "python"
    result = subprocess.run(
        [str(DOCKER_DIR / "build_image.sh"), platform, str(model_dir), tag],
        env={
            **docker_env,
            "PIP": f"{pip if pip.exists() else 'python3'} -m pip",
            "PPE": f"{sys.executable} -m ppe",
        },
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return tag


@pytest.fixture(scope="session")
def edge_image(docker_env: dict[str, str], model_dir: Path) -> str:
    """The amd64 module image."""
    return build_image(docker_env, model_dir, "amd64")


@dataclass
class Container:
    """One module container."""

    env: dict[str, str]
    name: str
    port: int
    manifest: dict[str, Any]  # the deployment manifest it was created from

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                document: dict[str, Any] = json.load(r)
                return document
        except urllib.error.HTTPError as error:
            with error:
                degraded: dict[str, Any] = json.load(error)
            return degraded
        except OSError:
            return None

    def running(self) -> bool:
        return docker(self.env, "inspect", "-f", "{{.State.Running}}", self.name) == "true"

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        assert wait_for(lambda: self.health() is not None, timeout, 0.1), self.logs()[-3000:]
        document = self.health()
        assert document is not None
        return document

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", self.name], env=self.env, capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def exec(self, *command: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "exec", self.name, *command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def score(self, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "image/png"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/score", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def remove(self) -> None:
        docker(self.env, "rm", "-f", self.name, check=False)


@pytest.fixture
def run_module(
    docker_env: dict[str, str], edge_image: str, broker: Broker, tmp_path: Path
) -> Iterator[Any]:
    """Start module containers as the IoT Edge agent would; all are removed at the end.

    ``start(queue=PATH)`` binds another host folder at the queue; ``start(queue_tmpfs=OPTIONS)``
    puts a tmpfs there instead (a small volume to fill).
    """
    started: list[Container] = []
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("hard_hat_workers5.png", "hard_hat_workers25.png"):
        shutil.copy(PHOTOS / name, frames / name)
    frames.chmod(0o755)
    queue = tmp_path / "queue"
    queue.mkdir()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "score-token").write_text(TOKEN + "\n")
    if os.geteuid() == 0:  # as `install -d -o 10001` and `install -o 10001 -m 0400` on a device
        os.chown(queue, MODULE_UID, MODULE_UID)
        os.chown(secrets / "score-token", MODULE_UID, MODULE_UID)
        (secrets / "score-token").chmod(0o400)
    else:
        queue.chmod(0o777)
        (secrets / "score-token").chmod(0o444)
    secrets.chmod(0o755)
    shutil.copy(broker.folder / "ca.pem", tmp_path / "ca.pem")
    (tmp_path / "ca.pem").chmod(0o644)
    manifest = module_manifest(queue, secrets)
    port = free_port()

    def start(
        queue: Path | None = None, queue_tmpfs: str | None = None, secrets: Path | None = None
    ) -> Container:
        name = f"ppe-test-{tmp_path.name[-20:]}-{len(started)}"
        container = Container(docker_env, name, port, manifest)
        docker(docker_env, "rm", "-f", container.name, check=False)
        # Test machine only: the daemon has no bridge (the agent uses the azure-iot-edge
        # network), so the module shares the host's loopback with the broker and the tests.
        env = local_module_env(port, "/certs/ca.pem", DEVICE, MODULE)
        env.update(FRAME_RATE="5", LITERT_NUM_THREADS="1")  # a fast camera, one thread
        body = module_container_body(manifest, edge_image, env, network_mode="host")
        host = body["HostConfig"]
        if queue is not None or queue_tmpfs is not None:
            host["Binds"] = [b for b in host["Binds"] if b.split(":")[1] != "/app/queue"]
            if queue is not None:
                host["Binds"].append(f"{queue}:/app/queue")
            else:
                host["Tmpfs"] = {"/app/queue": queue_tmpfs}
        if secrets is not None:  # another host folder behind the manifest's secret bind
            host["Binds"] = [
                f"{secrets}:{b.split(':', 1)[1]}" if b.endswith(":ro") else b for b in host["Binds"]
            ]
        # Test inputs: a frame folder and the test broker's CA (the agent mounts its own).
        host["Binds"] += [f"{frames}:/frames:ro", f"{tmp_path / 'ca.pem'}:/certs/ca.pem:ro"]
        started.append(container)
        start_container(docker_env["DOCKER_HOST"], container.name, body)
        return container

    yield start
    for container in started:
        container.remove()


DESIRED = {
    "score_threshold": 0.4,
    "alert_min_frames": 1,
    "alert_window_frames": 2,
    "alert_cooldown_s": 1.0,
    "telemetry_interval_s": 2.0,
}


def test_the_image_runs_as_the_module_through_an_outage_and_a_restart(
    docker_env: dict[str, str], edge_image: str, model_dir: Path, broker: Broker, run_module: Any
) -> None:
    observer = Observer(broker.folder / "ca.pem", "observer-container", DESIRED)
    observer.start()
    start = time.monotonic()
    container: Container = run_module()
    try:
        health = container.wait_healthy()
        startup_s = time.monotonic() - start
        # The hardening the manifest carries, as Docker applied it.
        inspect = json.loads(docker(docker_env, "inspect", container.name))[0]
        assert inspect["Config"]["User"] == f"{MODULE_UID}:{MODULE_UID}"
        wanted = edge_manifest.module_create_options(container.manifest)["HostConfig"]
        for field in ("Memory", "MemorySwap", "PidsLimit", "ReadonlyRootfs", "CapDrop"):
            assert inspect["HostConfig"][field] == wanted[field], field
        assert inspect["HostConfig"]["SecurityOpt"] == wanted["SecurityOpt"]
        assert inspect["HostConfig"]["Memory"] == 512 * 1024 * 1024  # the shipped default
        assert container.exec("cat", "/proc/self/status").stdout.count("NoNewPrivs:\t1") == 1
        assert "CapEff:\t0000000000000000" in container.exec("cat", "/proc/self/status").stdout
        assert container.exec("id", "-u").stdout.strip() == str(MODULE_UID)
        assert container.exec("touch", "/app/x").returncode != 0  # read-only root
        # The model is stored once: COPY keeps the staged read-only mode and no chmod copies
        # the files into a second layer (overlay2 copies a whole file up on a mode change).
        files = [f"/app/model/{name}" for name in MODEL_FILES]
        modes = container.exec("stat", "-c", "%a %U", *files).stdout.split("\n")
        assert [line for line in modes if line] == ["444 root"] * len(files), modes
        model_bytes = sum((model_dir / name).stat().st_size for name in MODEL_FILES)
        history = docker(
            docker_env, "history", "--human=false", "--no-trunc", "--format",
            "{{.Size}}\t{{.CreatedBy}}", edge_image,
        ).splitlines()  # fmt: skip
        holding = [line for line in history if "/app/model" in line]
        assert sum(int(line.split("\t")[0]) >= model_bytes for line in holding) == 1, holding
        no_tf = container.exec("python", "-c", "import tensorflow")
        assert no_tf.returncode != 0 and "No module named 'tensorflow'" in no_tf.stderr
        # NumPy's test suites (17 MB) are not shipped; NumPy itself still works.
        numpy_tests = container.exec(
            "python", "-c", "import numpy, pathlib; print(numpy.ones(2).sum(), "
            "len(list(pathlib.Path(numpy.__file__).parent.rglob('tests'))))",
        )  # fmt: skip
        assert numpy_tests.stdout.split() == ["2.0", "0"], numpy_tests.stderr
        # Nor LiteRT's WebGPU accelerator and NPU plugin tool (27 MB): the CPU interpreter,
        # which served the /healthz above with the model loaded, does not need them.
        litert = container.exec(
            "python", "-c", "import ai_edge_litert, pathlib; "
            "d = pathlib.Path(ai_edge_litert.__file__).parent; "
            "print(sorted(p.name for p in d.rglob('*') if 'WebGpu' in p.name "
            "or p.name == 'apply_plugin_main'))",
        )  # fmt: skip
        assert litert.stdout.strip() == "[]", litert.stdout + litert.stderr
        # The package is the ppe-edge wheel of the edge layer alone: no training code inside.
        layer = container.exec(
            "python", "-c", "import importlib.metadata as m; print(m.version('ppe-edge')); "
            "import ppe.edge.main, ppe.cli.edge_module; import ppe.train",
        )  # fmt: skip
        assert layer.stdout.strip() == ppe.__version__, layer.stderr
        assert "No module named 'ppe.train'" in layer.stderr
        full = container.exec("python", "-c", "import importlib.metadata as m; m.version('ppe')")
        assert "PackageNotFoundError" in full.stderr
        assert health["model_version"] == "7"
        # /score with a real photo and the token from the manifest's secret file; without the
        # token it is refused.
        assert "SCORE_TOKEN=" not in "".join(inspect["Config"]["Env"])
        photo = (PHOTOS / "hard_hat_workers101.png").read_bytes()
        status, document = container.score(photo)
        assert status == 200 and document["detections"], document
        assert container.score(photo, token=None)[0] == 401
        # Alerts over MQTT/TLS.
        assert wait_for(lambda: len(observer.alerts()) >= 2, 60), container.logs()[-3000:]
        assert wait_for(lambda: container.health()["status"] == "ok", 30), container.health()
        # Broker down: alerts wait in the outbox on the volume; health says the hub link is down.
        broker.stop()
        assert wait_for(
            lambda: (container.health() or {}).get("queue", {}).get("alert", 0) >= 2, 30
        )
        assert wait_for(
            lambda: any("hub link down" in p for p in (container.health() or {})["problems"]), 30
        )
        # The container restarts (killed, started again) with the broker still down.
        first_logs = container.logs()
        docker(docker_env, "kill", container.name)
        docker(docker_env, "start", container.name)
        second = container.wait_healthy()
        assert second["queue"]["alert"] >= 2
        time.sleep(2)
        broker.start()
        raised = set(ALERT_LOG.findall(first_logs + container.logs()))
        assert wait_for(lambda: raised <= {body["alertId"] for _, body in observer.alerts()}, 90), (
            container.logs()[-3000:]
        )
        assert wait_for(lambda: (container.health() or {})["queue"]["alert"] == 0, 30)
        docker(docker_env, "stop", "--time", "20", container.name)
        assert docker(docker_env, "inspect", "-f", "{{.State.ExitCode}}", container.name) == "0"
    finally:
        observer.stop()
    size = int(docker(docker_env, "image", "inspect", "-f", "{{.Size}}", edge_image))
    record = {"image_mb": round(size / 1e6), "startup_s": round(startup_s, 2)}
    print(json.dumps(record))  # noqa: T201 - shown with pytest -s; make bench records it
    assert startup_s < 15


def _requirement_names(path: Path) -> list[str]:
    """The distributions a hash-locked requirements file pins."""
    return re.findall(r"^([A-Za-z0-9_.-]+)==", path.read_text(), flags=re.MULTILINE)


def _layer_paths(docker_env: dict[str, str], image: str, above: int, folder: Path) -> list[str]:
    """Every path the layers of ``image`` above its first ``above`` ones hold (``docker save``)."""
    archive = folder / "image.tar"
    docker(docker_env, "save", "-o", str(archive), image, timeout=600)
    paths: list[str] = []
    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"][above:]:
            with tarfile.open(fileobj=saved.extractfile(name)) as layer:
                paths += layer.getnames()
    archive.unlink()
    return paths


def _build_leftover(path: str, backends: set[str]) -> bool:
    """Whether a path in a layer is a build input (under /tmp, a wheel, a requirements file) or
    one of the ``backends`` (top-level module names) installed in a site-packages."""
    package = re.search(r"/site-packages/([^/]+)/", path)
    return (
        (path.startswith("tmp/") and path != "tmp/")
        or path.endswith(".whl")
        or re.search(r"(^|/)requirements-[^/]*\.txt$", path) is not None
        or (package is not None and package[1] in backends)
    )


def test_the_image_holds_no_build_input_or_backend_and_our_layers_stay_under_the_target(
    docker_env: dict[str, str], edge_image: str, tmp_path: Path
) -> None:
    # A layer keeps what it added even when a later one deletes it, so the build's inputs
    # (requirements, wheelhouse, source) and its backends must stay out of the image's own stage:
    # https://docs.docker.com/build/building/multi-stage/
    def history(image: str) -> list[tuple[int, str]]:
        rows = docker(
            docker_env, "history", "--human=false", "--no-trunc", "--format",
            "{{.Size}}\t{{.CreatedBy}}", image,
        ).splitlines()  # fmt: skip
        return [(int(size), created) for size, created in (row.split("\t", 1) for row in rows)]

    image_mb, base_mb, ours_mb = image_sizes(docker_env, edge_image, LOCAL_BASE)
    ours = history(edge_image)[: -len(history(LOCAL_BASE))]  # newest first, the base's last
    layers = "; ".join(f"{size / 1e6:.1f} MB {created[-80:]}" for size, created in ours if size)
    copied = [created for _, created in ours if "/tmp/pip" in created or "wheelhouse" in created]
    assert copied == [], f"layers of the image from the wheelhouse's COPY: {copied} ({layers})"
    base_layers = docker(docker_env, "image", "inspect", "-f", "{{len .RootFS.Layers}}", LOCAL_BASE)
    paths = _layer_paths(docker_env, edge_image, int(base_layers), tmp_path)
    backends = [*_requirement_names(DOCKER_DIR / "requirements-build.txt"), "wheel"]
    modules = {name.replace("-", "_") for name in backends}
    held = [path for path in paths if _build_leftover(path, modules)]
    assert held == [], f"layers of the image hold build inputs or backends: {held[:20]}"
    # Nor is one importable, the base's own included (its layers are the base's).
    found = docker(
        docker_env, "run", "--rm", "--network", "none", "--entrypoint", "python", edge_image,
        "-c", "import importlib.metadata as m, importlib.util as u, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try: print(m.version(name), name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "    if u.find_spec(name.replace('-', '_')): print('importable', name)",
        *backends,
    )  # fmt: skip
    assert found == "", f"build backends in the image: {found}"
    # The 450 MB target is for the Dockerfile's official base: our layers plus its published size.
    official = default_base(REPO / DOCKERFILE)
    size = size_target(ours_mb, official, image_mb, base_mb)
    assert size["met"], f"{size['note']}: {layers}"
    print(json.dumps({"our_layers_mb": round(ours_mb, 1), "layers": layers}))  # noqa: T201


def _peak_memory(docker_env: dict[str, str], container: Container) -> int | None:
    """Peak memory of the container's cgroup (v1 or v2), or None if the host hides it."""
    cid = docker(docker_env, "inspect", "-f", "{{.Id}}", container.name)
    for path in (
        Path(f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak"),
        Path(f"/sys/fs/cgroup/docker/{cid}/memory.peak"),
    ):
        if path.is_file():
            return int(path.read_text())
    return None


def test_a_burst_of_decompression_bombs_keeps_the_container_in_its_budget(
    docker_env: dict[str, str], run_module: Any
) -> None:
    container: Container = run_module()
    container.wait_healthy()
    assert wait_for(lambda: (container.health() or {}).get("frames_scored", 0) > 0, 30)
    # 4.9 KB decoding to about 430 MB, and 78 KB decoding to about 830 MB: 16 at once.
    bombs = [bomb_png(6324, 6324), bomb_png(40_000_000, 1)] * 8
    frames_before = container.health()["frames_scored"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = [status for status, _ in pool.map(container.score, bombs)]
    assert set(statuses) <= {413, 503}, statuses
    assert container.running()
    inspect = json.loads(docker(docker_env, "inspect", container.name))[0]
    assert inspect["State"]["OOMKilled"] is False
    assert wait_for(lambda: container.health()["frames_scored"] > frames_before + 5, 30)
    peak = _peak_memory(docker_env, container)
    print(json.dumps({"bomb_burst_peak_mb": None if peak is None else round(peak / 2**20)}))  # noqa: T201
    if peak is not None:
        assert peak < inspect["HostConfig"]["Memory"]


def test_a_full_queue_volume_degrades_health_and_alerts_resume(
    docker_env: dict[str, str], broker: Broker, run_module: Any
) -> None:
    observer = Observer(broker.folder / "ca.pem", "observer-full-disk", DESIRED)
    observer.start()
    container: Container = run_module(queue_tmpfs=f"size=4m,uid={MODULE_UID},gid={MODULE_UID}")
    try:
        container.wait_healthy()
        assert wait_for(lambda: len(observer.alerts()) >= 2, 60), container.logs()[-3000:]
        # Fill the volume for real: the module's user writes until the filesystem is full.
        filled = container.exec("sh", "-c", "dd if=/dev/zero of=/app/queue/fill bs=64k; sync")
        assert "No space left" in filled.stderr
        assert wait_for(
            lambda: any("outbox" in p for p in (container.health() or {})["problems"]), 30
        ), container.logs()[-3000:]
        assert container.running()
        frames = container.health()["frames_scored"]
        assert wait_for(lambda: container.health()["frames_scored"] > frames + 5, 30)
        container.exec("rm", "/app/queue/fill", check=True)
        assert wait_for(lambda: container.health()["status"] == "ok", 30), container.health()
        raised = set(ALERT_LOG.findall(container.logs()))
        assert wait_for(lambda: raised <= {body["alertId"] for _, body in observer.alerts()}, 60), (
            container.logs()[-3000:]
        )
    finally:
        observer.stop()


def test_a_root_owned_queue_folder_is_a_one_line_error(
    docker_env: dict[str, str], run_module: Any, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to make a root-owned folder (as Docker creates one)")
    root_owned = tmp_path / "root-queue"
    root_owned.mkdir(mode=0o755)
    container: Container = run_module(queue=root_owned)
    assert wait_for(lambda: not container.running(), 60)
    code = docker(docker_env, "inspect", "-f", "{{.State.ExitCode}}", container.name)
    logs = container.logs()
    assert code != "0" and "Traceback" not in logs
    errors = [line for line in logs.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "QUEUE_DIR /app/queue" in errors[0]
    assert "install -d -o 10001" in errors[0]


def test_a_missing_score_token_secret_is_a_one_line_error(
    docker_env: dict[str, str], run_module: Any, tmp_path: Path
) -> None:
    # The device's secret folder exists (or Docker made it) but holds no token.
    empty = tmp_path / "no-secrets"
    empty.mkdir(mode=0o755)
    container: Container = run_module(secrets=empty)
    assert wait_for(lambda: not container.running(), 60)
    code = docker(docker_env, "inspect", "-f", "{{.State.ExitCode}}", container.name)
    logs = container.logs()
    assert code != "0" and "Traceback" not in logs
    errors = [line for line in logs.splitlines() if "ERROR" in line]
    assert len(errors) == 1, logs[-3000:]
    assert "SCORE_TOKEN_FILE=/run/secrets/ppedetector/score-token" in errors[0]
    assert "PPE_HOST_SECRETS_DIR" in errors[0]


@pytest.mark.slow
def test_the_arm64v8_image_answers_healthz_under_emulation(
    docker_env: dict[str, str], model_dir: Path, tmp_path: Path
) -> None:
    # Built and run on this amd64 machine under QEMU user-mode emulation: binfmt.sh registers
    # the pinned QEMU 10.0 (bookworm's 7.2 hangs or crashes in LiteRT's interpreter). Created
    # from the arm64v8 manifest's createOptions, as the agent on an arm64 device creates it.
    image = build_image(docker_env, model_dir, "arm64v8")
    assert docker(docker_env, "image", "inspect", "-f", "{{.Architecture}}", image) == "arm64"
    queue, secrets, frames = tmp_path / "queue", tmp_path / "secrets", tmp_path / "frames"
    for folder in (queue, secrets, frames):
        folder.mkdir()
    shutil.copy(PHOTOS / "hard_hat_workers5.png", frames / "hard_hat_workers5.png")
    (secrets / "score-token").write_text(TOKEN + "\n")
    if os.geteuid() == 0:
        os.chown(queue, MODULE_UID, MODULE_UID)
        os.chown(secrets / "score-token", MODULE_UID, MODULE_UID)
    else:
        queue.chmod(0o777)
        (secrets / "score-token").chmod(0o444)
    for folder in (tmp_path, secrets, frames):
        folder.chmod(0o755)
    manifest = module_manifest(queue, secrets, platform="arm64v8")
    port = free_port()
    env = local_module_env(port, "/etc/ssl/certs/ca-certificates.crt", DEVICE, MODULE)
    body = module_container_body(manifest, image, env, network_mode="host")
    body["HostConfig"]["Binds"].append(f"{frames}:/frames:ro")
    container = Container(docker_env, f"ppe-test-arm64v8-{port}", port, manifest)
    try:
        start_container(docker_env["DOCKER_HOST"], container.name, body)
        health = container.wait_healthy(timeout=600)
        assert health["model_loaded"] is True, health
        assert health["model_version"] == "7"
        # No hub here: degraded for the hub link only, the camera loop and the model are up.
        assert [p for p in health["problems"] if "hub link" not in p] == [], health
        assert container.exec("uname", "-m").stdout.strip() == "aarch64"
        status, document = container.score((PHOTOS / "hard_hat_workers101.png").read_bytes())
        assert status == 200 and document["detections"], document
    finally:
        container.remove()
