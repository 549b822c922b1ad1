"""The edge module's HTTP server on a peer runtime: ``python -m benchmarks.peer_server ...``.

What ``ppe edge serve`` runs, with the LiteRT detector swapped for
:class:`benchmarks.peers.PeerDetector` (ONNX Runtime or OpenVINO): the same
:class:`ppe.edge.server.ScoringServer` with the same limits and live score threshold
(:class:`ppe.config.EdgeConfig` defaults), one image scored at a time. Benchmark only: the
edge module itself ships LiteRT. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

logger = logging.getLogger("benchmarks.peer_server")


def get_args_parser() -> argparse.ArgumentParser:
    """The command line."""
    from benchmarks.peers import PEER_BACKENDS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_server")
    parser.add_argument("--backend", required=True, choices=PEER_BACKENDS)
    parser.add_argument("--model", type=Path, required=True, help=".onnx or OpenVINO .xml file")
    parser.add_argument(
        "--spec", type=Path, required=True, help="model.json with the model's spec (ppe export)"
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model-version", default="benchmark")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; 0 on a clean stop."""
    args = get_args_parser().parse_args(argv)
    from benchmarks.peers import PeerDetector, PeerModel
    from ppe.cli import configure_logging
    from ppe.config import EdgeConfig
    from ppe.edge.server import ScoringServer
    from ppe.model.spec import YoloSpec

    configure_logging(args.verbose)
    spec = YoloSpec.from_dict(json.loads(args.spec.read_text())["spec"])
    model = PeerModel(args.backend, args.model, spec.output_shapes, args.threads)
    detector = PeerDetector(model, spec, model_version=args.model_version)
    config = EdgeConfig()
    server = ScoringServer(
        detector,
        host=args.host,
        port=args.port,
        max_upload_bytes=config.max_upload_bytes,
        max_image_pixels=config.max_image_pixels,
        score_threshold=lambda: config.score_threshold,
    )
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    server.start()
    logger.info("%s on port %d", args.backend, server.port)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
