"""A resumed job's sync score covers the whole clip: the worker keeps each segment's score sums
with the segment in S3 and hands the kept ones to the engine when it resumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from runtime.common.names import EnvVar
from runtime.engine.engine_contract import Rendered, Segment, SegmentPlan, SyncSums
from runtime.worker.job_runner import Outcome
from runtime.worker.service import Worker
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import MEDIA, WorkerWorld

SEGMENT_FRAMES = 50  # yongen.wav is 200 frames at 25 fps: 4 segments
SEGMENTED = {EnvVar.SEGMENT_FRAMES: str(SEGMENT_FRAMES)}


class ScoringEngine(SmallEngine):
    """Scores as the real engine does for segmented renders: each segment reports its own sums
    (here one window of similarity index + 1), and the score is the mean over the sums kept from
    earlier segments plus this render's."""

    def speak(self, prepared: Any, audio: Path, out_path: Path, **kwargs: Any) -> Rendered:
        plan: SegmentPlan = kwargs.pop("segments")
        forward = plan.on_segment
        assert forward is not None
        total = [plan.sync_sums_before]

        def on_segment(segment: Segment) -> None:
            sums = SyncSums((float(segment.index + 1),), 1)
            total[0] = sums if total[0] is None else total[0].plus(sums)
            forward(dataclasses.replace(segment, sync_sums=sums))

        segments = dataclasses.replace(plan, on_segment=on_segment)
        rendered = super().speak(prepared, audio, out_path, segments=segments, **kwargs)
        whole = total[0]
        assert whole is not None
        return dataclasses.replace(rendered, sync_confidence=whole.similarity[0] / whole.windows)


def stopping_worker(make_worker: MakeWorker, frame: int) -> Worker:
    engine = ScoringEngine()
    worker = make_worker(engine, **SEGMENTED, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"})
    engine.after_batch = lambda done: worker.stop.request() if done >= frame else None
    return worker


def test_a_resumed_job_reports_the_score_of_the_whole_clip(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given one job rendered without interruption (segments scoring 1, 2, 3, 4: mean 2.5)
    audio = MEDIA / "yongen.wav"
    whole = world.submit(tenant="tenant-b", audio=world.upload("tenant-b", audio, "audio"))
    assert make_worker(ScoringEngine(), **SEGMENTED).run_once() is Outcome.SUCCEEDED
    assert world.record(whole.job_id).sync_confidence == 2.5

    # When a job of the same media is stopped after two segments and resumed by another worker
    resumed = world.submit(audio=world.upload("tenant-a", audio, "audio"))
    assert stopping_worker(make_worker, 110).run_once() is Outcome.INTERRUPTED
    assert world.record(resumed.job_id).segments_done == 2
    assert make_worker(ScoringEngine(), **SEGMENTED).run_once() is Outcome.SUCCEEDED

    # Then it reports the same score: the first two segments' sums came back with them
    record = world.record(resumed.job_id)
    assert record.resumed_from_frame == 2 * SEGMENT_FRAMES
    assert record.sync_confidence == 2.5  # its own two segments alone would say 3.5
