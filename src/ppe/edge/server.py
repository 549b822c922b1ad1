"""HTTP scoring on the module: ``POST /score``, ``GET /healthz`` and a small page at ``GET /``.

The standard library's :class:`http.server.ThreadingHTTPServer` is enough here: the endpoint
scores one image per request behind a lock on the interpreter, so an async framework would add a
dependency to the module image without adding throughput. Every response closes its connection
(HTTP/1.0), so a malformed request can never poison the next one.

Client input never causes a 5xx; each refusal is a JSON body ``{"error": {"code", "message"}}``:

=====  =========================================================================
 400   empty body, invalid ``Content-Length``, not a JPEG/PNG image, truncated or
       damaged image data, bad ``score_threshold`` query value, body shorter than declared
 404   unknown path
 405   method not allowed on the path
 408   the body did not arrive within the request timeout
 411   no ``Content-Length`` (chunked uploads are not accepted)
 413   body larger than ``max_upload_bytes`` (checked from ``Content-Length`` before reading),
       or an image whose header declares more than ``max_image_pixels`` (checked before decoding)
 415   ``Content-Type`` not ``image/jpeg``, ``image/png`` or ``application/octet-stream``
=====  =========================================================================

Results give boxes as pixel ``[xmin, ymin, xmax, ymax]`` of the uploaded image.
"""

from __future__ import annotations

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


def decode_image(body: bytes, max_image_pixels: int) -> np.ndarray:
    """Decode an uploaded JPEG or PNG, refusing oversized images before decoding pixels.

    Pillow's ``Image.open`` reads only the header, so the declared size is checked before any
    pixel data is decompressed.

    Args:
        body: the request body.
        max_image_pixels: the largest ``width * height`` accepted.

    Returns:
        uint8 ``(H, W, 3)`` RGB.

    Raises:
        ClientError: empty, not a JPEG/PNG, too many pixels, or damaged/truncated data.
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


class ScoringServer:
    """The module's HTTP server.

    Args:
        detector: the detector to score with.
        host: address to bind (``0.0.0.0`` in the container).
        port: TCP port (0 picks a free one; see :attr:`port`).
        max_upload_bytes: largest accepted body.
        max_image_pixels: largest accepted ``width * height``.
        score_threshold: callable giving the default score threshold (the live setting).
        health: callable adding fields (queue depth, settings...) to ``/healthz``.
        request_timeout_s: socket timeout for reading a request.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        host: str = "0.0.0.0",
        port: int = 8080,
        max_upload_bytes: int = 10 * 1024 * 1024,
        max_image_pixels: int = 40_000_000,
        score_threshold: Callable[[], float] | None = None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.max_image_pixels = max_image_pixels
        self._score_threshold = score_threshold
        self._health = health
        self._page = page_html()
        self.started = time.time()
        handler = type("ScoringHandler", (_Handler,), {"app": self, "timeout": request_timeout_s})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
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
        start = time.perf_counter()
        image = decode_image(body, self.max_image_pixels)
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
        return document


class _Handler(BaseHTTPRequestHandler):
    """Request handler; ``app`` and ``timeout`` are set on a subclass per server."""

    app: ScoringServer
    server_version = "ppe-edge"
    sys_version = ""
    error_content_type = "application/json"

    def finish(self) -> None:
        """Lingering close: discard what the client still sends, so closing never resets.

        A response sent before the whole body was read (413, or a body longer than its
        ``Content-Length``) would otherwise be lost to a TCP reset when the socket closes with
        unread data. Bounded by ``max_upload_bytes`` and :data:`LINGER_S`.
        """
        super().finish()
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

    def _json(self, status: int, document: Mapping[str, Any]) -> None:
        body = json.dumps(document, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json")

    def _error(self, status: int, code: str, message: str) -> None:
        if status >= 500:
            logger.error("HTTP %d %s: %s", status, code, message)
        else:
            logger.info("HTTP %d %s: %s", status, code, message)
        self._json(status, {"error": {"code": code, "message": message, "status": status}})

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
            self._json(HTTPStatus.OK, self.app.health())
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
            f"{self.command} is not supported; use GET / or /healthz, POST /score",
        )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _read_body(self) -> bytes:
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
        if not raw_length.strip().isdigit():
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
        try:
            body = self.rfile.read(length)
        except TimeoutError as error:
            raise ClientError(
                HTTPStatus.REQUEST_TIMEOUT,
                "timeout",
                "the body did not arrive in time; send all Content-Length bytes",
            ) from error
        if len(body) < length:
            raise ClientError(
                HTTPStatus.BAD_REQUEST,
                "incomplete_body",
                f"the body has {len(body)} bytes but Content-Length said {length}",
            )
        return body

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/score":
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no such path {url.path!r}")
            return
        try:
            # The body is read (within the size limit) before the type check, so the connection
            # never closes on unread data (which would reset it before the client reads a 415).
            body = self._read_body()
            content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if content_type not in ACCEPTED_CONTENT_TYPES:
                raise ClientError(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    f"Content-Type {content_type or '(none)'!r} is not accepted; use "
                    + ", ".join(ACCEPTED_CONTENT_TYPES),
                )
            document = self.app.score(body, url.query)
        except ClientError as error:
            self._error(error.status, error.code, error.message)
            return
        except Exception:
            logger.exception("scoring failed")
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "scoring failed; see the logs"
            )
            return
        self._json(HTTPStatus.OK, document)
