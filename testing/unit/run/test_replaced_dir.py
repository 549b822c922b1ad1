"""Step outputs are written whole: ``replaced_dir`` replaces a folder, or fills an empty one.

An Azure ML job's output folder is a mount point that exists, empty, before the command runs
(https://learn.microsoft.com/azure/machine-learning/how-to-read-write-data-v2#read-and-write-data-in-a-job);
it cannot be removed or renamed onto, so an empty folder is filled in place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppe.files import replaced_dir


def test_an_empty_output_folder_is_filled_in_place(tmp_path: Path) -> None:
    out = tmp_path / "evaluate"
    out.mkdir()
    inode = out.stat().st_ino
    with replaced_dir(out) as staging:
        (staging / "metrics.json").write_text("{}")
        (staging / "nested").mkdir()
        (staging / "nested" / "a.txt").write_text("a")
    assert out.stat().st_ino == inode, "the folder itself must stay (a mount point)"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "nested"]
    assert (out / "nested" / "a.txt").read_text() == "a"
    assert not (tmp_path / ".evaluate.tmp").exists()


def test_a_folder_with_content_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "evaluate"
    out.mkdir()
    (out / "stale.json").write_text("{}")
    with replaced_dir(out) as staging:
        (staging / "metrics.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_a_failure_leaves_the_earlier_output(tmp_path: Path) -> None:
    out = tmp_path / "evaluate"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    with pytest.raises(RuntimeError), replaced_dir(out) as staging:
        (staging / "metrics.json").write_text("new")
        raise RuntimeError("the step failed")
    assert (out / "metrics.json").read_text() == "old"
    assert not (tmp_path / ".evaluate.tmp").exists()
