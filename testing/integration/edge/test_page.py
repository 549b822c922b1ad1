"""The scoring page at ``/`` in headless Chromium (Debian's, never downloaded).

The server runs the real LiteRT runtime on the "rigged" tiny model (its output convolutions set to
known biases, see testing/unit/edge/tflite_models.py), so a real photo yields nine real `head`
detections through the real interpreter, decoder and letterbox inverse; nothing is mocked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from testing.helpers import CHROMIUM_ARGS, chromium_path

from ppe.edge.runtime import LiteRTDetector
from ppe.edge.server import ScoringServer

PHOTO = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "hardhat_sample"
    / "images"
    / "val"
    / "hard_hat_workers157.png"
)
HEAD_COLOUR = (0xE5, 0x39, 0x35)  # COLORS.head in page.html


@pytest.fixture(scope="module")
def server(edge_models: Path) -> Iterator[ScoringServer]:
    detector = LiteRTDetector(
        edge_models / "rigged_fp32.tflite", edge_models / "labels.txt", model_version="9"
    )
    app = ScoringServer(detector, host="127.0.0.1", port=0, score_threshold=lambda: 0.25)
    app.start()
    yield app
    app.stop()


COUNT_HEAD_PIXELS = """
([r, g, b]) => {
  const canvas = document.getElementById("canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === r && data[i + 1] === g && data[i + 2] === b) count += 1;
  }
  return {count, width: canvas.width, height: canvas.height};
}
"""


def test_page_draws_the_boxes_of_an_uploaded_photo(server: ScoringServer) -> None:
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    photo = Image.open(PHOTO).convert("RGB")
    in_photo = int(np.all(np.asarray(photo) == HEAD_COLOUR, axis=-1).sum())
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"http://127.0.0.1:{server.port}/", timeout=15_000)
            page.set_input_files("#file", str(PHOTO))
            page.wait_for_selector("body[data-scored]", timeout=15_000)
            items = page.locator("#detections li.head")
            assert items.count() == 9
            status = page.locator("#status").inner_text()
            assert "9 detections (9 heads without a helmet)" in status and "model 9" in status
            boxes = [
                [float(v) for v in (items.nth(i).get_attribute("data-box") or "").split(",")]
                for i in range(9)
            ]
            assert all(0 <= b[0] < b[2] <= 416 and 0 <= b[1] < b[3] <= 416 for b in boxes)
            drawn = page.evaluate(COUNT_HEAD_PIXELS, list(HEAD_COLOUR))
            assert (drawn["width"], drawn["height"]) == photo.size
            # Nine 3-px outlines plus label tabs: far more head-coloured pixels than the photo has.
            assert drawn["count"] > in_photo + 9 * 200, (drawn, in_photo)

            # A file that is not an image: the browser's decoder rejects it before any upload
            # and the page says so in its status line.
            page.set_input_files(
                "#file",
                files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"not a png"}],
            )
            # A locator wait runs in Playwright's own world: the page's CSP forbids string eval.
            page.locator("#status", has_text=re.compile(r"^Failed")).wait_for(timeout=15_000)
            assert "cannot show this image" in page.locator("#status").inner_text()
        finally:
            browser.close()
    assert problems == []


def test_the_page_sends_the_token_from_its_address_fragment(edge_models: Path) -> None:
    from playwright.sync_api import sync_playwright

    detector = LiteRTDetector(
        edge_models / "rigged_fp32.tflite", edge_models / "labels.txt", model_version="9"
    )
    token = "page-test-token-0123456789"
    app = ScoringServer(detector, host="127.0.0.1", port=0, token=token)
    app.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=list(CHROMIUM_ARGS)
            )
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{app.port}/", timeout=15_000)
                page.set_input_files("#file", str(PHOTO))
                refused = re.compile(r"^Refused \(401\)")
                page.locator("#status", has_text=refused).wait_for(timeout=15_000)
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{app.port}/#token={token}", timeout=15_000)
                page.set_input_files("#file", str(PHOTO))
                page.wait_for_selector("body[data-scored]", timeout=15_000)
                assert page.locator("#detections li.head").count() == 9
            finally:
                browser.close()
    finally:
        app.stop()
