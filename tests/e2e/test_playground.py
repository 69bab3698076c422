"""The playground page in a real browser (Debian's headless Chromium, driven by Playwright's
Python client; no browser download) against `python -m runtime.local up` with the small test
engine: a bad option shows the API's message at its field, then upload, submit, the live HLS
preview plays while the job renders, the mp4 plays and downloads, and purging the job from the
list erases its avatar. The same page on a static server, given the API's URL and key, works
across origins (CORS) as against a deployed stack. Screenshots go to `test-artifacts/`
(git-ignored)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime.local.media import EXAMPLES_DIR, trim_audio
from tests.e2e.test_local_demo import _SERVICE, REPO_ROOT, _missing
from tests.e2e.test_local_up import _read_exports

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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


@dataclass(frozen=True)
class LocalUp:
    page_url: str  # served by local mode's gateway, the key in the fragment
    api_url: str
    api_key: str


@pytest.fixture(scope="module")
def static_site() -> Iterator[str]:
    """The repository served by a plain static server, as a user would host the page."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(REPO_ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def local_up(tmp_path_factory: pytest.TempPathFactory, static_site: str) -> Iterator[LocalUp]:
    """`up` with the small engine, also allowing the static site's origin."""
    work = tmp_path_factory.mktemp("playground")
    models = work / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"small engine")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **RENDER_ENV}
    stderr_log = work / "up.stderr"
    command = [*UP, "--models", str(models), "--work-dir", str(work / "work")]
    with stderr_log.open("w+") as stderr:
        up = subprocess.Popen(
            [*command, "--allow-origin", static_site],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            exports = _read_exports(up)  # printed once everything runs
            page = re.search(r"playground page: (\S+)", stderr_log.read_text())
            assert page is not None, stderr_log.read_text()[-2000:]
            yield LocalUp(page.group(1), exports["MUSETALK_API_URL"], exports["MUSETALK_API_KEY"])
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # renders and uploads, not only page updates
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own storage) that fails the test on any uncaught script error."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def test_the_playground_renders_a_job_in_a_real_browser(
    local_up: LocalUp, page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    speech = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "speech.wav", AUDIO_SECONDS)
    with _screenshot_on_failure(page, "playground-failed"):
        # Given the page opened from the URL local mode printed
        page.goto(local_up.page_url)
        expect(page.locator("#connection-status")).to_have_text("connected")
        assert "key=" not in page.url  # the key left the address bar

        # When the user submits a face and speech with a bbox_shift out of range
        page.set_input_files("#avatar-file", str(EXAMPLES_DIR / "musk.png"))
        page.set_input_files("#audio-file", str(speech))
        page.fill("[data-field='avatar_options.bbox_shift']", "99")
        page.click("#submit")

        # Then the API's own message is shown at that field, and no job was submitted
        error = page.locator("[data-error-for='avatar_options.bbox_shift']")
        expect(error).to_contain_text("less than or equal to 40")
        expect(page.locator("[data-field='avatar_options.bbox_shift']")).to_have_attribute(
            "aria-invalid", "true"
        )
        expect(page.locator("#job")).to_be_hidden()

        # When they fix it and submit again
        page.fill("[data-field='avatar_options.bbox_shift']", "0")
        page.click("#submit")

        # Then the job is followed, and its live preview plays while it renders
        expect(page.locator("#job-status")).to_have_text(re.compile("QUEUED|PREPARING|RENDER"))
        expect(page.locator("#preview")).to_have_attribute("data-state", "playing")
        assert page.locator("#job-status").text_content() == "RENDERING"

        # And once it succeeded, the mp4 plays, downloads and shows its figures
        expect(page.locator("#job-status")).to_have_text("SUCCEEDED")
        _play_result(page)
        assert float(page.locator("#job-sync").text_content() or "nan") == pytest.approx(0.8)
        expect(page.locator("#job-timings")).to_contain_text("speak")
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "download.mp4"
        download.value.save_as(saved)
        assert saved.read_bytes()[4:8] == b"ftyp"

        # And the job and its avatar are listed
        job_id = page.locator("#job-id").text_content()
        job_row = page.locator(f"#jobs-table tr[data-job-id='{job_id}']")
        expect(job_row).to_contain_text("SUCCEEDED")
        expect(page.locator("#avatars-table tbody tr")).to_have_count(1)
        _screenshot(page, "playground")

        # When they purge the job from the list and confirm
        page.once("dialog", lambda dialog: dialog.accept())
        job_row.locator("button", has_text="Purge").click()

        # Then its media and the avatar made from them are erased; the job record stays
        expect(page.locator("#avatars-table tbody tr")).to_have_count(0)
        expect(job_row).to_be_visible()


def test_a_page_on_another_origin_uses_the_api_url_and_key_it_is_given(
    local_up: LocalUp, static_site: str, page: Page, tmp_path: Path
) -> None:
    """As against a deployed stack: the page on a static host, the API elsewhere (CORS)."""
    from playwright.sync_api import expect

    speech = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "speech.wav", 1.0)
    with _screenshot_on_failure(page, "playground-cross-origin-failed"):
        # Given the page served by a static server, and the API's URL and key typed in
        page.goto(f"{static_site}/playground/")
        expect(page.locator("#connection-status")).to_have_text("")
        page.fill("#api-url", local_up.api_url)
        page.fill("#api-key", local_up.api_key)
        page.click("#connection-form button")
        expect(page.locator("#connection-status")).to_have_text("connected")

        # When a job option is out of range
        page.set_input_files("#avatar-file", str(EXAMPLES_DIR / "musk.png"))
        page.set_input_files("#audio-file", str(speech))
        page.fill("[data-field='options.sync_threshold']", "2")
        page.click("#submit")

        # Then the API's error reaches the page across origins, at its field
        error = page.locator("[data-error-for='options.sync_threshold']")
        expect(error).to_contain_text("less than or equal to 1")

        # And once fixed, the uploads (to the emulator's buckets) and the job go through
        page.fill("[data-field='options.sync_threshold']", "0.3")
        page.click("#submit")
        expect(page.locator("#job-status")).to_have_text("SUCCEEDED")
        _play_result(page)


def _play_result(page: Page) -> None:
    """The mp4 really decodes: the element has frames and its time advances."""
    page.locator("#result").evaluate("video => { video.muted = true; return video.play(); }")
    page.wait_for_function(
        "() => { const v = document.getElementById('result');"
        " return v.readyState >= 2 && v.currentTime > 0.2; }"
    )


@contextmanager
def _screenshot_on_failure(page: Page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _screenshot(page, name)
        raise


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"playground screenshot: {shot}")
