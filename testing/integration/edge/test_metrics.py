"""``GET /metrics`` of the running module, parsed by the Prometheus project's own Python client.

prometheus-client lives in its own environment (``.venv-prometheus``, ``make setup-tools``), so
the module image and the main environment do not depend on it. Its parser
(``text_string_to_metric_families``) implements the text exposition format IoT Edge's metrics
collector scrapes (https://prometheus.io/docs/instrumenting/exposition_formats/,
https://learn.microsoft.com/azure/iot-edge/how-to-collect-and-transport-metrics).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from testing.unit.edge.test_main import RecordingClient, frames, make_module, wait_for

__all__ = ["frames"]

REPO = Path(__file__).resolve().parents[3]
PARSER = REPO / ".venv-prometheus" / "bin" / "python"
PARSE = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        key = sample.name + json.dumps(sample.labels, sort_keys=True)
        out[key] = {"type": family.type, "value": sample.value}
print(json.dumps(out))
"""


def parse(text: str) -> dict[str, dict[str, Any]]:
    if not PARSER.exists():
        pytest.fail("run `make setup` (it installs .venv-prometheus)")
    completed = subprocess.run(
        [str(PARSER), "-c", PARSE], input=text, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    parsed: dict[str, dict[str, Any]] = json.loads(completed.stdout)
    return parsed


def test_metrics_count_frames_alerts_queue_and_scoring(
    edge_models: Path, tmp_path: Path, frames: Path
) -> None:
    client = RecordingClient(
        {
            "score_threshold": 0.5,
            "alert_min_frames": 1,
            "alert_window_frames": 1,
            "alert_cooldown_s": 0,
        }
    )
    module = make_module(edge_models, tmp_path, frames, client)
    module.start()
    try:
        assert wait_for(lambda: len(client.of("alerts")) >= 2)
        token = module.server.token
        request = urllib.request.Request(
            f"http://127.0.0.1:{module.server.port}/score",
            data=(frames / "hard_hat_workers18.png").read_bytes(),
            headers={"Content-Type": "image/png", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(
            f"http://127.0.0.1:{module.server.port}/metrics", timeout=10
        ) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            metrics = parse(response.read().decode("utf-8"))
        frames_now = module.stats.total_frames
    finally:
        module.stop()
    camera = json.dumps({"camera": "gate-2"})
    assert metrics[f"ppe_frames_total{camera}"]["type"] == "counter"
    assert 0 < metrics[f"ppe_frames_total{camera}"]["value"] <= frames_now
    assert metrics[f"ppe_alerts_total{camera}"]["value"] >= 2
    assert metrics[f"ppe_frames_per_second{camera}"]["type"] == "gauge"
    assert metrics[f"ppe_frame_latency_seconds_count{camera}"]["type"] == "summary"
    assert metrics['ppe_queue_messages{"kind": "alert"}']["type"] == "gauge"
    assert metrics['ppe_messages_sent_total{"kind": "alert"}']["value"] >= 2
    assert metrics["ppe_score_seconds_count{}"]["value"] == 1
    assert metrics['ppe_score_seconds_bucket{"le": "+Inf"}']["value"] == 1
    assert metrics['ppe_http_responses_total{"code": "200"}']["value"] >= 1
    assert metrics["ppe_healthy{}"]["value"] == 1
