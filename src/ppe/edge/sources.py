"""Frame sources for the module loop: an image folder, a video file, an RTSP stream or a USB camera.

Every source is an iterator of :class:`Frame` ``(frame_id, timestamp, image)`` where ``image`` is
an RGB uint8 ``(H, W, 3)`` array and ``timestamp`` is the UNIX time the frame was captured (read).
Sources stop early when their ``stop_event`` is set, so the module can shut down promptly.

The source string (``FRAME_SOURCE``) selects the kind:

* ``rtsp://...``, ``rtsps://...``, ``http(s)://...``: a network stream through OpenCV; read
  failures close the stream and reconnect with exponential back-off (never give up);
* ``usb:N``: the local camera with index ``N`` (reconnects like a stream);
* a folder: its images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``) in sorted name order;
* any other existing file: a video file through OpenCV.

OpenCV is imported only when a video, stream or camera is opened.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from PIL import Image

from ppe.errors import FrameSourceError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:[^=&;#\s]*(?:pass|pwd|token|secret|key|sig|auth)[^=&;#\s]*)=)[^&;#\s]*",
    re.IGNORECASE,
)


def redact(source: str) -> str:
    """``source`` safe to log: URL credentials and secret-looking query values as ``***``.

    The user part of a URL (``rtsp://user:pass@host``) and the values of query keys that look
    secret (``password=``, ``token=``, ``sig=``...) are replaced.
    """
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>***@", source))


class Frame(NamedTuple):
    """One frame.

    Attributes:
        frame_id: sequence number from 0 within this source.
        timestamp: UNIX time (seconds) the frame was read.
        image: uint8 ``(H, W, 3)`` RGB.
    """

    frame_id: int
    timestamp: float
    image: np.ndarray


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use (a test can pass a fake)."""

    def isOpened(self) -> bool:
        """Whether the capture is open."""
        ...

    def read(self) -> tuple[bool, Any]:
        """Read the next BGR frame."""
        ...

    def get(self, prop_id: int) -> float:
        """Read a capture property."""
        ...

    def release(self) -> None:
        """Close the capture."""
        ...


CaptureFactory = Callable[[str | int], Capture]


def _opencv_capture(target: str | int) -> Capture:
    import cv2

    capture: Capture = cv2.VideoCapture(target)
    return capture


class _Pacer:
    """Sleeps so frames are yielded at most ``frame_rate`` per second (interruptible)."""

    def __init__(self, frame_rate: float | None, stop_event: threading.Event) -> None:
        if frame_rate is not None and frame_rate <= 0:
            raise FrameSourceError(f"frame rate must be positive, got {frame_rate}")
        self._interval = 1.0 / frame_rate if frame_rate else 0.0
        self._stop = stop_event
        self._next = time.monotonic()

    def wait(self) -> bool:
        """Wait for the next slot; False when stopped meanwhile."""
        if self._interval:
            now = time.monotonic()
            if self._next > now and self._stop.wait(self._next - now):
                return False
            self._next = max(self._next + self._interval, time.monotonic())
        return not self._stop.is_set()


class ImageFolderSource:
    """The images of a folder in sorted name order, optionally looping forever.

    Args:
        folder: the folder.
        loop: start again after the last image.
        frame_rate: most frames per second, or None for as fast as they are consumed.
        stop_event: set to end the iteration.

    Raises:
        FrameSourceError: the folder does not exist or holds no image.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        loop: bool = True,
        frame_rate: float | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FrameSourceError(f"frame source {self.folder} is not a folder")
        self.files = sorted(
            path
            for path in self.folder.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise FrameSourceError(
                f"frame source {self.folder} holds no image ({', '.join(IMAGE_SUFFIXES)})"
            )
        self.loop = loop
        self.stop_event = stop_event or threading.Event()
        self._frame_rate = frame_rate

    def __iter__(self) -> Iterator[Frame]:
        pacer = _Pacer(self._frame_rate, self.stop_event)
        frame_id = 0
        while True:
            yielded = False
            for path in self.files:
                try:
                    with Image.open(path) as opened:
                        image = np.asarray(opened.convert("RGB"))
                except (OSError, ValueError) as error:
                    logger.warning("skipping unreadable image %s: %s", path, error)
                    continue
                if not pacer.wait():
                    return
                yield Frame(frame_id, time.time(), image)
                frame_id += 1
                yielded = True
            if not self.loop or not yielded:
                if not yielded:
                    logger.error("no readable image in %s", self.folder)
                return

    def close(self) -> None:
        """Stop iterating."""
        self.stop_event.set()


class VideoSource:
    """Frames from OpenCV: a video file, a network stream or a USB camera.

    Files end at their last frame (or loop); streams and cameras reconnect after a failure,
    waiting ``reconnect_delay_s`` doubled after each failed attempt up to ``max_reconnect_delay_s``.

    Args:
        target: a file path, a stream URL or a camera index.
        live: True for streams and cameras (reconnect), False for files.
        loop: for files, start again at the end.
        frame_rate: most frames per second; for files, None plays at the file's own rate; for
            live sources extra frames are read and dropped so the latest frame is used.
        stop_event: set to end the iteration.
        capture_factory: opens a capture (``cv2.VideoCapture`` by default).
        reconnect_delay_s: first back-off delay after a live source fails.
        max_reconnect_delay_s: longest back-off delay.
    """

    def __init__(
        self,
        target: str | int,
        *,
        live: bool,
        loop: bool = False,
        frame_rate: float | None = None,
        stop_event: threading.Event | None = None,
        capture_factory: CaptureFactory = _opencv_capture,
        reconnect_delay_s: float = 1.0,
        max_reconnect_delay_s: float = 30.0,
    ) -> None:
        self.target = target
        self.live = live
        self.loop = loop
        self.stop_event = stop_event or threading.Event()
        self._factory = capture_factory
        self._frame_rate = frame_rate
        self._reconnect_delay_s = reconnect_delay_s
        self._max_reconnect_delay_s = max_reconnect_delay_s
        self.reconnects = 0

    def _describe(self) -> str:
        if isinstance(self.target, int):
            return f"usb:{self.target}"
        return redact(self.target)  # never log stream credentials

    def _open(self) -> Capture | None:
        """Open the capture; None if it did not open (live sources retry)."""
        capture = self._factory(self.target)
        if capture.isOpened():
            return capture
        capture.release()
        if not self.live:
            raise FrameSourceError(f"video file {self._describe()} cannot be opened by OpenCV")
        return None

    def _backoff(self, delay: float) -> tuple[bool, float]:
        """Sleep ``delay`` unless stopped; returns (still running, next delay)."""
        self.reconnects += 1
        logger.warning(
            "frame source %s unavailable; reconnecting in %.1f s", self._describe(), delay
        )
        stopped = self.stop_event.wait(delay)
        return not stopped, min(delay * 2.0, self._max_reconnect_delay_s)

    def __iter__(self) -> Iterator[Frame]:
        frame_id = 0
        delay = self._reconnect_delay_s
        while not self.stop_event.is_set():
            capture = self._open()
            if capture is None:
                running, delay = self._backoff(delay)
                if not running:
                    return
                continue
            rate = self._frame_rate
            if rate is None and not self.live:
                native = float(capture.get(5))  # cv2.CAP_PROP_FPS
                rate = native if 0 < native < 1000 else None
            pacer = _Pacer(None if self.live else rate, self.stop_event)
            min_interval = 1.0 / rate if (self.live and rate) else 0.0
            last_yield = 0.0
            try:
                while not self.stop_event.is_set():
                    ok, bgr = capture.read()
                    if not ok or bgr is None:
                        break
                    delay = self._reconnect_delay_s  # a good frame resets the back-off
                    now = time.monotonic()
                    if min_interval and now - last_yield < min_interval:
                        continue  # live source faster than wanted: drop, keep the newest
                    if not pacer.wait():
                        return
                    last_yield = time.monotonic()
                    image = np.ascontiguousarray(np.asarray(bgr)[..., ::-1])
                    yield Frame(frame_id, time.time(), image)
                    frame_id += 1
            finally:
                capture.release()
            if self.stop_event.is_set():
                return
            if not self.live:
                if self.loop:
                    continue
                return
            running, delay = self._backoff(delay)
            if not running:
                return

    def close(self) -> None:
        """Stop iterating."""
        self.stop_event.set()


FrameSource = ImageFolderSource | VideoSource


def open_source(
    source: str,
    *,
    loop: bool = True,
    frame_rate: float | None = None,
    stop_event: threading.Event | None = None,
    capture_factory: CaptureFactory = _opencv_capture,
    reconnect_delay_s: float = 1.0,
    max_reconnect_delay_s: float = 30.0,
) -> FrameSource:
    """Open the frame source a ``FRAME_SOURCE`` string names.

    Args:
        source: an image folder, a video file, ``rtsp://...`` (or http/https/rtsps) or ``usb:N``.
        loop: loop image folders and video files.
        frame_rate: most frames per second (None: folders unpaced, files at their own rate,
            live sources at the camera's rate).
        stop_event: set to stop the source.
        capture_factory: opens OpenCV captures (tests pass a fake).
        reconnect_delay_s: first reconnect delay of live sources.
        max_reconnect_delay_s: longest reconnect delay of live sources.

    Returns:
        An iterable of :class:`Frame`.

    Raises:
        FrameSourceError: the path does not exist, ``usb:`` has no camera index, or the folder
            has no image.
    """
    source = source.strip()
    stop_event = stop_event or threading.Event()
    live_options: dict[str, Any] = {
        "frame_rate": frame_rate,
        "stop_event": stop_event,
        "capture_factory": capture_factory,
        "reconnect_delay_s": reconnect_delay_s,
        "max_reconnect_delay_s": max_reconnect_delay_s,
    }
    if source.lower().startswith(STREAM_PREFIXES):
        return VideoSource(source, live=True, **live_options)
    if source.lower().startswith("usb:"):
        index = source[4:]
        if not index.isdigit():
            raise FrameSourceError(
                f"frame source {redact(source)!r}: write usb:N with the camera index N, e.g. usb:0"
            )
        return VideoSource(int(index), live=True, **live_options)
    path = Path(source)
    if not source or not path.exists():
        raise FrameSourceError(
            f"frame source {redact(source)!r} does not exist; use an image folder, a video file, "
            "an rtsp:// URL or usb:N"
        )
    if path.is_dir():
        return ImageFolderSource(path, loop=loop, frame_rate=frame_rate, stop_event=stop_event)
    return VideoSource(str(path), live=False, loop=loop, **live_options)
