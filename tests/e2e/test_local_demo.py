"""The local demo as a user runs it: `python -m runtime.local demo`, real HTTP, real subprocesses.

One run, with the real engine on tiny random weights (what a user's first command does); the
service with the small test engine is driven through `up` by `test_local_up.py`. Checks what a
user would: the mp4s (PyAV opens them; video and audio; as long as the speech to within one
frame), the job records, the SNS completion events, and that nothing is left running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from runtime.common.jobs import CompletionEvent, JobStatus
from runtime.common.keys import output_key
from runtime.common.records import JobRecord

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_SECONDS = 230


def _missing(*modules: str) -> list[str]:
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    return missing


_SERVICE = ("runtime.api.entrypoints.rest", "runtime.worker.service")
_ENGINE = ("runtime.engine.engine", "runtime.engine.__main__")


def run_demo(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    """Run the demo to completion and return its output directory."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.local",
            "demo",
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(out),
            # Small enough for the 2-core CI budget: 2 avatar frames (a video all the same; the
            # full-size face models take 1-3 s a frame on CPU), 25 output frames cycling over them.
            "--avatar-seconds",
            "0.08",
            "--max-side",
            "360",
            "--audio-seconds",
            "1",
            "--job-timeout",
            "180",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )
    logs = tmp_path / "work" / "logs"
    assert result.returncode == 0, (
        f"demo exited {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}\nworker log:\n"
        f"{(logs / 'worker.log').read_text()[-3000:] if (logs / 'worker.log').exists() else ''}"
    )
    _assert_everything_stopped(result.stderr)
    _assert_no_signed_urls_in(logs, result.stdout + result.stderr)
    return out


def assert_demo_outputs(out: Path, work: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    assert {job["name"]: job["lane"] for job in summary["jobs"]} == {
        "yongen": "interactive",
        "musk": "batch",
    }
    speech_seconds = _duration(work / "media" / "eng.wav", "audio")
    for job in summary["jobs"]:
        files = {kind: Path(path) for kind, path in job["files"].items()}

        # The mp4: opens, has both streams, and lasts as long as the speech (within one frame).
        with av.open(str(files["output"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            fps = float(video.average_rate)
            assert video.frames > 0
            assert audio.sample_rate > 0
        assert abs(_duration(files["output"], "video") - speech_seconds) <= 1 / fps + 1e-6

        # The job record as stored: succeeded, output in the tenant's prefix.
        record = JobRecord.model_validate(json.loads(files["record"].read_text()))
        assert record.status == JobStatus.SUCCEEDED
        assert record.job_id == job["job_id"]
        assert record.lane == job["lane"]
        assert record.output is not None
        assert record.output.key == output_key(record.tenant, record.job_id)
        assert record.frames_total == record.frames_done

        # The job as the API reports it: timings per stage, no presigned URL left in the file.
        api_view = json.loads(files["job"].read_text())
        assert api_view["status"] == "SUCCEEDED"
        for stage in ("queue_wait_ms", "download_ms", "prepare_ms", "speak_ms", "upload_ms"):
            assert api_view["timings"][stage] is not None, stage
        assert "Signature" not in files["job"].read_text()

        # The completion event as SNS delivered it, with the attributes subscribers filter on.
        delivered = json.loads(files["event"].read_text())
        event = CompletionEvent.model_validate(delivered["event"])
        assert event.type == "job.succeeded"
        assert event.job_id == record.job_id
        assert event.output == record.output
        assert delivered["attributes"] == {"status": "SUCCEEDED", "tenant": record.tenant}

        # The contact sheet next to the mp4, and the one-line reason the lips move or not.
        sheet = job["contact_sheet"]
        assert "error" not in sheet, sheet
        assert Path(sheet["out"]) == files["output"].with_name(f"{job['name']}.contact.png")
        assert Path(sheet["out"]).stat().st_size > 0
        assert sheet["speech_frames"] > 0  # the speech was trimmed to where the words are
        assert sheet["verdict"]


def _duration(path: Path, kind: str) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        if kind == "video":
            return stream.frames / float(stream.average_rate)
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.sample_rate


def _assert_everything_stopped(stderr: str) -> None:
    pids = [int(pid) for pid in re.findall(r"worker started, pid (\d+)", stderr)]
    assert pids, "the demo did not report its worker"
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _assert_no_signed_urls_in(logs: Path, console: str) -> None:
    texts = [console, *(log.read_text(errors="replace") for log in logs.glob("*.log"))]
    assert not any("X-Amz-Signature" in text or "x-amz-signature" in text for text in texts)


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing(*_SERVICE, *_ENGINE)),
    reason=f"needs API, worker and MuseTalk engine: {_missing(*_SERVICE, *_ENGINE)} missing",
)
def test_demo_renders_the_sample_media_with_the_musetalk_engine_on_tiny_weights(
    tmp_path: Path,
) -> None:
    """What a user's first command does: tiny random weights, the real engine, CPU."""
    out = run_demo(tmp_path)

    assert_demo_outputs(out, tmp_path / "work")
    summary = json.loads((out / "summary.json").read_text())
    assert {job["weights"] for job in summary["jobs"]} == {"random"}
