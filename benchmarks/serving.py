"""The edge module end to end: ``POST /score`` of 640x480 JPEGs over loopback.

The server is the module's own, started as users start it: ``python -m ppe edge serve --model
model_int8.tflite --port N --threads T --host 127.0.0.1`` in a subprocess (the int8 model of the
inference benchmark, with its ``model.json``). The clients run in this process and share the
machine's cores with the server, as a camera gateway on the same device would.

Phases of 1, 4 and 16 clients posting back to back, each bounded in requests and in seconds,
whichever comes first:

* ``sequential`` (1 client): the latency of a request on an idle server (the p50 target).
* ``concurrent`` (4 clients): throughput (the requests/s target) and latency under load. The
  server scores one image at a time behind a lock on the interpreter, so under load latency ~=
  clients / throughput (Little's law) and includes the wait in the queue.
* 16 clients: the same under a heavier queue.

The same phases run against every backend the edge module could ship (``by_backend``): LiteRT
fp32 and int8 through ``ppe edge serve``, and the ONNX Runtime and OpenVINO models of
:mod:`benchmarks.peers` through ``python -m benchmarks.peer_server`` (the module's own HTTP server
and detection path on that runtime, as the module would need it). One server runs at a time. The
targets are checked on the LiteRT int8 server, the module's backend.

Every request opens a new connection (the server answers HTTP/1.0 and closes). Images: real
photos resized to 640x480 when real data are given, else procedural scenes rendered at 640x480.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DATA_ENV, Context, env_path, summarize_ms, target

logger = logging.getLogger("benchmarks.serving")

WIDTH, HEIGHT = 640, 480
CLIENTS = 4
#: Concurrent clients of each phase.
PHASES = (1, CLIENTS, 16)
P50_TARGET_MS = 15.0
RPS_TARGET = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").resize((WIDTH, HEIGHT)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_jpegs(count: int, data: Path | None, seed: int) -> tuple[list[bytes], str]:
    """``count`` 640x480 JPEGs: real photos (resized) from ``data`` if given, else scenes."""
    from PIL import Image

    if data is not None and data.is_dir():
        photos = sorted(
            path
            for path in data.rglob("*")
            if path.suffix.lower() in (".png", ".jpg", ".jpeg") and path.is_file()
        )[:count]
        if photos:
            images = []
            for path in photos:
                with Image.open(path) as photo:
                    images.append(_jpeg(photo))
            return images, f"{len(images)} real photos from {data.name} resized to 640x480"
    from ppe.config import SynthConfig
    from ppe.data.synthetic import render_scene

    synth = SynthConfig(width=WIDTH, height=HEIGHT, max_people=5, seed=seed)
    images = [
        _jpeg(render_scene(np.random.default_rng([seed, index]), synth).image)
        for index in range(count)
    ]
    return images, f"{len(images)} procedural scenes rendered at 640x480"


def post(port: int, body: bytes, timeout_s: float = 30.0) -> tuple[int, float, dict[str, Any]]:
    """One ``POST /score``: (status, client-side milliseconds, JSON answer)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", "/score", body, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        payload = response.read()
        status = response.status
    finally:
        connection.close()
    elapsed = (time.perf_counter() - started) * 1000.0
    try:
        document = json.loads(payload)
    except ValueError:
        document = {}
    return status, elapsed, document


def load_phase(
    port: int, images: Sequence[bytes], clients: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    """Post from ``clients`` threads until ``max_requests`` are sent or ``max_seconds`` pass."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    server_ms: list[float] = []
    detections: list[int] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + max_seconds

    def client(worker: int) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= max_requests or time.perf_counter() >= deadline:
                    return
                index = issued
                issued += 1
            try:
                status, elapsed, document = post(port, images[(index + worker) % len(images)])
            except OSError as error:
                with lock:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                continue
            with lock:
                if status == 200:
                    latencies.append(elapsed)
                    server_ms.append(float(document.get("timings_ms", {}).get("total", 0.0)))
                    detections.append(len(document.get("detections", [])))
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client, worker) for worker in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    if not latencies:
        raise RuntimeError(f"no successful /score request (errors: {errors})")
    stats = summarize_ms(latencies)
    return {
        "clients": clients,
        "requests_ok": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms_p50": stats["latency_ms_p50"],
        "latency_ms_p95": stats["latency_ms_p95"],
        "latency_ms_p99": stats["latency_ms_p99"],
        "latency_ms_max": stats["latency_ms_max"],
        "server_total_ms_p50": round(float(np.percentile(server_ms, 50)), 3),
        "detections_per_image_mean": round(float(np.mean(detections)), 2),
        "bounds": {"max_requests": max_requests, "max_seconds": max_seconds},
    }


def _wait_healthy(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ppe edge serve exited with {process.returncode} before serving")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            document: dict[str, Any] = json.loads(connection.getresponse().read())
            connection.close()
            return document
        except (OSError, ValueError):
            time.sleep(0.2)
    raise RuntimeError(f"ppe edge serve did not answer /healthz within {timeout_s:.0f} s")


def _server_command(
    backend: str, model: Path, spec_file: Path, port: int, threads: int
) -> list[str]:
    """The command that serves ``model``: the module's ``ppe edge serve``, else the peer server."""
    if model.suffix == ".tflite":
        return [
            sys.executable,
            "-m",
            "ppe",
            "edge",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--threads",
            str(threads),
            "--model-version",
            "benchmark",
        ]
    return [
        sys.executable,
        "-m",
        "benchmarks.peer_server",
        "--backend",
        backend,
        "--model",
        str(model),
        "--spec",
        str(spec_file),
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]


def serve_and_load(
    command: list[str],
    port: int,
    images: Sequence[bytes],
    bounds: tuple[int, float],
    log_path: Path,
) -> dict[str, Any]:
    """Start one server, warm it up, run every phase of :data:`PHASES`, stop it.

    Returns:
        ``health`` (its ``/healthz``), ``phases`` (clients -> :func:`load_phase` result) and
        ``exit_code``.
    """
    logger.info("starting %s", " ".join(command[1:]))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
    phases: dict[str, Any] = {}
    try:
        health = _wait_healthy(port, process, 180.0)
        for index in range(5):  # warm-up
            post(port, images[index % len(images)])
        for clients in PHASES:
            phases[str(clients)] = load_phase(port, images, clients, *bounds)
            logger.info(
                "%d client(s): %.1f requests/s, p50 %.1f ms, p99 %.1f ms",
                clients,
                phases[str(clients)]["requests_per_s"],
                phases[str(clients)]["latency_ms_p50"],
                phases[str(clients)]["latency_ms_p99"],
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = process.wait(10)
    return {"health": health, "phases": phases, "exit_code": exit_code}


def run(context: Context) -> dict[str, Any]:
    """Serve each shippable backend and load it (see the module docstring)."""
    from benchmarks.inference import EDGE_BACKEND
    from benchmarks.models import export_litert, export_peers, prepare_model

    prepared = prepare_model(context)
    litert = export_litert(context, prepared)
    models = {**litert, **export_peers(context, prepared)}
    spec_file = Path(litert[EDGE_BACKEND]).parent / "model.json"
    images, image_origin = make_jpegs(16, env_path(context.data, DATA_ENV), context.seed)
    bounds = (30, 5.0) if context.quick else (2000, 30.0)
    by_backend: dict[str, Any] = {}
    health: dict[str, Any] = {}
    for backend, model in models.items():
        port = _free_port()
        command = _server_command(backend, Path(model), spec_file, port, context.threads)
        served = serve_and_load(
            command, port, images, bounds, context.work / "serving" / f"{backend}.log"
        )
        if backend == EDGE_BACKEND:
            health = served["health"]
        by_backend[backend] = {
            "server": "python -m ppe edge serve"
            if Path(model).suffix == ".tflite"
            else "python -m benchmarks.peer_server",
            "phases": served["phases"],
            "server_exit_code": served["exit_code"],
        }
    edge = by_backend[EDGE_BACKEND]["phases"]
    sequential, concurrent = edge["1"], edge[str(CLIENTS)]
    return {
        "status": "ok",
        "settings": {
            "server": "python -m ppe edge serve (subprocess, 127.0.0.1)",
            "model": f"LiteRT int8, {health.get('architecture')} at {health.get('image_size')} px",
            "server_threads": context.threads,
            "images": image_origin,
            "image_size": f"{WIDTH}x{HEIGHT} JPEG (quality 90)",
            "server_exit_code": by_backend[EDGE_BACKEND]["server_exit_code"],
            "phases": list(PHASES),
            "bounds": {"max_requests": bounds[0], "max_seconds": bounds[1]},
        },
        "sequential": sequential,
        "concurrent": concurrent,
        "by_backend": by_backend,
        "requests_per_s": concurrent["requests_per_s"],
        "latency_ms_p50": concurrent["latency_ms_p50"],
        "latency_ms_p99": concurrent["latency_ms_p99"],
        "targets": [
            target(
                "score_p50",
                f"/score p50 < {P50_TARGET_MS:g} ms (one client at a time)",
                sequential["latency_ms_p50"],
                sequential["latency_ms_p50"] < P50_TARGET_MS,
                "ms",
                f"under {CLIENTS} concurrent clients p50 is {concurrent['latency_ms_p50']:.1f} ms "
                "(queueing included)",
            ),
            target(
                "score_requests_per_s",
                f">= {RPS_TARGET:g} requests/s on {os.cpu_count()} cores ({CLIENTS} clients)",
                concurrent["requests_per_s"],
                concurrent["requests_per_s"] >= RPS_TARGET,
                "requests/s",
            ),
        ],
    }
