from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ppe.edge.runtime import LiteRTDetector
from ppe.edge.server import ScoringServer

PHOTOS = Path(__file__).resolve().parents[2] / "fixtures" / "hardhat_sample" / "images" / "val"
MAX_UPLOAD = 256 * 1024


@pytest.fixture(scope="module")
def server(edge_models: Path) -> Iterator[ScoringServer]:
    detector = LiteRTDetector(
        edge_models / "rigged_int8.tflite", edge_models / "labels.txt", model_version="3"
    )
    app = ScoringServer(
        detector,
        host="127.0.0.1",
        port=0,
        max_upload_bytes=MAX_UPLOAD,
        max_image_pixels=40_000_000,
        score_threshold=lambda: 0.25,
        request_timeout_s=1.0,
    )
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def photo_png() -> bytes:
    return (PHOTOS / "hard_hat_workers101.png").read_bytes()


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS / "hard_hat_workers126.png").convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def request(
    server: ScoringServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(
    server: ScoringServer,
    body: bytes,
    content_type: str | None = "image/jpeg",
    path: str = "/score",
) -> tuple[int, Any]:
    headers = {"Content-Length": str(len(body))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    status, response_headers, data = request(server, "POST", path, body, headers)
    assert response_headers["Content-Type"] == "application/json"
    return status, json.loads(data)


def raw_exchange(
    server: ScoringServer, payload: bytes, half_close: bool = False
) -> tuple[int, Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def assert_error(result: tuple[int, Any], status: int, code: str) -> None:
    got_status, document = result
    assert got_status == status, document
    assert document["error"]["code"] == code
    assert document["error"]["status"] == status
    assert document["error"]["message"]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (valid CRC), with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the SOF0/SOF2 frame header of a real JPEG to declare another size."""
    data = bytearray(jpeg)
    index = 2
    while index < len(data):
        marker, length = data[index + 1], struct.unpack(">H", data[index + 2 : index + 4])[0]
        if marker in (0xC0, 0xC2):
            data[index + 5 : index + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        index += 2 + length
    raise AssertionError("no SOF marker")


def test_score_png_and_jpeg(server: ScoringServer, photo_png: bytes, photo_jpeg: bytes) -> None:
    status, document = post(server, photo_png, "image/png")
    assert status == 200
    assert document["image"] == {"width": 416, "height": 416}
    assert len(document["detections"]) == 9
    assert {item["label"] for item in document["detections"]} == {"head"}
    for item in document["detections"]:
        xmin, ymin, xmax, ymax = item["box"]
        assert 0 <= xmin < xmax <= 416 and 0 <= ymin < ymax <= 416
    assert document["model"] == {"version": "3", "architecture": "yolov3_tiny"}
    assert set(document["timings_ms"]) >= {"decode", "preprocess", "inference", "total"}
    status, document = post(server, photo_jpeg, "image/jpeg; charset=binary")
    assert status == 200 and len(document["detections"]) == 9
    status, document = post(
        server, photo_jpeg, "application/octet-stream", "/score?score_threshold=0.9"
    )
    assert status == 200 and document["detections"] == [] and document["score_threshold"] == 0.9


def test_empty_and_non_image_bodies(server: ScoringServer) -> None:
    assert_error(post(server, b""), 400, "empty_body")
    assert_error(post(server, b"hello, this is text" * 20), 400, "not_an_image")
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    assert_error(post(server, gif.getvalue(), "application/octet-stream"), 400, "not_an_image")


def test_truncated_and_damaged_images(
    server: ScoringServer, photo_jpeg: bytes, photo_png: bytes
) -> None:
    assert_error(post(server, photo_jpeg[: len(photo_jpeg) // 2]), 400, "bad_image_data")
    assert_error(post(server, photo_png[:2000], "image/png"), 400, "bad_image_data")
    assert_error(post(server, photo_jpeg[:40]), 400, "not_an_image")


def test_huge_declared_images_are_refused_before_decoding(
    server: ScoringServer, photo_jpeg: bytes
) -> None:
    assert_error(post(server, png_header(30000, 30000), "image/png"), 413, "image_too_large")
    result = post(server, jpeg_with_size(photo_jpeg, 30000, 30000), "image/jpeg")
    assert_error(result, 413, "image_too_large")
    assert (
        "30000 x 30000" in result[1]["error"]["message"]
        or "pixels" in result[1]["error"]["message"]
    )
    # Under Pillow's own bomb limit but over ours (40 Mpx): our check refuses it.
    result = post(server, png_header(8000, 6000), "image/png")
    assert_error(result, 413, "image_too_large")
    assert "8000 x 6000" in result[1]["error"]["message"]


def test_content_type_must_be_an_image(server: ScoringServer, photo_jpeg: bytes) -> None:
    assert_error(post(server, photo_jpeg, "text/plain"), 415, "unsupported_media_type")
    assert_error(
        post(server, photo_jpeg, "multipart/form-data; boundary=x"), 415, "unsupported_media_type"
    )
    assert_error(post(server, photo_jpeg, None), 415, "unsupported_media_type")


def test_oversize_bodies_are_refused_from_content_length(server: ScoringServer) -> None:
    # Only the headers are sent: the server must answer without waiting for 1 GB.
    head = (
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    assert_error(raw_exchange(server, head), 413, "body_too_large")
    # A client that sends the whole oversize body still reads the 413 (no connection reset).
    assert_error(post(server, b"\xff" * (MAX_UPLOAD + 50_000)), 413, "body_too_large")


def test_missing_or_invalid_content_length(server: ScoringServer) -> None:
    base = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
    assert_error(raw_exchange(server, base + b"\r\nabc", half_close=True), 411, "length_required")
    chunked = base + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert_error(raw_exchange(server, chunked), 411, "length_required")
    for value in (b"abc", b"-5", b"1e3", b"12, 12"):
        result = raw_exchange(server, base + b"Content-Length: " + value + b"\r\n\r\n")
        assert_error(result, 400, "bad_content_length")
    # Declares 1000 bytes, sends 10 and closes its side: incomplete body.
    short = base + b"Content-Length: 1000\r\n\r\n" + b"0123456789"
    assert_error(raw_exchange(server, short, half_close=True), 400, "incomplete_body")
    # Sends 10 and then nothing: the read times out (the server's timeout is 1 s here).
    assert_error(raw_exchange(server, short), 408, "timeout")


def test_bad_threshold_paths_and_methods(server: ScoringServer, photo_jpeg: bytes) -> None:
    assert_error(post(server, photo_jpeg, path="/score?score_threshold=high"), 400, "bad_threshold")
    assert_error(post(server, photo_jpeg, path="/score?score_threshold=1.5"), 400, "bad_threshold")
    assert_error(post(server, photo_jpeg, path="/predict"), 404, "not_found")
    status, _headers, body = request(server, "PUT", "/score", b"x", {"Content-Length": "1"})
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
    status, _, body = request(server, "GET", "/score")
    assert status == 405
    status, _, body = request(server, "GET", "/nothing")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, document = raw_exchange(server, b"GARBAGE\r\n\r\n")
    assert status == 400 and document["error"]["status"] == 400


def test_healthz_and_page(server: ScoringServer) -> None:
    status, headers, body = request(server, "GET", "/healthz")
    document = json.loads(body)
    assert status == 200 and document["status"] == "ok" and document["model_loaded"] is True
    assert document["model_version"] == "3" and document["classes"] == ["helmet", "head"]
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "<canvas" in page and "/score" in page
    assert "http://" not in page and "https://" not in page  # self-contained


MUTATIONS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        ["image/jpeg", "image/png", "application/octet-stream", "image/gif", "text/plain", ""]
    ),
    HEADER_TEXT,
)


@st.composite
def bodies(draw: st.DrawFn, jpeg: bytes, png: bytes) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "resized", "header"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    source = draw(st.sampled_from([jpeg, png]))
    if kind == "truncated":
        return source[: draw(st.integers(0, len(source)))]
    if kind == "resized":
        if source is png:
            return png_header(draw(st.integers(0, 70000)), draw(st.integers(0, 70000)))
        return jpeg_with_size(source, draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    if kind == "header":
        return source[: draw(st.integers(0, 700))] + draw(st.binary(max_size=200))
    data = bytearray(source)
    for position, value in draw(MUTATIONS):
        data[position % len(data)] = value
    return bytes(data)


def test_fuzzed_requests_never_get_a_5xx(server: ScoringServer, photo_jpeg: bytes) -> None:
    small_png = io.BytesIO()
    Image.open(PHOTOS / "hard_hat_workers18.png").convert("RGB").resize((64, 48)).save(
        small_png, "PNG"
    )
    statuses: dict[int, int] = {}

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=bodies(photo_jpeg, small_png.getvalue()),
        content_type=CONTENT_TYPES,
        extra=st.dictionaries(
            st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True), HEADER_TEXT, max_size=3
        ),
        query=st.one_of(
            st.just(""), st.from_regex(r"score_threshold=[0-9a-z.\-]{0,6}", fullmatch=True)
        ),
    )
    def check(body: bytes, content_type: str, extra: dict[str, str], query: str) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
        status, _response_headers, data = request(
            server, "POST", "/score" + ("?" + query if query else ""), body, headers
        )
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, data[:300]
        document = json.loads(data)
        if status >= 400:
            assert document["error"]["status"] == status
        else:
            assert status == 200 and "detections" in document

    check()
    assert sum(statuses.values()) >= 1000
    assert {200, 400, 415} <= set(statuses), statuses  # the fuzzer reached the decoder and beyond
    status, _, body = request(server, "GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
