"""The suite's own scheduling: heavy files first, longest first, file order kept otherwise."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from testing.conftest import REPO_ROOT, heavy_seconds, pytest_collection_modifyitems


@dataclass
class FakeItem:
    """The parts of a pytest item the ordering reads (a collected test would need a session)."""

    nodeid: str
    heavy: tuple[Any, ...] | None = None
    keywords: dict[str, bool] = field(default_factory=dict)

    def get_closest_marker(self, name: str) -> Any:
        if name != "heavy" or self.heavy is None:
            return None
        return pytest.mark.heavy(*self.heavy).mark

    def add_marker(self, marker: Any) -> None:
        raise AssertionError(f"{self.nodeid}: no marker expected, got {marker}")


class FakeConfig:
    def getoption(self, name: str) -> bool:
        return False


def test_heavy_files_go_first_longest_first_and_file_order_is_kept() -> None:
    items = [
        FakeItem("a.py::one"),
        FakeItem("nb.py::first", (290,)),
        FakeItem("b.py::one"),
        FakeItem("nb.py::second", (290,)),
        FakeItem("run.py::one", (200,)),
        FakeItem("a.py::two"),
    ]
    as_items = cast(list[pytest.Item], items)
    pytest_collection_modifyitems(cast(pytest.Config, FakeConfig()), as_items)
    assert [item.nodeid for item in as_items] == [
        "nb.py::first",
        "nb.py::second",
        "run.py::one",
        "a.py::one",
        "b.py::one",
        "a.py::two",
    ]


def test_a_heavy_marker_without_seconds_is_refused() -> None:
    item = cast(pytest.Item, FakeItem("x.py::t", ()))
    with pytest.raises(pytest.UsageError, match=r"x.py::t: write the heavy marker as heavy\("):
        heavy_seconds(item)
    assert heavy_seconds(cast(pytest.Item, FakeItem("y.py::t", (45,)))) == 45.0


def _pytest_line(*make_args: str) -> str:
    """The pytest command `make test` would run (make's dry run: nothing is executed)."""
    result = subprocess.run(
        ["make", "-n", "test", *make_args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return next(line for line in result.stdout.splitlines() if " -m pytest " in line)


def test_make_test_runs_one_worker_per_cpu_unless_told() -> None:
    assert f" -n {len(os.sched_getaffinity(0))} --dist loadfile " in _pytest_line()
    assert " -n 3 --dist loadfile --no-loadscope-reorder " in _pytest_line("PYTEST_WORKERS=3")
