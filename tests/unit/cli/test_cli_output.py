"""Human renderings: timings in pipeline order and the progress bar in both stream kinds."""

from __future__ import annotations

import io

from runtime.cli.output import STAGE_LABELS, format_job, format_timings
from runtime.cli.progress import ProgressBar, progress_fraction
from runtime.common.jobs import StageTimings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_stage_of_the_contract_has_a_label() -> None:
    assert set(STAGE_LABELS) == set(StageTimings.model_fields)


def test_timings_read_in_pipeline_order_with_units() -> None:
    timings = {"upload_ms": 40.0, "queue_wait_ms": 12.4, "speak_ms": 3456.0, "encode_ms": None}

    assert format_timings(timings) == "queue wait 12 ms · speak 3.5 s · upload 40 ms"
    assert format_timings({}) == "-"


def test_a_failed_job_shows_its_error_code_and_message() -> None:
    job = {
        "job_id": "j1",
        "status": "FAILED",
        "lane": "batch",
        "progress": 0.25,
        "timings": {},
        "error": {"code": "NO_FACE", "message": "no face found in frame 0"},
    }

    text = format_job(job)

    assert "j1  FAILED  lane=batch" in text
    assert "progress  25%" in text
    assert "error     NO_FACE: no face found in frame 0" in text


def test_on_a_terminal_the_bar_redraws_one_line() -> None:
    terminal = _Terminal()
    bar = ProgressBar(terminal, label="j1")

    bar.update({"status": "RENDERING", "progress": 0.5, "frames_done": 5, "frames_total": 10})
    bar.update({"status": "SUCCEEDED", "progress": 1.0})

    output = terminal.getvalue()
    assert output.count("\r") == 2
    assert output.endswith("\n")
    assert "frames 5/10" in output
    assert "[" + "#" * 15 + "-" * 15 + "]  50%" in output


def test_in_a_log_the_bar_prints_status_changes_and_each_tenth_of_the_render() -> None:
    log = io.StringIO()
    bar = ProgressBar(log)

    bar.update({"status": "QUEUED", "progress": 0})
    for _ in range(3):  # polls while the avatar is prepared: nothing new to say
        bar.update({"status": "RUNNING", "progress": 0, "frames_total": 1000})
    for done in (50, 125, 180, 250, 375):  # frames as the worker records them
        bar.update({"status": "RUNNING", "progress": 0, "frames_done": done, "frames_total": 1000})
    bar.update({"status": "SUCCEEDED", "progress": 1.0})

    lines = log.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == [
        "0%",
        "0%",
        "12%",
        "25%",
        "38%",
        "100%",
    ]
    assert "frames 125/1000" in lines[2]


def test_the_bar_follows_frames_done_and_never_moves_back() -> None:
    terminal = _Terminal()
    bar = ProgressBar(terminal)

    bar.update({"status": "RUNNING", "progress": 0, "frames_done": 500, "frames_total": 1000})
    bar.update({"status": "RUNNING", "progress": 0, "frames_done": 375, "frames_total": 1000})

    last = terminal.getvalue().split("\r")[-1]
    assert "]  50%" in last


def test_progress_is_clamped_and_tolerates_junk() -> None:
    assert progress_fraction({"status": "RENDERING", "progress": 7}) == 1.0
    assert progress_fraction({"status": "RENDERING", "progress": "x"}) == 0.0
    assert progress_fraction({"status": "SUCCEEDED", "progress": 0.2}) == 1.0
