"""Azurite (the real Blob storage protocol) and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from testing.helpers import azurite_blob_service

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def blob_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlobServiceClient]:
    """Azurite's blob service on a free loopback port, with a temporary folder."""
    with azurite_blob_service(tmp_path_factory.mktemp("azurite-alerts")) as service:
        yield service


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
