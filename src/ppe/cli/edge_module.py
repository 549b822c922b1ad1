"""The edge module's command line: ``ppe edge run`` (its entry point) and ``ppe edge serve``.

Part of the edge layer (the ``ppe-edge`` wheel the module image installs, see
:mod:`ppe.iotedge.package`): :func:`main` is that wheel's ``ppe`` console script, with only these
two subcommands; the full ``ppe`` adds them to its ``edge`` group with :func:`register_runtime`
(:mod:`ppe.cli.edge`). Only the standard library and ``ppe.errors`` are imported here; LiteRT, the
IoT SDK and OpenCV load inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppe.errors import ConfigError

logger = logging.getLogger(__name__)

RUN_ENVIRONMENT = """environment:
  MODEL_PATH      the .tflite model (required)
  LABELS_PATH     class names, one a line (optional with a model.json beside the model)
  MODEL_VERSION   the model version reported in alerts and telemetry
  QUEUE_DIR       durable outbox folder on a host volume (required)
  HTTP_PORT       HTTP scoring port (default 8080)
  HTTP_HOST       address to bind (default 0.0.0.0; the manifest's port binding decides
                  which host address publishes it)
  SCORE_TOKEN     bearer token POST /score requires (or SCORE_TOKEN_FILE, a mounted secret;
                  neither: one is generated in QUEUE_DIR/score-token)
  CAMERA_ID       camera id in alerts (default camera-1)
  FRAME_SOURCE    image folder | video file | rtsp://... | usb:N (empty: HTTP only)
  FRAME_RATE      most frames per second from the source (optional; folders default to 5)
  LITERT_NUM_THREADS  interpreter threads (default: CPU count, at most 4)
  and the IoT Edge runtime's IOTEDGE_* variables (or EdgeHubConnectionString and
  EdgeModuleCACertificateFile for local debugging).
module twin desired properties (applied live): score_threshold, alert_min_frames,
  alert_window_frames, alert_cooldown_s, telemetry_interval_s."""


def _run(args: argparse.Namespace) -> int:
    from ppe.edge.main import options_from_env, run_module

    return run_module(options_from_env(os.environ))


def _serve(args: argparse.Namespace) -> int:
    from ppe.edge.main import serve_http

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port (1-65535)")
    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads} must be at least 1")
    return serve_http(
        args.model,
        args.labels,
        port=args.port,
        host=args.host,
        model_version=args.model_version,
        num_threads=args.threads,
    )


def register_runtime(edge_subparsers: Any) -> None:
    """Add ``run`` and ``serve`` to the ``edge`` group's subparsers."""
    run = edge_subparsers.add_parser(
        "run",
        help="run the IoT Edge module (frames, alerts, twin, HTTP); configured by environment",
        description="Run the ppedetector module: score frames from FRAME_SOURCE, raise no-helmet "
        "alerts to the `alerts` output through a durable outbox, send telemetry to `telemetry`, "
        "follow the module twin, and serve HTTP scoring.",
        epilog=RUN_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(func=_run)
    serve = edge_subparsers.add_parser(
        "serve",
        help="serve HTTP scoring (POST /score, GET /healthz, a page at /) without IoT Hub",
        description="Score uploaded photos with a LiteRT model over HTTP, for local use.",
    )
    serve.add_argument("--model", type=Path, required=True, help=".tflite model file")
    serve.add_argument("--labels", type=Path, default=None, help="labels file, one name a line")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)"
    )
    serve.add_argument(
        "--model-version", default="local", help="version shown in results (default local)"
    )
    serve.add_argument(
        "--threads", type=int, default=min(4, os.cpu_count() or 1), help="interpreter threads"
    )
    serve.set_defaults(func=_serve)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` group with ``run`` and ``serve`` only (the ``ppe-edge`` command line)."""
    parser = subparsers.add_parser(
        "edge",
        help="IoT Edge module: run it, or serve HTTP scoring",
        description="Commands of the ppedetector IoT Edge module.",
    )
    register_runtime(
        parser.add_subparsers(dest="edge_command", metavar="SUBCOMMAND", required=True)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ppe`` console script of the ``ppe-edge`` wheel: ``ppe edge run|serve``."""
    from ppe.cli import main as cli_main

    return cli_main(argv, command_modules=(__name__,))
