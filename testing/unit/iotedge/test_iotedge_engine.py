"""ppe.iotedge.engine: the ContainerCreate body from a manifest, and the Engine API client.

The client is tested against a real HTTP server on a unix socket standing in for the Docker
daemon (no engine in unit tests; the container tests run it against Debian's dockerd). The
Engine API's routes and statuses used here: create, start, and DELETE with ``force`` (404 for
no such container), https://docs.docker.com/reference/api/engine/version/v1.41/.
"""

from __future__ import annotations

import copy
import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ppe.iotedge import manifest as m
from ppe.iotedge.engine import (
    DOCKER_API,
    DockerEngineError,
    engine_request,
    module_container_body,
    remove_container,
    start_container,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "environments" / "iotedge" / "deployment.template.json"


@pytest.fixture
def manifest(edge_env: dict[str, str]) -> dict[str, Any]:
    return m.render_manifest(TEMPLATE, edge_env, "amd64", tag="model3-1")


def test_the_body_is_the_manifests_create_options_with_the_image_and_env(
    manifest: dict[str, Any],
) -> None:
    before = copy.deepcopy(manifest)
    body = module_container_body(
        manifest, "ppedetector:local", {"HTTP_PORT": "18080", "EXTRA": "1"}, network_mode="host"
    )
    options = m.module_create_options(manifest)
    # Every limit and the hardening exactly as the agent would pass them.
    for field in ("Memory", "MemorySwap", "PidsLimit", "ReadonlyRootfs", "CapDrop", "SecurityOpt"):
        assert body["HostConfig"][field] == options["HostConfig"][field], field
    assert body["HostConfig"]["Binds"] == options["HostConfig"]["Binds"]
    assert body["HostConfig"]["NetworkMode"] == "host"
    assert body["Image"] == "ppedetector:local"
    env = dict(item.split("=", 1) for item in body["Env"])
    assert env["HTTP_PORT"] == "18080" and env["EXTRA"] == "1"
    assert env["MODEL_VERSION"] == m.module_env(manifest)["MODEL_VERSION"] == "3"
    assert manifest == before  # the manifest is not changed
    # Without a network mode the agent's own choice stays.
    plain = module_container_body(manifest, "x")
    assert plain["HostConfig"].get("NetworkMode") == options["HostConfig"].get("NetworkMode")


class _Daemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    calls: list[tuple[str, str, Any]]
    containers: set[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Daemon

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: Any = None) -> None:
        data = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.calls.append((self.command, self.path, body))
        path = self.path.removeprefix(DOCKER_API)
        if self.command == "POST" and path.startswith("/containers/create?name="):
            self.server.containers.add(path.split("=", 1)[1])
            self._answer(201, {"Id": "abc", "Warnings": []})
        elif self.command == "POST" and path.endswith("/start"):
            self._answer(204)
        elif self.command == "DELETE":
            name = path.split("/")[2].split("?")[0]
            if name in self.server.containers:
                self.server.containers.discard(name)
                self._answer(204)
            else:
                self._answer(404, {"message": f"No such container: {name}"})
        else:
            self._answer(500, {"message": "server error"})

    do_POST = do_DELETE = do_GET = _handle


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, _Daemon]]:
    server = _Daemon(str(tmp_path / "docker.sock"), _Handler)
    server.calls, server.containers = [], set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{tmp_path / 'docker.sock'}", server
    server.shutdown()
    server.server_close()


def test_start_and_remove_through_the_engine_api(
    daemon: tuple[str, _Daemon], manifest: dict[str, Any]
) -> None:
    host, server = daemon
    body = module_container_body(manifest, "ppedetector:local")
    start_container(host, "ppe-one", body)
    assert [(method, path) for method, path, _ in server.calls] == [
        ("POST", f"{DOCKER_API}/containers/create?name=ppe-one"),
        ("POST", f"{DOCKER_API}/containers/ppe-one/start"),
    ]
    assert server.calls[0][2] == body
    remove_container(host, "ppe-one")
    assert server.calls[-1][:2] == ("DELETE", f"{DOCKER_API}/containers/ppe-one?force=true&v=true")
    remove_container(host, "ppe-one")  # gone already: a 404, which is no error
    with pytest.raises(DockerEngineError, match=r"GET /info: 500 .*server error"):
        engine_request(host, "GET", "/info")


def test_an_unreachable_or_unknown_docker_host_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DockerEngineError, match="Docker engine at unix://"):
        engine_request(f"unix://{tmp_path / 'none.sock'}", "GET", "/info")
    with pytest.raises(DockerEngineError, match=r"use unix:///path/to/docker\.sock or tcp://"):
        engine_request("ssh://user@host", "GET", "/info")
