"""The edge module end to end: ``POST /score`` of 640x480 JPEGs over loopback.

The server is the module's own, started as users start it: ``python -m ppe edge serve --model
model_int8.tflite --port N --threads T --host 127.0.0.1`` in a subprocess (the int8 model of the
inference benchmark, with its ``model.json``). The clients run in this process and share the
machine's cores with the server, as a camera gateway on the same device would.

Two phases, each bounded in requests and in seconds, whichever comes first:

* ``sequential``: one client, one request at a time: the latency of a request on an idle
  server (the p50 target).
* ``concurrent``: a pool of clients (4 by default) posting back to back: throughput (the
  requests/s target) and latency under load. The server scores one image at a time behind a lock
  on the interpreter, so under load latency ~= clients / throughput (Little's law) and includes
  the wait in the queue.

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


def run(context: Context) -> dict[str, Any]:
    """Start ``ppe edge serve`` with the int8 model and load it (see the module docstring)."""
    from benchmarks.models import export_litert, prepare_model

    prepared = prepare_model(context)
    model = Path(export_litert(context, prepared)["litert_int8"])
    images, image_origin = make_jpegs(16, env_path(context.data, DATA_ENV), context.seed)
    port = _free_port()
    log_path = context.work / "serving" / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
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
        str(context.threads),
        "--model-version",
        "benchmark",
    ]
    logger.info("starting %s", " ".join(command[1:]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
    try:
        health = _wait_healthy(port, process, 120.0)
        for index in range(5):  # warm-up
            post(port, images[index % len(images)])
        if context.quick:
            sequential = load_phase(port, images, 1, 40, 10.0)
            concurrent = load_phase(port, images, CLIENTS, 100, 10.0)
        else:
            sequential = load_phase(port, images, 1, 500, 60.0)
            concurrent = load_phase(port, images, CLIENTS, 3000, 60.0)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = process.wait(10)
    for name, phase in (("sequential", sequential), ("concurrent", concurrent)):
        logger.info(
            "%s (%d client(s)): %.1f requests/s, p50 %.1f ms, p99 %.1f ms",
            name,
            phase["clients"],
            phase["requests_per_s"],
            phase["latency_ms_p50"],
            phase["latency_ms_p99"],
        )
    return {
        "status": "ok",
        "settings": {
            "server": "python -m ppe edge serve (subprocess, 127.0.0.1)",
            "model": f"LiteRT int8, {health.get('architecture')} at {health.get('image_size')} px",
            "server_threads": context.threads,
            "images": image_origin,
            "image_size": f"{WIDTH}x{HEIGHT} JPEG (quality 90)",
            "server_exit_code": exit_code,
        },
        "sequential": sequential,
        "concurrent": concurrent,
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
