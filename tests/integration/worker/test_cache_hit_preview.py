"""A job an output-cache hit finishes after an interrupted attempt shows no preview: its
segments are deleted and its record says none are left (a preview would list missing objects)."""

from __future__ import annotations

from runtime.common.jobs import JobStatus
from runtime.common.keys import job_segments_prefix, segment_key
from runtime.common.names import BucketRole, EnvVar, Lane
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import MEDIA, WorkerWorld

SEGMENTED = {EnvVar.SEGMENT_FRAMES: "50"}


def test_a_cache_hit_after_an_interrupted_attempt_leaves_no_preview(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a batch job whose first attempt crashed after two segments (its claim released)
    avatar = world.upload("tenant-a", MEDIA / "yongen.mp4", "avatar")
    audio = world.upload("tenant-a", MEDIA / "yongen.wav", "audio")
    first = world.submit(lane=Lane.BATCH, avatar=avatar, audio=audio)
    crashing = make_worker(SmallEngine(fail_at_frame=110), **SEGMENTED)
    assert crashing.run_once() is Outcome.RETRY
    assert world.record(first.job_id).segments_done == 2
    # (and had uploaded its third without recording it, as a crash between the two leaves it)
    world.s3.put_object(
        Bucket=world.bucket(BucketRole.OUTPUTS),
        Key=segment_key("tenant-a", first.job_id, 2),
        Body=b"unrecorded segment",
    )
    # And an interactive job of the same content rendered (and cached) meanwhile
    second = world.submit(avatar=avatar, audio=audio)
    worker = make_worker(SmallEngine(), **SEGMENTED)
    assert worker.run_once() is Outcome.SUCCEEDED
    assert world.record(second.job_id).status is JobStatus.SUCCEEDED

    # When the interrupted job comes back and the cache supplies its output
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then its segments are gone and its record names none (so no preview is handed out)
    record = world.record(first.job_id)
    assert record.status is JobStatus.SUCCEEDED
    assert record.segments_done == 0
    listing = world.s3.list_objects_v2(
        Bucket=world.bucket(BucketRole.OUTPUTS),
        Prefix=job_segments_prefix("tenant-a", first.job_id),
    )
    assert listing.get("KeyCount", 0) == 0
