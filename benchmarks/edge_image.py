"""The module image: its size, the time to build it offline, and the container's start-up time.

The image is built as ``make edge-image`` builds it (``environments/docker/build_image.sh``: a
base made from Debian's packages, hash-checked wheels, no registry), with the int8 model of the
inference benchmark. Start-up is the time from ``docker run`` of ``ppe edge run`` (read-only
root, every capability dropped, ``--network host``) to its first ``/healthz`` answer, the median
of three starts; the module has no hub here, so it reports ``degraded`` (hub link down), which is
still an answer.

The size target (450 MB) is stated for the official ``python:3.11-slim`` base; built offline the
base is Debian's own Python, so the figure is recorded with the base it was measured on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import Context, skipped, target

logger = logging.getLogger("benchmarks.edge_image")

SIZE_TARGET_MB = 450.0
STARTUP_TARGET_S = 2.0
STARTS = 3
TAG = "ppedetector:bench-amd64"
BASE_DESCRIPTION = "ppe-local/python:3.11-bookworm-amd64 (Debian's python3.11, made by mmdebstrap)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # 503 degraded is an answer
    except OSError:
        return False


def _start_once(env: dict[str, str]) -> float:
    port = _free_port()
    name = f"ppe-bench-{port}"
    start = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--network", "host", "--read-only",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
         "--tmpfs", "/app/queue:size=16m,uid=10001,gid=10001",
         "-e", f"HTTP_PORT={port}", "-e", "HTTP_HOST=127.0.0.1",
         "-e", "EdgeHubConnectionString=HostName=bench.azure-devices.net;DeviceId=bench;"
         "ModuleId=ppedetector;SharedAccessKey=YmVuY2g=;GatewayHostName=127.0.0.1",
         "-e", "EdgeModuleCACertificateFile=/etc/ssl/certs/ca-certificates.crt", TAG],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container did not answer /healthz within 60 s ({name})")
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=env, capture_output=True, check=False)


def run(context: Context) -> dict[str, Any]:
    """Build the image offline and measure its size and start-up."""
    if shutil.which("docker") is None or shutil.which("mmdebstrap") is None:
        return skipped("docker or mmdebstrap is not installed", "run `make setup`")
    repo = Path(context.repo_root)
    docker_dir = repo / "environments" / "docker"
    daemon = subprocess.run(
        [str(docker_dir / "dockerd.sh")], capture_output=True, text=True, timeout=120, check=False
    )
    if daemon.returncode != 0:
        return skipped(daemon.stderr.strip(), "start Docker or run `make bench` as root")
    env = {**os.environ, "DOCKER_HOST": daemon.stdout.strip()}

    from benchmarks.models import export_litert, prepare_model

    model = Path(export_litert(context, prepare_model(context))["litert_int8"])
    staged = context.work / "edge-image-model"
    staged.mkdir(parents=True, exist_ok=True)
    for name, source in (
        ("model_int8.tflite", model),
        ("labels.txt", model.parent / "labels.txt"),
        ("model.json", model.parent / "model.json"),
    ):
        shutil.copyfile(source, staged / name)
    pip = repo / ".tools" / "bin" / "python"
    start = time.perf_counter()
    subprocess.run(
        [str(docker_dir / "build_image.sh"), "amd64", str(staged), TAG],
        env={**env, "PIP": f"{pip if pip.exists() else 'python3'} -m pip"},
        check=True,
        capture_output=True,
        timeout=1800,
    )
    build_s = time.perf_counter() - start
    inspect = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", TAG], env=env, capture_output=True, check=True
        ).stdout
    )[0]
    size_mb = inspect["Size"] / 1e6
    base = BASE_DESCRIPTION
    startups = [_start_once(env) for _ in range(STARTS)]
    startup_s = statistics.median(startups)
    logger.info(
        "image %.0f MB on %s; start-up %.2f s (median of %d)", size_mb, base, startup_s, STARTS
    )
    return {
        "status": "ok",
        "settings": {"base_image": base, "platform": "amd64", "starts": STARTS},
        "image_mb": round(size_mb, 1),
        "build_s": round(build_s, 1),
        "startup_s": round(startup_s, 3),
        "startup_s_all": [round(value, 3) for value in startups],
        "targets": [
            target(
                "edge_image_size",
                f"module image < {SIZE_TARGET_MB:g} MB (amd64, official slim base)",
                size_mb,
                size_mb < SIZE_TARGET_MB,
                "MB",
                f"measured on {base}, not on the official slim base",
            ),
            target(
                "edge_startup",
                f"container start to first /healthz answer < {STARTUP_TARGET_S:g} s",
                startup_s,
                startup_s < STARTUP_TARGET_S,
                "s",
                f"median of {STARTS} starts, read-only root, capabilities dropped",
            ),
        ],
    }
