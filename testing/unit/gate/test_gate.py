"""Champion/challenger gate: the rule (margin, first model, tie, NaN, data hash) and `ppe gate`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from testing.helpers import EVALUATION_THRESHOLDS, evaluation_metrics

from ppe.cli import main
from ppe.errors import GateError
from ppe.gate import decide, run_gate


def metrics(map50: Any, **overrides: Any) -> dict[str, Any]:
    return evaluation_metrics(map50, **overrides)


def test_promotes_when_better_by_at_least_the_margin() -> None:
    decision = decide(metrics(0.62), metrics(0.60), margin=0.01)
    assert decision.promote
    assert decision.challenger_score == 0.62 and decision.champion_score == 0.60
    assert "Promoted" in decision.reason
    # Exactly on the boundary (0.505 = 0.5 + 0.005 despite float rounding) promotes.
    assert decide(metrics(0.505), metrics(0.5), margin=0.005).promote


def test_not_promoted_below_the_margin() -> None:
    decision = decide(metrics(0.605), metrics(0.60), margin=0.01)
    assert not decision.promote
    assert "< champion 0.6000 + margin 0.01" in decision.reason


def test_first_model_is_promoted() -> None:
    decision = decide(metrics(0.1), None, margin=0.01)
    assert decision.promote
    assert decision.champion_score is None and decision.champion_model_hash is None
    assert "no champion yet" in decision.reason


def test_tie_is_not_promoted_with_a_positive_margin() -> None:
    decision = decide(metrics(0.6), metrics(0.6), margin=0.005)
    assert not decision.promote
    assert "ties the champion" in decision.reason
    # Even a margin below float resolution never lets a tie through.
    assert not decide(metrics(0.6), metrics(0.6), margin=1e-15).promote


def test_tie_is_promoted_with_zero_margin() -> None:
    decision = decide(metrics(0.6), metrics(0.6), margin=0.0)
    assert decision.promote
    assert "a tie is promoted" in decision.rule
    assert not decide(metrics(0.59), metrics(0.6), margin=0.0).promote


@pytest.mark.parametrize(
    "challenger",
    [
        metrics(math.nan),
        metrics(math.inf),
        metrics(-math.inf),
        metrics(None),
        metrics("0.9"),
        metrics(True),
        {"status": "failed", "error": "out of memory"},
        None,
    ],
)
def test_missing_failed_or_non_finite_challenger_never_promotes(challenger: Any) -> None:
    for champion in (None, metrics(0.0)):
        decision = decide(challenger, champion, margin=0.0)
        assert not decision.promote
        assert decision.challenger_score is None
        assert decision.reason.startswith("Not promoted")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data_hash", "other-data"),
        ("split", "val"),
        ("thresholds", {**EVALUATION_THRESHOLDS, "iou_threshold": 0.75}),
    ],
)
def test_champion_on_other_data_is_refused(field: str, value: Any) -> None:
    with pytest.raises(GateError, match="Re-evaluate the champion on the same data"):
        decide(metrics(0.9), metrics(0.5, **{field: value}), margin=0.0)


def test_champion_evaluator_hook_re_evaluates_on_the_same_data() -> None:
    calls: list[int] = []

    def evaluator() -> dict[str, Any]:
        calls.append(1)
        return metrics(0.7, model_hash="champion")

    stale = metrics(0.1, data_hash="old-data", model_hash="champion")
    decision = decide(metrics(0.72), stale, margin=0.01, champion_evaluator=evaluator)
    assert calls == [1]
    assert decision.promote and decision.champion_reevaluated
    assert decision.champion_score == 0.7  # the re-evaluated score, not the stale 0.1
    # Not called when the data already match.
    decide(metrics(0.72), metrics(0.7), margin=0.01, champion_evaluator=evaluator)
    assert calls == [1]


def test_evaluator_that_still_differs_is_an_error() -> None:
    with pytest.raises(GateError, match="still differs"):
        decide(
            metrics(0.9),
            metrics(0.5, split="val"),
            margin=0.0,
            champion_evaluator=lambda: metrics(0.5, split="val"),
        )


def test_bad_champion_score_or_margin_is_an_error() -> None:
    with pytest.raises(GateError, match="re-evaluate the champion"):
        decide(metrics(0.9), metrics(math.nan), margin=0.0)
    with pytest.raises(GateError, match="margin"):
        decide(metrics(0.9), None, margin=-0.1)


# ---------------------------------------------------------------------------------------------
# files and CLI


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_gate_json_has_scores_rule_and_decision(tmp_path: Path) -> None:
    challenger = write(tmp_path / "challenger.json", metrics(0.7))
    champion = write(tmp_path / "champion.json", metrics(0.6))
    out = tmp_path / "run" / "gate.json"
    status = main(
        [
            "gate",
            "--challenger",
            str(challenger),
            "--champion",
            str(champion),
            "--out",
            str(out),
            "--config",
            "smoke",
        ]
    )
    assert status == 0
    gate = json.loads(out.read_text())
    assert gate["promote"] is True
    assert gate["challenger_score"] == 0.7 and gate["champion_score"] == 0.6
    assert gate["metric"] == "map50" and gate["margin"] == 0.005
    assert gate["rule"].startswith("promote if challenger map50 >= champion map50 + 0.005")
    assert gate["data_hash"] == "d41d8cd9" and gate["split"] == "test"
    assert gate["reason"].endswith(".")
    assert [p.name for p in out.parent.iterdir()] == ["gate.json"]  # no temp files left


def test_not_promoting_still_exits_zero(tmp_path: Path) -> None:
    challenger = write(tmp_path / "c.json", metrics(math.nan))
    out = tmp_path / "gate.json"
    assert main(["gate", "--challenger", str(challenger), "--out", str(out)]) == 0
    text = out.read_text()
    assert "NaN" not in text  # strict JSON
    assert json.loads(text)["promote"] is False


def test_margin_comes_from_config_overrides(tmp_path: Path) -> None:
    challenger = write(tmp_path / "c.json", metrics(0.6))
    champion = write(tmp_path / "p.json", metrics(0.6))
    out = tmp_path / "gate.json"
    main(
        [
            "gate",
            "--challenger",
            str(challenger),
            "--champion",
            str(champion),
            "--out",
            str(out),
            "--set",
            "gate.margin=0",
        ]
    )
    assert json.loads(out.read_text())["promote"] is True


def test_champion_on_other_data_exits_non_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    challenger = write(tmp_path / "c.json", metrics(0.9))
    champion = write(tmp_path / "p.json", metrics(0.5, data_hash="other"))
    out = tmp_path / "gate.json"
    status = main(
        ["gate", "--challenger", str(challenger), "--champion", str(champion), "--out", str(out)]
    )
    assert status != 0
    assert "Re-evaluate the champion on the same data" in caplog.text
    assert not out.exists()


def test_missing_challenger_file_writes_no_promote_and_fails(tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    out.write_text(json.dumps({"promote": True}))  # a stale decision must not survive
    with pytest.raises(GateError, match="no such file"):
        run_gate(tmp_path / "missing.json", None, out, margin=0.005)
    assert json.loads(out.read_text())["promote"] is False
    assert main(["gate", "--challenger", str(tmp_path / "missing.json"), "--out", str(out)]) == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            json.dumps({"map50": 0.5}),
            r"not the EvaluationMetrics document `ppe evaluate` writes \(ap: Field required;.*"
            r"thresholds: Field required",
        ),
    ],
)
def test_malformed_metrics_files_are_explained(tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "m.json"
    bad.write_text(content)
    with pytest.raises(GateError, match=match):
        run_gate(bad, None, tmp_path / "gate.json", margin=0.0)
