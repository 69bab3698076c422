"""Preparation stops on a deadline like a render does, and the engine decodes the avatar
within the stack's limits (the worker passes them with the stop check)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.common.jobs import ErrorCode, JobStatus
from runtime.common.limits import DEFAULT_LIMITS
from runtime.engine.options import AvatarOptions
from runtime.engine.untrusted import DETECTOR_MIN_SIDE, DecodeLimits
from runtime.worker import deadlines
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import iso, utc_now
from tests.integration.worker.conftest import MakeWorker, ended
from tests.support.small_engine import SmallEngine, SmallPrepared
from tests.support.worker_world import WorkerWorld


class DeadlineInPrepareEngine(SmallEngine):
    """Moves the worker's deadline clock two hours ahead as preparation starts, so "the
    deadline passes while preparing" happens at a known point instead of after a sleep."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(default_batch_size=8, prepare_seconds=30)
        self._offset = timedelta(0)
        monkeypatch.setattr(deadlines, "now", self._now)

    def _now(self) -> datetime:
        return utc_now() + self._offset

    def prepare(
        self,
        avatar_media: Path,
        options: AvatarOptions,
        *,
        limits: DecodeLimits | None = None,
        should_stop: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> SmallPrepared:
        self._offset = timedelta(hours=2)
        return super().prepare(avatar_media, options, limits=limits, should_stop=should_stop)


def test_a_deadline_passing_while_preparing_stops_preparation_and_cancels(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job with an hour to go and a 30 s preparation during which the hour passes
    message = world.submit(deadline_at=iso(utc_now() + timedelta(hours=1)))
    engine = DeadlineInPrepareEngine(monkeypatch)
    worker = make_worker(engine)

    # When the worker runs it
    outcome = worker.run_once()

    # Then preparation stopped at its next check (long before 30 s), nothing was rendered, and
    # the job ended CANCELLED at its deadline
    assert outcome is Outcome.CANCELLED
    assert ended(world, message.job_id) == (JobStatus.CANCELLED, ErrorCode.DEADLINE_EXCEEDED)
    assert engine.speak_calls == 0
    # and the engine was given the stack's decode limits
    assert engine.prepare_limits is not None
    assert engine.prepare_limits.max_pixels == DEFAULT_LIMITS.max_video_pixels
    assert engine.prepare_limits.max_decoded_bytes == DEFAULT_LIMITS.max_decoded_avatar_bytes
    assert engine.prepare_limits.min_side == DETECTOR_MIN_SIDE
