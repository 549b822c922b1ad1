"""Create the module's container as the IoT Edge agent does: Docker Engine API, manifest options.

The agent passes a module's ``createOptions`` to the Docker Engine API's ``ContainerCreate``
unchanged, adding the image, the env and its own labels and mounts
(https://learn.microsoft.com/azure/iot-edge/how-to-use-create-options,
https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Container/operation/ContainerCreate).
:func:`module_container_body` builds that body from a rendered manifest and
:func:`start_container` sends it, so the container tests and ``make bench`` run the container
with the memory and pids limits, read-only root, dropped capabilities and ``no-new-privileges``
a device gets, not with flags of their own. Standard library only.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ppe.errors import PpeError
from ppe.iotedge.manifest import MODULE_NAME, module_create_options, module_env

logger = logging.getLogger(__name__)

# Engine API 1.41: Docker 20.10 (Debian bookworm's docker.io) and every later engine accept it.
DOCKER_API = "/v1.41"


class DockerEngineError(PpeError):
    """The Docker engine refused a request or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the Docker daemon's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def engine_request(
    docker_host: str, method: str, path: str, body: Any = None, timeout: float = 120
) -> Any:
    """One Engine API call on the daemon ``docker_host`` names (``unix://`` or ``tcp://``).

    Returns:
        The decoded JSON answer (None for an empty one).

    Raises:
        DockerEngineError: The daemon cannot be reached or answered with an error status.
    """
    url = urllib.parse.urlsplit(docker_host)
    connection: http.client.HTTPConnection
    if url.scheme == "unix":
        connection = _UnixConnection(url.path, timeout=timeout)
    elif url.scheme in ("tcp", "http"):
        connection = http.client.HTTPConnection(
            url.hostname or "localhost", url.port, timeout=timeout
        )
    else:
        raise DockerEngineError(
            f"DOCKER_HOST={docker_host!r}: use unix:///path/to/docker.sock or tcp://host:port"
        )
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, DOCKER_API + path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except OSError as error:
        raise DockerEngineError(f"Docker engine at {docker_host}: {error}") from None
    finally:
        connection.close()
    if response.status >= 300:
        raise DockerEngineError(
            f"Docker API {method} {path}: {response.status} {data[-2000:].decode(errors='replace')}"
        )
    return json.loads(data) if data else None


def module_container_body(
    manifest: Mapping[str, Any],
    image: str,
    env: Mapping[str, str] | None = None,
    network_mode: str | None = None,
    module: str = MODULE_NAME,
) -> dict[str, Any]:
    """The ``ContainerCreate`` body of ``module``: its createOptions, ``image`` and its env.

    Args:
        manifest: A rendered deployment manifest.
        image: The image to run (the manifest names the registry's; a local build has its own).
        env: Variables set over the manifest's module env (what a local run must change).
        network_mode: ``HostConfig.NetworkMode`` instead of the agent's network (``host`` on a
            daemon without a bridge).
        module: The module's name in the manifest.
    """
    body = copy.deepcopy(module_create_options(manifest, module))
    if network_mode is not None:
        body.setdefault("HostConfig", {})["NetworkMode"] = network_mode
    variables = {**module_env(manifest, module), **(env or {})}
    body.update(Image=image, Env=[f"{name}={value}" for name, value in variables.items()])
    return body


def start_container(docker_host: str, name: str, body: Mapping[str, Any]) -> None:
    """Create the container ``name`` from ``body`` and start it."""
    quoted = urllib.parse.quote(name)
    engine_request(docker_host, "POST", f"/containers/create?name={quoted}", body)
    engine_request(docker_host, "POST", f"/containers/{quoted}/start")
    logger.info("started container %s from %s", name, body.get("Image"))


def remove_container(docker_host: str, name: str) -> None:
    """Remove the container ``name``, running or not; nothing when there is none."""
    try:
        engine_request(
            docker_host, "DELETE", f"/containers/{urllib.parse.quote(name)}?force=true&v=true"
        )
    except DockerEngineError as error:
        if " 404 " not in str(error):
            raise
