"""The serving section of the results (``/score`` per backend and client count): its schema and its
Markdown. The quick-run test covers inference; serving runs servers for minutes, so its document
is built here from :func:`benchmarks.serving.load_phase`'s keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from benchmarks.report import render
from benchmarks.serving import PHASES

SCHEMA = Path(__file__).resolve().parents[3] / "benchmarks" / "results.schema.json"


def _phase(clients: int, rate: float) -> dict[str, Any]:
    return {
        "clients": clients,
        "requests_ok": 40,
        "errors": {},
        "seconds": 40 / rate,
        "requests_per_s": rate,
        "latency_ms_p50": 1000.0 * clients / rate,
        "latency_ms_p95": 1100.0 * clients / rate,
        "latency_ms_p99": 1200.0 * clients / rate,
        "latency_ms_max": 1300.0 * clients / rate,
        "server_total_ms_p50": 1000.0 / rate,
        "detections_per_image_mean": 2.0,
        "bounds": {"max_requests": 40, "max_seconds": 5.0},
    }


def _serving() -> dict[str, Any]:
    by_backend = {
        backend: {
            "server": server,
            "phases": {str(clients): _phase(clients, rate) for clients in PHASES},
            "server_exit_code": 0,
        }
        for backend, server, rate in (
            ("litert_int8", "python -m ppe edge serve", 80.0),
            ("openvino_int8", "python -m benchmarks.peer_server", 95.0),
        )
    }
    edge = by_backend["litert_int8"]["phases"]
    return {
        "status": "ok",
        "seconds": 1.0,
        "started_utc": "2026-12-01T00:00:00+00:00",
        "settings": {"server": "python -m ppe edge serve", "phases": list(PHASES)},
        "sequential": edge["1"],
        "concurrent": edge["4"],
        "by_backend": by_backend,
        "requests_per_s": edge["4"]["requests_per_s"],
        "latency_ms_p50": edge["4"]["latency_ms_p50"],
        "latency_ms_p99": edge["4"]["latency_ms_p99"],
    }


def _serving_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA.read_text())
    return dict(schema["properties"]["benchmarks"]["properties"]["serving"])


def test_phases_are_one_four_and_sixteen_clients() -> None:
    assert PHASES == (1, 4, 16)


def test_schema_accepts_every_backend_at_every_client_count() -> None:
    jsonschema.validate(_serving(), _serving_schema())


@pytest.mark.parametrize(
    "damage",
    [
        lambda doc: doc.pop("by_backend"),
        lambda doc: doc["by_backend"]["openvino_int8"]["phases"].pop("16"),
        lambda doc: doc["by_backend"].pop("litert_int8"),
    ],
    ids=["no per-backend phases", "a backend without 16 clients", "no LiteRT int8 server"],
)
def test_schema_refuses_a_serving_result_missing_a_phase(damage: Any) -> None:
    document = _serving()
    damage(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, _serving_schema())


def test_markdown_has_a_row_per_backend_and_client_count() -> None:
    text = render({"mode": "full", "benchmarks": {"serving": _serving()}})
    for backend in ("litert_int8", "openvino_int8"):
        for clients in PHASES:
            assert f"| {backend} | {clients} | 40 | 0 |" in text
    assert "`python -m benchmarks.peer_server`" in text


def test_an_map_target_is_printed_with_three_decimals() -> None:
    """0.7968 against a 0.80 target: two decimals would print "0.80 ... no"."""
    target = {
        "id": "real_map50_from_coco",
        "target": "mAP@0.5 >= 0.8",
        "measured": 0.7968,
        "met": False,
        "unit": "mAP@0.5",
        "note": "935 steps (37.4 epochs, 8.3 images/s)",
    }
    ratio = {"id": "speed", "target": "4x", "measured": 6.734, "met": True, "unit": "x"}
    text = render({"mode": "full", "targets": [target, ratio]})
    assert "| mAP@0.5 >= 0.8 | 0.797 mAP@0.5 | no | 935 steps (37.4 epochs, 8.3 images/s) |" in text
    assert "| 4x | 6.73 x | yes |" in text


def test_render_of_the_last_full_run_writes_the_top_level_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--render benchmarks/results/<date>.json``, as benchmarks/README.md spells it (relative,
    from the repository root), regenerates ``benchmarks/RESULTS.md``, not a page inside
    ``results/``; a partial run's folder keeps its own page, and ``--out`` wins."""
    from benchmarks.run import BENCH_DIR, rendered_markdown_path

    root = BENCH_DIR.parent
    monkeypatch.chdir(root)
    top = BENCH_DIR / "RESULTS.md"
    assert rendered_markdown_path(Path("benchmarks/results/2026-12-02.json"), None) == top
    assert rendered_markdown_path(root / "benchmarks/results/2026-12-02.json", None) == top
    partial = Path("benchmarks/results/2026-12-02-split/2026-12-02.json")
    assert rendered_markdown_path(partial, None) == partial.parent / "RESULTS.md"
    assert rendered_markdown_path(partial, tmp_path) == tmp_path / "RESULTS.md"


@pytest.mark.parametrize(
    ("recorded", "cell"),
    [
        (
            {"official_base": "python:3.11-slim", "official_base_mb": 130.5},
            "python:3.11-slim: 130.50",
        ),
        ({}, "n/a (not recorded)"),
    ],
    ids=["recorded", "an older run without it"],
)
def test_edge_image_row_names_the_official_base_or_says_it_was_not_recorded(
    recorded: dict[str, Any], cell: str
) -> None:
    result = {
        "status": "ok",
        "settings": {"base_image": "ppe-local/python"},
        "image_mb": 522.5,
        "our_layers_mb": 298.1,
        "local_base_mb": 224.4,
        "build_s": 8.3,
        "startup_s": 0.76,
        "startup_s_all": [0.77, 0.69, 0.76],
        **recorded,
    }
    text = render({"mode": "full", "benchmarks": {"edge_image": result}})
    (row,) = [line for line in text.splitlines() if line.startswith("| ppe-local/python |")]
    assert f"| 224.40 | {cell} | 8.30 |" in row
    assert "None" not in row
