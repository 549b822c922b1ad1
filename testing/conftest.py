"""Shared pytest set-up: test tiers, capability markers and paths to optional real assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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
