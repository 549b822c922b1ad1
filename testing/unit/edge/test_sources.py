from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from ppe.edge.sources import (
    FrameSourceError,
    ImageFolderSource,
    VideoSource,
    open_source,
    redact,
)


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.new("RGB", (32, 24), (index * 40, 0, 0)).save(folder / name)


def test_image_folder_in_sorted_order_and_looping(tmp_path: Path) -> None:
    write_images(tmp_path, ["b.png", "a.jpg", "c.PNG"])
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path), loop=True)
    assert isinstance(source, ImageFolderSource)
    assert [path.name for path in source.files] == ["a.jpg", "b.png", "c.PNG"]
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 7:
            source.close()
    assert [frame.frame_id for frame in frames] == list(range(7))
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (24, 32, 3)
    # b.png was written with red 0, a.jpg with 40 (JPEG: approximately): the order repeats.
    assert frames[1].image[0, 0, 0] == frames[4].image[0, 0, 0] == 0
    assert abs(int(frames[0].image[0, 0, 0]) - 40) <= 3
    once = list(open_source(str(tmp_path), loop=False))
    assert len(once) == 3


def test_frame_rate_paces_a_folder(tmp_path: Path) -> None:
    write_images(tmp_path, ["a.png"])
    source = open_source(str(tmp_path), frame_rate=20.0)
    start = time.monotonic()
    for frame in source:
        if frame.frame_id == 5:
            break
    assert time.monotonic() - start >= 5 / 20.0 - 0.02


def test_missing_and_bad_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match="does not exist; use an image folder"):
        open_source(str(tmp_path / "nowhere"))
    with pytest.raises(FrameSourceError, match="write usb:N"):
        open_source("usb:front")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FrameSourceError, match="holds no image"):
        open_source(str(empty))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameSourceError, match="cannot be opened"):
        list(open_source(str(broken)))


def test_video_file_frames_are_rgb(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    assert writer.isOpened()
    for _ in range(6):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 2] = 220  # red in OpenCV's BGR order
        writer.write(bgr)
    writer.release()
    source = open_source(str(path), loop=False, frame_rate=1000.0)
    assert isinstance(source, VideoSource) and not source.live
    frames = list(source)
    assert len(frames) == 6
    red, green, blue = (int(value) for value in frames[0].image[24, 32])
    assert red > 180 and green < 40 and blue < 40
    assert frames[0].image.shape == (48, 64, 3)


class FakeCapture:
    """A stream that opens or fails as scripted; each open yields some frames then drops."""

    def __init__(self, opens: bool, frames: int) -> None:
        self.opens = opens
        self.frames = frames
        self.released = False

    def isOpened(self) -> bool:
        return self.opens

    def read(self) -> tuple[bool, Any]:
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop_id: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_rtsp_reconnects_after_failures() -> None:
    script = [
        FakeCapture(False, 0),
        FakeCapture(True, 2),
        FakeCapture(False, 0),
        FakeCapture(True, 3),
    ]
    opened: list[str | int] = []

    def factory(target: str | int) -> FakeCapture:
        opened.append(target)
        return script[len(opened) - 1] if len(opened) <= len(script) else FakeCapture(False, 0)

    stop = threading.Event()
    source = open_source(
        "rtsp://user:secret@camera.local/stream",
        stop_event=stop,
        capture_factory=factory,
        reconnect_delay_s=0.01,
        max_reconnect_delay_s=0.02,
    )
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 5:
            stop.set()
    assert [frame.frame_id for frame in frames] == [0, 1, 2, 3, 4]
    assert opened[:4] == ["rtsp://user:secret@camera.local/stream"] * 4
    assert isinstance(source, VideoSource) and source.reconnects >= 3
    assert all(capture.released for capture in script)


def test_usb_camera_index_is_passed_to_opencv() -> None:
    seen: list[str | int] = []

    def factory(target: str | int) -> FakeCapture:
        seen.append(target)
        return FakeCapture(True, 1)

    stop = threading.Event()
    source = open_source("usb:2", stop_event=stop, capture_factory=factory)
    first = next(iter(source))
    stop.set()
    assert seen == [2] and first.image.shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsps://cam@10.0.0.5/s", "rtsps://***@10.0.0.5/s"),
        (
            "http://10.0.0.5/video?user=a&password=hunter2&ch=1",
            "http://10.0.0.5/video?user=a&password=***&ch=1",
        ),
        ("https://x/feed.mjpg?sig=hunter2", "https://x/feed.mjpg?sig=***"),
        ("/data/frames", "/data/frames"),
        ("usb:0", "usb:0"),
    ],
)
def test_sources_are_redacted_for_logs(source: str, expected: str) -> None:
    assert redact(source) == expected


def test_errors_never_show_stream_credentials() -> None:
    # A typo in the scheme makes the URL look like a path: the error must still hide the password.
    with pytest.raises(FrameSourceError) as caught:
        open_source("rstp://admin:hunter2@10.0.0.5/stream")
    assert "hunter2" not in str(caught.value) and "***@10.0.0.5" in str(caught.value)
