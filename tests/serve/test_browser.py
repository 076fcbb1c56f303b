"""A real browser: Debian's Chromium, driven by Playwright, signs in as a team, uploads through the form, watches."""

from __future__ import annotations

import os
import shutil
import struct
import time
from pathlib import Path

import pytest
from builders import oracle_model
from serve.web_fixtures import server_process

from evaluator.serve.competition import open_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIEWPORT = {"width": 1200, "height": 900}


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and a check that it is one)."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def shot(page, path) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5000 and png_size(path) == (VIEWPORT["width"], VIEWPORT["height"])
    if keep := os.environ.get("EDL_KEEP_SCREENSHOTS"):  # to look at them: EDL_KEEP_SCREENSHOTS=/tmp/shots pytest ...
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_a_team_signs_in_uploads_through_the_form_and_finds_its_model_on_the_board(make_competition, tmp_path):
    from playwright.sync_api import sync_playwright

    competition = make_competition()
    token = open_store(competition).add_team("alpha")
    model = oracle_model(tmp_path / "good.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    with server_process(competition.root) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--headless", "--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url + "/signin")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_url(url + "/team")
        assert "Team alpha" in page.inner_text("h1")
        shot(page, tmp_path / "1-signed-in.png")

        page.set_input_files("#model", str(broken))
        page.click("#upload")
        page.wait_for_selector("#submission-1")
        text = page.inner_text("#submission-1")
        assert "failed" in text and "not an ONNX model" in text and "does not use your quota" in text
        shot(page, tmp_path / "2-broken.png")

        page.set_input_files("#model", str(model))
        page.click("#upload")
        page.wait_for_selector("#submission-2")
        assert "queued, position 1" in page.inner_text("#message") or "scor" in page.inner_text("#submission-2")
        shot(page, tmp_path / "3-queued.png")
        deadline = time.monotonic() + 180
        while page.get_attribute("#submission-2", "data-state") != "scored":  # the page refreshes itself
            assert time.monotonic() < deadline, page.inner_text("#submission-2")
            page.wait_for_timeout(1000)
            page.wait_for_selector("#submission-2")
        scored = page.inner_text("#submission-2")
        assert "96.00 %" in scored and "signed" in scored
        shot(page, tmp_path / "4-scored.png")

        name = "alpha-2"
        deadline = time.monotonic() + 30
        page.goto(url + "/")
        while name not in page.content():
            assert time.monotonic() < deadline, page.content()[:2000]
            page.wait_for_timeout(1000)
            page.goto(url + "/")
        assert "This board is provisional" in page.inner_text("#board-state")
        shot(page, tmp_path / "5-board.png")
        browser.close()
    print(f"\nscreenshots: {sorted(p.name for p in tmp_path.glob('*.png'))}")
