"""The playground page in a real browser (Debian's headless Chromium, driven by Playwright's
Python client; no browser download) against `python -m runtime.local up` with the small test
engine: a bad option shows the API's message at its field, then upload, submit, the live HLS
preview plays while the job renders, the mp4 plays and downloads, and purging the job from the
list erases its avatar. A screenshot of the page is kept in `test-artifacts/` (git-ignored)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime.local.media import EXAMPLES_DIR, trim_audio
from tests.e2e.test_local_demo import _SERVICE, REPO_ROOT, _missing

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
# The flags that work in CI's containers (no sandbox, no GPU, nothing fetched in the background).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
# Slow enough that the job is RENDERING for several seconds with finished 0.4 s segments, so the
# preview has something to play before the mp4 exists.
RENDER_ENV = {
    "MUSETALK_ENGINE_FACTORY": "tests.support.small_engine:load",
    "SMALL_ENGINE_SECONDS_PER_FRAME": "0.15",
    "MUSETALK_SEGMENT_FRAMES": "10",
}
AUDIO_SECONDS = 3.0
TIMEOUT_MS = 45_000
UP = (sys.executable, "-m", "runtime.local", "up")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing(*_SERVICE)), reason="needs the API and worker"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/test.sh)"),
    pytest.mark.skipif(
        _missing("playwright"), reason="needs the playwright package (requirements-dev.txt)"
    ),
    pytest.mark.skipif(
        not (REPO_ROOT / "node_modules/hls.js").is_dir(), reason="needs hls.js (npm ci)"
    ),
]


@pytest.fixture
def playground_url(tmp_path: Path) -> Iterator[str]:
    """`up` with the small engine; yields the page's URL (the key in its fragment)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"small engine")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **RENDER_ENV}
    stderr_log = tmp_path / "up.stderr"
    with stderr_log.open("w+") as stderr:
        up = subprocess.Popen(
            [*UP, "--models", str(models), "--work-dir", str(tmp_path / "work")],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert up.stdout is not None
            for _ in up.stdout:  # `up` prints its exports once everything runs; EOF if it dies
                match = re.search(r"playground page: (\S+)", stderr_log.read_text())
                if match:
                    break
            else:
                raise AssertionError(f"local mode died: {stderr_log.read_text()[-2000:]}")
            yield match.group(1)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)


def test_the_playground_renders_a_job_in_a_real_browser(
    playground_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    speech = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "speech.wav", AUDIO_SECONDS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            # Given the page opened from the URL local mode printed
            page.goto(playground_url)
            expect(page.locator("#connection-status")).to_have_text("connected", timeout=TIMEOUT_MS)
            assert "key=" not in page.url  # the key left the address bar

            # When the user submits a face and speech with a bbox_shift out of range
            page.set_input_files("#avatar-file", str(EXAMPLES_DIR / "musk.png"))
            page.set_input_files("#audio-file", str(speech))
            page.fill("[data-field='avatar_options.bbox_shift']", "99")
            page.click("#submit")

            # Then the API's own message is shown at that field, and no job was submitted
            error = page.locator("[data-error-for='avatar_options.bbox_shift']")
            expect(error).to_contain_text("less than or equal to 40", timeout=TIMEOUT_MS)
            expect(page.locator("[data-field='avatar_options.bbox_shift']")).to_have_attribute(
                "aria-invalid", "true"
            )
            expect(page.locator("#job")).to_be_hidden()

            # When they fix it and submit again
            page.fill("[data-field='avatar_options.bbox_shift']", "0")
            page.click("#submit")

            # Then the job is followed, and its live preview plays while it renders
            expect(page.locator("#job-status")).to_have_text(re.compile("QUEUED|PREPARING|RENDER"))
            expect(page.locator("#preview")).to_have_attribute(
                "data-state", "playing", timeout=TIMEOUT_MS
            )
            assert page.locator("#job-status").text_content() == "RENDERING"

            # And once it succeeded, the mp4 plays, downloads and shows its figures
            expect(page.locator("#job-status")).to_have_text("SUCCEEDED", timeout=TIMEOUT_MS)
            result = page.locator("#result")
            result.evaluate("video => { video.muted = true; return video.play(); }")
            page.wait_for_function(
                "() => { const v = document.getElementById('result');"
                " return v.readyState >= 2 && v.currentTime > 0.2; }"
            )
            assert float(page.locator("#job-sync").text_content() or "nan") == pytest.approx(0.8)
            expect(page.locator("#job-timings")).to_contain_text("speak")
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "download.mp4"
            download.value.save_as(saved)
            assert saved.read_bytes()[4:8] == b"ftyp"

            # And the job and its avatar are listed
            job_id = page.locator("#job-id").text_content()
            expect(page.locator(f"#jobs-table tr[data-job-id='{job_id}']")).to_contain_text(
                "SUCCEEDED"
            )
            expect(page.locator("#avatars-table tbody tr")).to_have_count(1)
            _screenshot(page)

            # When they purge the job from the list and confirm
            page.once("dialog", lambda dialog: dialog.accept())
            page.locator(f"#jobs-table tr[data-job-id='{job_id}'] button", has_text="Purge").click()

            # Then its media and the avatar made from them are erased; the job record stays
            expect(page.locator("#avatars-table tbody tr")).to_have_count(0)
            expect(page.locator(f"#jobs-table tr[data-job-id='{job_id}']")).to_be_visible()
            assert errors == []
        except BaseException:
            _screenshot(page)  # what the page showed when it failed
            raise
        finally:
            browser.close()


def _screenshot(page: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"playground screenshot: {shot}")
