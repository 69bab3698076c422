"""Hostile uploads through a real worker: each fails its job once, with a permanent code, before
any preparation or render, and the worker serves the next job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.poison_media import deep_png
from runtime.common.jobs import ErrorCode, JobStatus
from runtime.common.names import Lane
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker, ended
from tests.support.hostile_media import (
    adts_duration_lie,
    adts_format_switch,
    pcm_wav,
    tiny_png,
)
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld

CASES: dict[str, tuple[str, Callable[[Path], Path], ErrorCode]] = {
    "2x2 avatar": ("avatar", lambda p: tiny_png(p / "a.png", 2), ErrorCode.INVALID_MEDIA),
    "16000² 16-bit PNG": (
        "avatar",
        lambda p: deep_png(p / "a.png", 16_000, 16_000, rows=64),
        ErrorCode.MEDIA_TOO_LARGE,
    ),
    "ADTS duration lie": (
        "audio",
        lambda p: adts_duration_lie(p / "a.aac", 1.0, 70.0),
        ErrorCode.AUDIO_TOO_LONG,
    ),
    "9 channels, no layout": ("audio", lambda p: pcm_wav(p / "a.wav", 9), ErrorCode.INVALID_MEDIA),
    "format switch": ("audio", lambda p: adts_format_switch(p / "a.aac"), ErrorCode.INVALID_MEDIA),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_upload_fails_its_job_once_with_a_permanent_code(
    world: WorkerWorld, make_worker: MakeWorker, tmp_path: Path, case: str
) -> None:
    # Given a job whose audio or avatar is hostile
    kind, make, code = CASES[case]
    media = world.upload("tenant-a", make(tmp_path), kind)
    message = world.submit(**{kind: media})
    engine = SmallEngine()
    worker = make_worker(engine)

    # When it runs once
    outcome = worker.run_once()

    # Then it is FAILED with its code at once (not retried), nothing was prepared or rendered
    assert outcome is Outcome.FAILED
    assert ended(world, message.job_id) == (JobStatus.FAILED, code)
    assert (engine.prepare_calls, engine.speak_calls) == (0, 0)
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    # and the same worker renders an ordinary job next
    good = world.submit()
    assert worker.run_once() is Outcome.SUCCEEDED
    assert ended(world, good.job_id)[0] is JobStatus.SUCCEEDED
