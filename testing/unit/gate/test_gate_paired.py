"""The gate's paired comparison: reported in gate.json, and deciding with gate.decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testing.helpers import evaluation_metrics
from testing.unit.evaluate.evaluation_cases import BOX, split_of, write_eval

from ppe.cli import main
from ppe.errors import GateError
from ppe.evaluate.detect import SplitDetections
from ppe.evaluate.voc_map import ImageDetections, ImageGroundTruth
from ppe.gate import decide, run_gate
from ppe.run.documents import GateDecision
from ppe.run.layout import outcomes_file

IMAGES = 60


def finds(first: int) -> SplitDetections:
    """60 images with one helmet each; the model finds the helmets of images 0..first-1."""
    truths = [ImageGroundTruth([BOX], [0]) for _ in range(IMAGES)]
    found = [
        ImageDetections([BOX], [0.9], [0]) if index < first else ImageDetections([], [], [])
        for index in range(IMAGES)
    ]
    return split_of(truths, found)


def evaluations(tmp_path: Path, challenger: int, champion: int) -> tuple[Path, Path]:
    write_eval(tmp_path / "challenger", finds(challenger))
    write_eval(tmp_path / "champion", finds(champion))
    return tmp_path / "challenger" / "metrics.json", tmp_path / "champion" / "metrics.json"


def gate(tmp_path: Path, challenger: Path, champion: Path, *overrides: str) -> GateDecision:
    out = tmp_path / "gate.json"
    sets = [item for override in overrides for item in ("--set", override)]
    argv = ["gate", "--challenger", str(challenger), "--champion", str(champion)]
    assert main([*argv, "--out", str(out), *sets]) == 0
    return GateDecision.read(out)


def test_gate_json_reports_the_paired_interval(tmp_path: Path) -> None:
    # The challenger finds two more helmets (32 vs 30 of 60): +2/60 in mAP, and the per-resample
    # difference is (draws of those two images) / 60.
    challenger, champion = evaluations(tmp_path, 32, 30)
    decision = gate(tmp_path, challenger, champion)
    assert decision.decision == "point" and decision.promote  # +0.033 >= margin 0.005
    paired = decision.paired
    assert paired is not None and paired.images == IMAGES and paired.resamples == 1000
    assert paired.difference == pytest.approx(2 / 60)
    assert paired.interval.low == 0.0  # neither image drawn in more than 2.5% of the resamples
    assert paired.interval.high is not None and paired.interval.high > 2 / 60
    assert "Paired bootstrap over the same 60 images" in decision.reason
    assert "+0.0333" in decision.reason
    assert json.loads((tmp_path / "gate.json").read_text())["paired"]["interval"]["low"] == 0.0


def test_paired_interval_decision_refuses_a_gain_the_images_cannot_confirm(
    tmp_path: Path,
) -> None:
    challenger, champion = evaluations(tmp_path, 32, 30)
    decision = gate(tmp_path, challenger, champion, "gate.decision=paired_interval")
    assert decision.decision == "paired_interval"
    assert not decision.promote
    assert "lower end of the paired 95% interval" in decision.reason
    assert "95% paired bootstrap interval" in decision.rule
    # A clear gain (50 vs 30 helmets) passes both rules.
    challenger, champion = evaluations(tmp_path / "clear", 50, 30)
    assert gate(tmp_path, challenger, champion, "gate.decision=paired_interval").promote


def test_identical_models_tie_under_the_paired_rule(tmp_path: Path) -> None:
    challenger, champion = evaluations(tmp_path, 30, 30)
    tie = gate(tmp_path, challenger, champion, "gate.decision=paired_interval")
    assert not tie.promote  # margin 0.005: a tie does not pass
    assert tie.paired is not None and tie.paired.interval.low == 0.0
    zero = gate(tmp_path, challenger, champion, "gate.decision=paired_interval", "gate.margin=0")
    assert zero.promote  # margin 0 means no worse, as for the point rule


def test_paired_rule_without_outcomes_is_an_error(tmp_path: Path) -> None:
    challenger, champion = evaluations(tmp_path, 32, 30)
    outcomes_file(champion.parent).unlink()
    # The point rule still decides (no paired comparison to report) ...
    decision = run_gate(challenger, champion, tmp_path / "g.json", margin=0.005)
    assert decision.promote and decision.paired is None
    assert "Paired" not in decision.reason
    # ... the paired rule cannot, and says what to do.
    with pytest.raises(GateError, match=r"outcomes\.json"):
        run_gate(
            challenger, champion, tmp_path / "g.json", margin=0.005, decision="paired_interval"
        )


def test_outcomes_of_other_images_are_refused(tmp_path: Path) -> None:
    challenger, champion = evaluations(tmp_path, 32, 30)
    write_eval(champion.parent, split_of(finds(30).ground_truths[:50], finds(30).detections[:50]))
    # Same data hash written by the helper, but the outcomes name 50 images, not 60.
    with pytest.raises(GateError, match="different images"):
        run_gate(challenger, champion, tmp_path / "g.json", margin=0.005)


def test_the_first_model_needs_no_paired_comparison() -> None:
    decision = decide(evaluation_metrics(0.4), None, margin=0.005, decision="paired_interval")
    assert decision.promote and decision.paired is None
    with pytest.raises(GateError, match="gate decision must be"):
        decide(evaluation_metrics(0.4), None, margin=0.005, decision="vote")  # type: ignore[arg-type]


def test_champion_on_other_data_is_not_paired_but_refused_or_re_evaluated(tmp_path: Path) -> None:
    challenger, champion = evaluations(tmp_path, 32, 30)
    # The champion's evaluation on 50 other images of another dataset.
    split = finds(30)
    write_eval(champion.parent, split_of(split.ground_truths[:50], split.detections[:50]))
    stale = json.loads(champion.read_text()) | {"data_hash": "data-0"}
    champion.write_text(json.dumps(stale))
    with pytest.raises(GateError, match="different data or settings"):
        run_gate(challenger, champion, tmp_path / "g.json", margin=0.005)
    fresh = evaluation_metrics(0.5, data_hash="data-1", split="test")
    decision = run_gate(
        challenger,
        champion,
        tmp_path / "g.json",
        margin=0.005,
        champion_evaluator=lambda: (
            fresh | {"thresholds": json.loads(challenger.read_text())["thresholds"]}
        ),
    )
    assert decision.champion_reevaluated and decision.paired is None
