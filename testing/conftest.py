"""Shared pytest set-up: test tiers, capability markers and paths to optional real assets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "testing" / "fixtures"
NODE_TOOLS = REPO_ROOT / "testing" / "tools"

DARKNET_WEIGHTS_HELP = (
    "set PPE_DARKNET_WEIGHTS to the official YOLOv3-tiny COCO weights "
    "(download https://pjreddie.com/media/files/yolov3-tiny.weights, sha256 dccea06f...a42c)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption(
        "--check-gpu",
        action="store_true",
        help="fail (not skip) requires_gpu tests when no GPU is visible: for GPU agents",
    )


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def heavy_seconds(item: pytest.Item) -> float:
    """The ``heavy(seconds)`` estimate of an item's file (0 for a file not marked heavy)."""
    marker = item.get_closest_marker("heavy")
    if marker is None:
        return 0.0
    if len(marker.args) != 1 or not isinstance(marker.args[0], int | float):
        raise pytest.UsageError(f"{item.nodeid}: write the heavy marker as heavy(<seconds>)")
    return float(marker.args[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Heavy files first, longest first: `make test`'s pytest-xdist workers take whole files in
    # this order (--no-loadscope-reorder), so the long ones start at once and the workers end
    # together. The sort is stable: the order inside a file (notebooks in sequence) is kept.
    items.sort(key=lambda item: -heavy_seconds(item))
    run_slow = config.getoption("--run-slow")
    check_gpu = config.getoption("--check-gpu")
    gpu_checked: bool | None = None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
        if "requires_gpu" in item.keywords and not check_gpu:
            if gpu_checked is None:
                gpu_checked = _gpu_visible()
            if not gpu_checked:
                item.add_marker(
                    pytest.mark.skip(reason="no GPU visible: run on a GPU agent with --check-gpu")
                )
        if "requires_azure" in item.keywords and not os.environ.get("AZURE_SUBSCRIPTION_ID"):
            item.add_marker(
                pytest.mark.skip(
                    reason="no Azure subscription: `az login` and set AZURE_SUBSCRIPTION_ID"
                )
            )


@pytest.fixture(scope="session")
def darknet_weights() -> Path:
    """Path of the official YOLOv3-tiny COCO weights, or skip saying how to get them."""
    value = os.environ.get("PPE_DARKNET_WEIGHTS")
    if not value:
        pytest.skip(DARKNET_WEIGHTS_HELP)
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"PPE_DARKNET_WEIGHTS={value} does not exist; {DARKNET_WEIGHTS_HELP}")
    return path


@pytest.fixture(scope="session")
def hardhat_voc() -> Path:
    """Real hard-hat photos with VOC XML (xml folder + image folder layout).

    The full 450-image set when PPE_HARDHAT_DATA names it, otherwise the 24-image sample vendored
    under testing/fixtures/hardhat_sample (CC0, see its SOURCE.md).
    """
    value = os.environ.get("PPE_HARDHAT_DATA")
    return Path(value) if value else FIXTURES / "hardhat_sample"


@dataclass(frozen=True)
class SmokeRun:
    """The suite's one ``ppe pipeline run --config smoke``: its folders and its registry."""

    root: Path
    runs: Path
    registry: Path
    run_dir: Path

    def pipeline_args(self, run_id: str) -> list[str]:
        """``ppe pipeline run`` arguments for another run into the same runs folder and registry."""
        return [
            *("pipeline", "run", "--config", "smoke", "--out", str(self.runs)),
            *("--set", f"registry.root={self.registry}", "--no-tracking", "--run-id", run_id),
        ]


#: Epochs of the shared smoke run: the training tests check three epochs' history and checkpoints.
SMOKE_RUN_EPOCHS = 3


def shared_folder(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """A folder made once per test session, however many pytest-xdist workers ask for it.

    ``make(folder)`` fills an empty ``folder``; the first worker to ask runs it under a file lock
    while the others wait, then all of them read the same folder. Without xdist (one process)
    this is a plain temporary folder. The folder counts as made only once ``make`` returned (a
    marker file), so a failed ``make`` fails every test that needs it, each with its own error.
    """
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is <session base>/popen-gw<N>: the parent is shared.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"shared-{name}"
    done = folder / ".made"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.is_file():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """``ppe pipeline run --config smoke`` (3 epochs) into a fresh registry, once per session.

    The pipeline tests gate a second run against it, and the training tests read its ``data``
    and ``train`` folders (the very ``ppe train`` the graph runs), so the suite trains the smoke
    model once for both (once for all pytest-xdist workers too: :func:`shared_folder`).
    """
    from testing.helpers import run_ppe

    def layout(root: Path) -> SmokeRun:
        runs = root / "runs"
        return SmokeRun(root=root, runs=runs, registry=root / "registry", run_dir=runs / "first")

    def make(root: Path) -> None:
        result = run_ppe(
            *layout(root).pipeline_args("first"),
            *("--set", f"train.epochs={SMOKE_RUN_EPOCHS}"),
            cwd=root,
            timeout=900,
        )
        assert "promoted to champion" in result.stderr, result.stderr[-4000:]

    return layout(shared_folder(tmp_path_factory, "smoke-run", make))
