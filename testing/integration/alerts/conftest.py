"""Azurite (the real Blob storage protocol) and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

REPO_ROOT = Path(__file__).resolve().parents[3]
AZURITE = REPO_ROOT / "testing" / "tools" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account and key (public, identical in every installation).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    # pragma: allowlist nextline secret
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def blob_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    """Azurite's blob service on a free loopback port, with a temporary folder."""
    if not AZURITE.is_file() or shutil.which("node") is None:
        pytest.fail(f"Azurite is not installed ({AZURITE}): run make setup")
    port = _free_port()
    location = tmp_path_factory.mktemp("azurite-alerts")
    log = location / "azurite.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(AZURITE),
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
            f"http://127.0.0.1:{port}/{ACCOUNT}",
            credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def records(blob_service: BlobServiceClient, request: pytest.FixtureRequest) -> ContainerClient:
    """A fresh record container per test."""
    client = blob_service.get_container_client(
        f"alert-records-{abs(hash(request.node.name)) % 10**8}"
    )
    client.create_container()
    return client


class Webhook:
    """A real HTTP server on 127.0.0.1 that records every POST; ``fail_next`` answers 500s."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                with outer.lock:
                    failing = outer.fail_next > 0
                    if failing:
                        outer.fail_next -= 1
                    else:
                        outer.received.append(
                            {"body": body, "key": self.headers.get("Idempotency-Key")}
                        )
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ppe"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """The webhook receiver people would be behind."""
    hook = Webhook()
    yield hook
    hook.close()
