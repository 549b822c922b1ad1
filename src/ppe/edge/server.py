"""HTTP scoring on the module: ``POST /score``, ``GET /healthz`` and a small page at ``GET /``.

The standard library's :class:`http.server.ThreadingHTTPServer` is enough here: the endpoint
scores one image per request behind a lock on the interpreter, so an async framework would add a
dependency to the module image without adding throughput. Every response closes its connection
(HTTP/1.0), so a malformed request can never poison the next one.

Client input never causes a 5xx; each refusal is a JSON body ``{"error": {"code", "message"}}``:

=====  =========================================================================
 400   empty body, invalid ``Content-Length``, not a JPEG/PNG image, truncated or
       damaged image data, bad ``score_threshold`` query value, body shorter than declared
 401   ``/score`` without ``Authorization: Bearer <token>`` when the server has a token
 404   unknown path
 405   method not allowed on the path
 408   the body did not arrive within the request deadline (whole request, not per read)
 411   no ``Content-Length`` (chunked uploads are not accepted)
 413   body larger than ``max_upload_bytes`` (checked from ``Content-Length`` before reading),
       or an image whose header declares more than ``max_image_pixels``, an aspect ratio
       beyond :data:`MAX_ASPECT_RATIO`, or a decoded size over ``max_decode_bytes`` (all
       checked from the header, before decoding)
 415   ``Content-Type`` not ``image/jpeg``, ``image/png`` or ``application/octet-stream``
 417   an ``Expect`` header other than ``100-continue``
 503   all ``max_concurrent`` scoring slots stayed busy for ``queue_wait_s`` (``Retry-After``)
=====  =========================================================================

Memory is bounded per request (the decode budget) and across requests (a slot is taken before
the body is read, so at most ``max_concurrent`` bodies and decodes are in memory at once). A
``score_threshold`` query value below :data:`MIN_QUERY_SCORE_THRESHOLD` is raised to it (the
response gives the threshold used): near-zero thresholds multiplied post-processing time 100x.
An ``Expect: 100-continue`` request gets its ``100 Continue`` once the headers are accepted.

Results give boxes as pixel ``[xmin, ymin, xmax, ymax]`` of the uploaded image.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from ppe.edge.runtime import Detector
from ppe.errors import ClientError

logger = logging.getLogger(__name__)

ACCEPTED_CONTENT_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
IMAGE_FORMATS = ["JPEG", "PNG"]
#: Longest wait, after a response, for the client to stop sending and close.
LINGER_S = 2.0
#: Pending connections the kernel queues before accept (the stdlib default of 5 reset clients).
LISTEN_BACKLOG = 128
#: Largest long side / short side accepted (a 1 x 40,000,000 PNG peaked near 830 MB decoded).
MAX_ASPECT_RATIO = 20.0
#: Lowest score threshold a query may ask for; lower values are raised to it.
MIN_QUERY_SCORE_THRESHOLD = 0.05
#: Bytes per pixel Pillow holds for each mode it decodes JPEG and PNG into (``1`` and ``P``
#: use one byte a pixel); the RGB image and the array copy handed to the detector add 6.
_MODE_BYTES = {
    "1": 1,
    "L": 1,
    "P": 1,
    "LA": 2,
    "PA": 2,
    "RGB": 3,
    "RGBA": 4,
    "CMYK": 4,
    "YCbCr": 3,
    "I;16": 2,
    "I;16B": 2,
    "I": 4,
    "F": 4,
}


def decode_image(
    body: bytes, max_image_pixels: int, max_decode_bytes: int = 128 * 1024 * 1024
) -> np.ndarray:
    """Decode an uploaded JPEG or PNG, refusing oversized images before decoding pixels.

    Pillow's ``Image.open`` reads only the header, so the declared size, the aspect ratio and the
    memory the decoded image and its RGB copy need are all checked before any pixel data is
    decompressed.

    Args:
        body: the request body.
        max_image_pixels: the largest ``width * height`` accepted.
        max_decode_bytes: the most memory the decoded pixels (and their RGB copy) may take.

    Returns:
        uint8 ``(H, W, 3)`` RGB.

    Raises:
        ClientError: empty, not a JPEG/PNG, too many pixels, too elongated, over the memory
            budget, or damaged/truncated data.
    """
    if not body:
        raise ClientError(
            HTTPStatus.BAD_REQUEST, "empty_body", "the body is empty; send a JPEG or PNG image"
        )
    try:
        image = Image.open(io.BytesIO(body), formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ClientError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "image_too_large",
            f"the image declares too many pixels ({error}); at most {max_image_pixels} allowed",
        ) from error
    except Exception as error:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise ClientError(
            HTTPStatus.BAD_REQUEST,
            "not_an_image",
            f"the body is not a JPEG or PNG image ({type(error).__name__}); send a JPEG or PNG",
        ) from error
    with image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_image_pixels:
            raise ClientError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "image_too_large",
                f"the image header declares {width} x {height} pixels; at most "
                f"{max_image_pixels} pixels are accepted, resize it first",
            )
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise ClientError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "image_too_large",
                f"the image header declares {width} x {height} pixels, an aspect ratio over "
                f"{MAX_ASPECT_RATIO:g}:1; crop or pad it first",
            )
        needed = width * height * (_MODE_BYTES.get(image.mode, 4) + 6)
        if needed > max_decode_bytes:
            raise ClientError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "image_too_large",
                f"the {width} x {height} {image.mode} image needs about {needed >> 20} MiB of "
                f"memory to decode; at most {max_decode_bytes >> 20} MiB, resize it first",
            )
        try:
            # JPEGs decode to RGB already: no conversion copy for them.
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except Exception as error:  # truncated or corrupt data: OSError, SyntaxError, ValueError
            raise ClientError(
                HTTPStatus.BAD_REQUEST,
                "bad_image_data",
                f"the {image.format} image data is damaged or truncated ({error})",
            ) from error
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ClientError(
            HTTPStatus.BAD_REQUEST, "bad_image_data", f"unsupported pixel layout {rgb.shape}"
        )
    return rgb


def page_html() -> bytes:
    """The self-contained scoring page served at ``/`` (no external resources)."""
    return resources.files("ppe.edge").joinpath("page.html").read_bytes()


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a listen backlog sized for bursts of clients."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


class ScoringServer:
    """The module's HTTP server.

    Args:
        detector: the detector to score with.
        host: address to bind (``127.0.0.1`` by default; ``0.0.0.0`` for every interface).
        port: TCP port (0 picks a free one; see :attr:`port`).
        max_upload_bytes: largest accepted body.
        max_image_pixels: largest accepted ``width * height``.
        score_threshold: callable giving the default score threshold (the live setting).
        health: callable adding fields (queue depth, settings...) to ``/healthz``; a ``status``
            other than ``ok`` in it turns the answer into a 503.
        request_timeout_s: deadline for receiving a whole request (headers and body).
        max_decode_bytes: memory budget for one decoded image (see :func:`decode_image`).
        max_concurrent: requests scored at once; others wait up to ``queue_wait_s``, then 503.
        queue_wait_s: longest wait for a scoring slot.
        token: the bearer token ``POST /score`` requires (None: no authentication).
        metrics: callable giving Prometheus text lines served at ``/metrics`` with the server's.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_upload_bytes: int = 10 * 1024 * 1024,
        max_image_pixels: int = 40_000_000,
        score_threshold: Callable[[], float] | None = None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        request_timeout_s: float = 10.0,
        max_decode_bytes: int = 128 * 1024 * 1024,
        max_concurrent: int = 2,
        queue_wait_s: float = 5.0,
        token: str | None = None,
        metrics: Callable[[], str] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.max_image_pixels = max_image_pixels
        self.max_decode_bytes = max_decode_bytes
        self.request_timeout_s = request_timeout_s
        self.queue_wait_s = queue_wait_s
        self.token = token
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._score_threshold = score_threshold
        self._health = health
        self._metrics = metrics
        self._page = page_html()
        self.started = time.time()
        self.stats = _RequestStats()
        handler = type("ScoringHandler", (_Handler,), {"app": self, "timeout": request_timeout_s})
        self.httpd = _HTTPServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="http-server", daemon=True
        )
        self._thread.start()
        logger.info("HTTP scoring on port %d (POST /score, GET /healthz, GET /)", self.port)

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop`."""
        logger.info("HTTP scoring on port %d (POST /score, GET /healthz, GET /)", self.port)
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document."""
        spec = self.detector.spec
        document: dict[str, Any] = {
            "status": "ok",
            "model_loaded": True,
            "model_version": self.detector.model_version,
            "architecture": spec.architecture,
            "image_size": spec.image_size,
            "classes": list(spec.class_names),
            "uptime_s": round(time.time() - self.started, 1),
            "queue_depth": None,
        }
        if self._health is not None:
            document.update(self._health())
        return document

    def metrics(self) -> str:
        """``/metrics`` in the Prometheus text format (version 0.0.4)."""
        lines = self.stats.prometheus()
        if self._metrics is not None:
            lines += self._metrics()
        return lines

    def default_threshold(self) -> float | None:
        """The live score threshold, or None for the detector's own default."""
        return self._score_threshold() if self._score_threshold is not None else None

    def score(self, body: bytes, query: str) -> dict[str, Any]:
        """Score one uploaded image.

        Args:
            body: JPEG or PNG bytes.
            query: the URL query string (``score_threshold=0.3`` overrides the threshold).

        Returns:
            ``detections`` (label, class_id, score, pixel ``box`` xyxy), ``image`` size,
            ``model`` (version, architecture), ``score_threshold`` and ``timings_ms``.

        Raises:
            ClientError: bad query or image.
        """
        threshold = self.default_threshold()
        values = parse_qs(query, keep_blank_values=True).get("score_threshold")
        if values:
            try:
                threshold = float(values[-1])
            except ValueError:
                threshold = float("nan")
            if not 0.0 < threshold < 1.0:
                raise ClientError(
                    HTTPStatus.BAD_REQUEST,
                    "bad_threshold",
                    f"score_threshold must be a number in (0, 1), got {values[-1]!r}",
                )
            threshold = max(threshold, MIN_QUERY_SCORE_THRESHOLD)
        start = time.perf_counter()
        image = decode_image(body, self.max_image_pixels, self.max_decode_bytes)
        decoded = time.perf_counter()
        result = self.detector.detect(image, threshold)
        document = result.to_dict()
        document["timings_ms"]["decode"] = round((decoded - start) * 1000.0, 3)
        document["timings_ms"]["total"] = round((time.perf_counter() - start) * 1000.0, 3)
        document["model"] = {
            "version": self.detector.model_version,
            "architecture": self.detector.spec.architecture,
        }
        document["score_threshold"] = threshold
        self.stats.scored(time.perf_counter() - start)
        return document


class _RequestStats:
    """Request counters for ``/metrics``. Thread-safe."""

    #: Upper bounds (seconds) of the scoring latency histogram.
    BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: dict[int, int] = {}
        self._buckets = [0] * len(self.BUCKETS)
        self._count = 0
        self._sum = 0.0

    def answered(self, status: int) -> None:
        with self._lock:
            self.responses[status] = self.responses.get(status, 0) + 1

    def scored(self, seconds: float) -> None:
        with self._lock:
            self._count += 1
            self._sum += seconds
            for index, bound in enumerate(self.BUCKETS):
                if seconds <= bound:
                    self._buckets[index] += 1

    def prometheus(self) -> str:
        with self._lock:
            lines = [
                "# HELP ppe_http_responses_total HTTP responses by status code.",
                "# TYPE ppe_http_responses_total counter",
                *(
                    f'ppe_http_responses_total{{code="{code}"}} {count}'
                    for code, count in sorted(self.responses.items())
                ),
                "# HELP ppe_score_seconds Time to decode and score one uploaded image.",
                "# TYPE ppe_score_seconds histogram",
                *(
                    f'ppe_score_seconds_bucket{{le="{bound:g}"}} {count}'
                    for bound, count in zip(self.BUCKETS, self._buckets, strict=True)
                ),
                f'ppe_score_seconds_bucket{{le="+Inf"}} {self._count}',
                f"ppe_score_seconds_sum {self._sum:.6f}",
                f"ppe_score_seconds_count {self._count}",
            ]
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    """Request handler; ``app`` and ``timeout`` are set on a subclass per server."""

    app: ScoringServer
    server_version = "ppe-edge"
    sys_version = ""
    error_content_type = "application/json"

    def setup(self) -> None:
        """Start the request deadline: past it, reads see end-of-file (slow clients end)."""
        super().setup()
        self.expired = False
        self._deadline = threading.Timer(self.app.request_timeout_s, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        self.expired = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def received(self) -> None:
        """The whole request is in: stop its deadline (scoring may take longer)."""
        self._deadline.cancel()

    def finish(self) -> None:
        """Lingering close: discard what the client still sends, so closing never resets.

        A response sent before the whole body was read (413, or a body longer than its
        ``Content-Length``) would otherwise be lost to a TCP reset when the socket closes with
        unread data. Bounded by ``max_upload_bytes`` and :data:`LINGER_S`.
        """
        self._deadline.cancel()
        super().finish()
        if self.expired:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            deadline = time.monotonic() + LINGER_S
            discarded = 0
            while discarded <= self.app.max_upload_bytes and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send(
        self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None
    ) -> None:
        self.app.stats.answered(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _json(
        self, status: int, document: Mapping[str, Any], extra: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(document, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json", extra)

    def _error(
        self, status: int, code: str, message: str, extra: Mapping[str, str] | None = None
    ) -> None:
        if status >= 500 and status != HTTPStatus.SERVICE_UNAVAILABLE:
            logger.error("HTTP %d %s: %s", status, code, message)
        else:
            logger.info("HTTP %d %s: %s", status, code, message)
        document = {"error": {"code": code, "message": message, "status": status}}
        self._json(status, document, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests the stdlib rejects itself (bad request line, long headers...)."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        if getattr(self, "command", None) is None:
            self.command = "GET"
        # An unparsable request line leaves the stdlib assuming HTTP/0.9 (body only, no status
        # line); answer with a full HTTP/1.0 response instead.
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self._error(code, phrase.lower().replace(" ", "_"), message or phrase)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(
                HTTPStatus.OK,
                self.app._page,
                "text/html; charset=utf-8",
                {
                    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                    "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self'"
                },
            )
        elif path == "/healthz":
            document = self.app.health()
            ok = document.get("status") == "ok"
            self._json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, document)
        elif path == "/metrics":
            body = self.app.metrics().encode("utf-8")
            self._send(HTTPStatus.OK, body, "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/score":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", "POST an image")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such path {path!r}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{self.command} is not supported; use GET /, /healthz or /metrics, POST /score",
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _content_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ClientError(
                HTTPStatus.LENGTH_REQUIRED,
                "length_required",
                "chunked uploads are not accepted; send Content-Length",
            )
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            raise ClientError(
                HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length header is required"
            )
        # ASCII digits only: "²".isdigit() is True but int("²") raises.
        if not (raw_length.strip().isascii() and raw_length.strip().isdigit()):
            raise ClientError(
                HTTPStatus.BAD_REQUEST,
                "bad_content_length",
                f"Content-Length must be a non-negative integer, got {raw_length[:40]!r}",
            )
        length = int(raw_length.strip())
        if length > self.app.max_upload_bytes:
            raise ClientError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "body_too_large",
                f"the body is {length} bytes; at most {self.app.max_upload_bytes} are accepted",
            )
        return length

    def _receive(self, length: int) -> bytes:
        timeout = ClientError(
            HTTPStatus.REQUEST_TIMEOUT,
            "timeout",
            f"the request did not arrive within {self.app.request_timeout_s:g} s; "
            "send all Content-Length bytes",
        )
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError) as error:
            raise timeout from error
        if self.expired:
            raise timeout
        self.received()
        if len(body) < length:
            raise ClientError(
                HTTPStatus.BAD_REQUEST,
                "incomplete_body",
                f"the body has {len(body)} bytes but Content-Length said {length}",
            )
        return body

    def _authorize(self) -> None:
        token = self.app.token
        if token is None:
            return
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), token.encode("utf-8")
        ):
            raise ClientError(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                "POST /score needs the header `Authorization: Bearer <token>` with the module's "
                "SCORE_TOKEN",
            )

    def _content_type(self) -> None:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            raise ClientError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                f"Content-Type {content_type or '(none)'!r} is not accepted; use "
                + ", ".join(ACCEPTED_CONTENT_TYPES),
            )

    def _continue(self) -> None:
        """Answer ``Expect: 100-continue`` (HTTP/1.1 clients) once the headers are accepted."""
        expect = self.headers.get("Expect", "").strip().lower()
        if not expect or self.request_version == "HTTP/1.0":
            return
        if expect != "100-continue":
            raise ClientError(
                HTTPStatus.EXPECTATION_FAILED,
                "expectation_failed",
                f"Expect: {expect[:40]!r} is not supported; send 100-continue or none",
            )
        self._content_type()
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/score":
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such path {url.path!r}")
            return
        slot = False
        try:
            self._authorize()
            length = self._content_length()
            # A slot before the body is read: at most max_concurrent bodies and decodes in memory.
            slot = self.app._slots.acquire(timeout=self.app.queue_wait_s)
            if not slot:
                raise ClientError(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "busy",
                    "every scoring slot is busy; retry in a second",
                )
            self._continue()
            # The body is read (within the size limit) before the type check, so the connection
            # never closes on unread data (which would reset it before the client reads a 415).
            body = self._receive(length)
            self._content_type()
            document = self.app.score(body, url.query)
        except ClientError as error:
            extra = {"Retry-After": "1"} if error.code == "busy" else None
            if error.status == HTTPStatus.UNAUTHORIZED:
                extra = {"WWW-Authenticate": 'Bearer realm="ppe-edge"'}
            self._error(error.status, error.code, error.message, extra)
            return
        except Exception:
            logger.exception("scoring failed")
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "scoring failed; see the logs"
            )
            return
        finally:
            if slot:
                self.app._slots.release()
        self._json(HTTPStatus.OK, document)
