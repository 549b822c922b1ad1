"""The scoring server as an attacker and an impatient client use it: each test reproduces a fault
found against the module (listen backlog, odd Content-Length, ``Expect: 100-continue``, slow
clients, tiny thresholds, decompression bombs, concurrency, no authentication)."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ppe.edge.runtime import LiteRTDetector
from ppe.edge.server import MIN_QUERY_SCORE_THRESHOLD, ScoringServer

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "hardhat_sample" / "images" / "val"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def detector(edge_models: Path) -> LiteRTDetector:
    return LiteRTDetector(
        edge_models / "rigged_int8.tflite", edge_models / "labels.txt", model_version="3"
    )


@pytest.fixture(scope="module")
def server(detector: LiteRTDetector) -> Iterator[ScoringServer]:
    app = ScoringServer(
        detector,
        host="127.0.0.1",
        port=0,
        max_upload_bytes=4 * 1024 * 1024,
        max_image_pixels=40_000_000,
        request_timeout_s=1.0,
        max_concurrent=1,
        queue_wait_s=0.3,
        token=TOKEN,
    )
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS / "hard_hat_workers126.png").convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def bomb_png(width: int, height: int, bit_depth: int = 1) -> bytes:
    """A real, fully decodable grey PNG of width x height, all zero: a few KB on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\0" + b"\0" * ((width * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def head(length: int, extra: str = "", token: str | None = TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{auth}"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode("latin-1")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    raw_head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body) if body else None


def exchange(server: ScoringServer, payload: bytes) -> tuple[int, dict[str, str], Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(payload)
        return read_response(sock)


def score(server: ScoringServer, body: bytes, query: str = "", **kwargs: Any) -> tuple[int, Any]:
    status, _, document = exchange(
        server, head(len(body), **kwargs).replace(b"/score", b"/score" + query.encode()) + body
    )
    return status, document


def test_score_requires_the_token(server: ScoringServer, photo_jpeg: bytes) -> None:
    status, document = score(server, photo_jpeg, token=None)
    assert status == 401 and document["error"]["code"] == "unauthorized"
    assert score(server, photo_jpeg, token="wrong")[0] == 401
    status, document = score(server, photo_jpeg)
    assert status == 200 and document["detections"]
    status, _, document = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and document["status"] == "ok"  # health stays open (Docker's probe)


def test_a_superscript_content_length_is_a_400_not_a_500(server: ScoringServer) -> None:
    # Byte 0xB2 is "²" once the headers are decoded as ISO-8859-1: "²".isdigit() is True in
    # Python but int("²") fails, which gave a 500 before.
    payload = head(0).replace(b"Content-Length: 0", b"Content-Length: \xb2")
    status, _, document = exchange(server, payload)
    assert status == 400 and document["error"]["code"] == "bad_content_length"


def test_expect_100_continue_is_answered_before_the_body(
    server: ScoringServer, photo_jpeg: bytes
) -> None:
    # curl sends Expect: 100-continue for larger uploads and waited 1 s for an answer before.
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head(len(photo_jpeg), "Expect: 100-continue\r\n"))
        sock.settimeout(0.5)
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(15)
        sock.sendall(photo_jpeg)
        status, _, document = read_response(sock)
    assert status == 200 and document["detections"]
    # Refused from the headers alone: no 100, the final answer at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head(len(photo_jpeg), "Expect: 100-continue\r\n", token=None))
        status, _, document = read_response(sock)
    assert status == 401


def test_the_request_deadline_covers_the_whole_body(server: ScoringServer) -> None:
    # One byte every 0.3 s never trips a per-read timeout of 1 s; the request deadline does.
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head(100))
        try:
            for _ in range(30):
                sock.sendall(b"\xff")
                time.sleep(0.3)
                if time.monotonic() - start > 6:
                    break
        except OSError:
            pass  # the server answered and closed
        status, _, document = read_response(sock)
    assert status == 408 and document["error"]["code"] == "timeout"
    assert time.monotonic() - start < 4.0


def test_a_tiny_threshold_is_clamped(server: ScoringServer, photo_jpeg: bytes) -> None:
    status, document = score(server, photo_jpeg, "?score_threshold=1e-9")
    assert status == 200
    assert document["score_threshold"] == MIN_QUERY_SCORE_THRESHOLD
    assert all(item["score"] >= MIN_QUERY_SCORE_THRESHOLD for item in document["detections"])


def test_extreme_aspect_ratio_is_refused_from_the_header(server: ScoringServer) -> None:
    # 1 x 40,000,000 is within the pixel limit; it peaked near 830 MB when decoded.
    body = bomb_png(40_000_000, 1)
    status, document = score(server, body)
    assert status == 413 and document["error"]["code"] == "image_too_large"
    assert "aspect" in document["error"]["message"]


def test_a_decompression_bomb_is_refused_from_its_memory_budget(server: ScoringServer) -> None:
    # 4.9 KB of one-bit PNG, 6324 x 6324 (under 40 Mpx): about 430 MB when decoded to RGB.
    body = bomb_png(6324, 6324)
    assert len(body) < 10_000
    status, document = score(server, body)
    assert status == 413 and document["error"]["code"] == "image_too_large"
    assert "memory" in document["error"]["message"]


def test_concurrent_requests_beyond_the_cap_get_503(
    server: ScoringServer, photo_jpeg: bytes
) -> None:
    # A slow upload holds the only scoring slot; a second request waits 0.3 s, then 503.
    holder = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        holder.sendall(head(1000) + b"0123456789")
        time.sleep(0.2)
        status, headers, document = exchange(server, head(len(photo_jpeg)) + photo_jpeg)
        assert status == 503 and document["error"]["code"] == "busy"
        assert headers["Retry-After"] == "1"
        assert read_response(holder)[0] == 408
    finally:
        holder.close()
    assert score(server, photo_jpeg)[0] == 200  # the slot is free again


def test_fifty_concurrent_clients_all_get_an_answer(server: ScoringServer) -> None:
    # The listen backlog was 5: 12 of 50 simultaneous clients were reset.
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(50)

    def client() -> None:
        barrier.wait()
        try:
            status = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0]
        except OSError:
            status = 0
        with lock:
            results.append(status)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.count(200) == 50, results
    assert server.httpd.request_queue_size >= 128
