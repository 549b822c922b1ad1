from __future__ import annotations

import json

import pytest

from ppe.config import load_config
from ppe.train import worker_role
from ppe.train.fit import _finite_loss_guard


class _Model:
    stop_training = False


def test_a_non_finite_loss_stops_training_with_a_clear_reason() -> None:
    guard = _finite_loss_guard(load_config("smoke"))
    guard.set_model(_Model())
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(0, {"loss": 3.5})
    assert guard.failure is None and not guard.model.stop_training
    guard.on_train_batch_end(6, {"loss": float("nan")})
    assert guard.model.stop_training
    assert guard.failure == (
        "training loss became nan at epoch 3, batch 7: lower train.learning_rate (now 0.001) "
        "or check the boxes with `ppe data check`"
    )


@pytest.mark.parametrize(
    ("tf_config", "expected"),
    [
        (None, (True, 0)),
        (
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}},
            (True, 0),
        ),
        (
            {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}},
            (False, 1),
        ),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "worker", "index": 0},
            },
            (False, 0),
        ),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            },
            (True, 0),
        ),
    ],
)
def test_only_the_chief_writes_results(tf_config: dict | None, expected: tuple[bool, int]) -> None:
    environ = {} if tf_config is None else {"TF_CONFIG": json.dumps(tf_config)}
    assert worker_role(environ) == expected
