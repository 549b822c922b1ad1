"""``ppe edge serve`` as a user runs it: a separate process, real photos over loopback HTTP."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
PHOTOS = REPO / "testing" / "fixtures" / "hardhat_sample" / "images" / "val"
logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, body: bytes, content_type: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/score",
        data=body,
        headers={"Content-Type": content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.parametrize("variant", ["rigged_int8", "rigged_fp32"])
def test_serve_scores_photos_over_http(edge_models: Path, tmp_path: Path, variant: str) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ppe",
                "edge",
                "serve",
                "--model",
                str(edge_models / f"{variant}.tflite"),
                "--labels",
                str(edge_models / "labels.txt"),
                "--port",
                str(port),
                "--threads",
                "1",
                "--model-version",
                "local-1",
            ],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                assert process.poll() is None, log.read_text()
                time.sleep(0.2)
        else:
            pytest.fail(f"ppe edge serve did not start:\n{log.read_text()[-2000:]}")
        assert health["model_version"] == "local-1" and health["queue_depth"] is None

        photos = []
        for path in sorted(PHOTOS.glob("*.png"))[:6]:
            buffer = io.BytesIO()
            Image.open(path).convert("RGB").save(buffer, "JPEG", quality=90)
            photos.append(buffer.getvalue())
        latencies = []
        for index in range(30):
            start = time.perf_counter()
            status, document = post(port, photos[index % len(photos)], "image/jpeg")
            latencies.append((time.perf_counter() - start) * 1000)
            assert status == 200, document
            assert len(document["detections"]) == 9  # type: ignore[arg-type]
        status, document = post(port, b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image/png")
        assert status == 400 and document["error"]["code"] in ("not_an_image", "bad_image_data")  # type: ignore[index]
        p50 = statistics.median(latencies)
        logger.warning(
            "ppe edge serve %s: /score p50 %.1f ms, max %.1f ms", variant, p50, max(latencies)
        )
        assert p50 < 2000
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.read_text()[-2000:]
