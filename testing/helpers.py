"""Helpers shared by tests, importable as ``testing.helpers`` (the repo root is on the path)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def run_ppe(
    *args: str, cwd: Path, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``ppe`` CLI as users do, in a subprocess, and capture its output.

    Raises:
        AssertionError: ``check`` is set and the command exited non-zero (its stderr tail is shown).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "ppe", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ppe {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result


#: Flags for Debian's Chromium in a sandbox with no network (see the machine notes in the README).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    """Debian's Chromium (``make setup-system`` installs it); fails the test when missing."""
    import shutil

    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is missing: run `make setup-system` (Debian package chromium)")
    return found


EVALUATION_THRESHOLDS = {
    "score_threshold": 0.01,
    "nms_iou_threshold": 0.45,
    "nms": "class-aware hard NMS",
    "max_detections": 100,
    "iou_threshold": 0.5,
    "ap_definition": "PASCAL VOC 2010+ all-point, +1-pixel IoU, difficult ignored",
}


def evaluation_metrics(map50: Any, **overrides: Any) -> dict[str, Any]:
    """A complete ``metrics.json`` as ``ppe evaluate`` writes it (two classes, made-up counts)."""
    classes = ["helmet", "head"]
    counts = {
        "ap": map50,
        "num_ground_truth": 4,
        "num_difficult": 0,
        "num_detections": 5,
        "tp": 3,
        "fp": 2,
        "ignored": 0,
    }
    data: dict[str, Any] = {
        "map50": map50,
        "ap": {name: map50 for name in classes},
        "per_class": {name: dict(counts) for name in classes},
        "classes": classes,
        "counts": {
            "images": 4,
            "ground_truth": {name: 4 for name in classes},
            "detections": {name: 5 for name in classes},
        },
        "thresholds": dict(EVALUATION_THRESHOLDS),
        "split": "test",
        "data_hash": "d41d8cd9",
        "model_hash": f"model-{map50}",
        "backend": "keras",
        "images_per_second": 10.0,
    }
    data.update(overrides)
    return data


REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BLOB = REPO_ROOT / "testing" / "tools" / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's documented development account and key (public, identical in every installation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = (
    # pragma: allowlist nextline secret
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def azurite_blob_service(location: Path) -> Iterator[Any]:
    """Azurite's blob service (npm ``azurite``, the real storage protocol) on a free loopback port.

    Args:
        location: an empty folder for Azurite's data and its log (``azurite.log``).

    Yields:
        an ``azure.storage.blob.BlobServiceClient`` for the development account.

    Raises:
        pytest.fail.Exception: Azurite is not installed (run ``make setup``), exits, or does not
            listen within 30 s (its log is shown).
    """
    import pytest
    from azure.storage.blob import BlobServiceClient

    if not AZURITE_BLOB.is_file() or shutil.which("node") is None:
        pytest.fail(f"Azurite is not installed ({AZURITE_BLOB}): run make setup")
    port = free_port()
    log = location / "azurite.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(AZURITE_BLOB),
                *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
                *("--location", str(location), "--skipApiVersionCheck", "--loose", "--silent"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"Azurite exited ({process.returncode}): {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Azurite did not listen within 30 s")
                time.sleep(0.1)
        yield BlobServiceClient(
            f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
            credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_ACCOUNT_KEY},
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
