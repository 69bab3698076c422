"""Resume after interruption: segments in S3 as they finish, the next attempt starts at the first
missing one, and the joined output equals an uninterrupted render (decoded, frame by frame)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from runtime.common.jobs import JobStatus
from runtime.common.keys import job_segments_prefix, segment_key
from runtime.common.names import BucketRole, EnvVar, JobsTable
from runtime.common.preview import PREVIEW_TAG
from runtime.common.records import job_pk
from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.engine_contract import Segment, SegmentPlan
from runtime.worker.job_runner import Outcome
from runtime.worker.render_claims import Claim, ClaimHeld, RenderClaims
from runtime.worker.service import Worker
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import MEDIA, WorkerWorld

SEGMENT_FRAMES = 50  # yongen.wav is 200 frames at 25 fps: 4 segments
SEGMENTED = {EnvVar.SEGMENT_FRAMES: str(SEGMENT_FRAMES)}


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The same inputs rendered once without interruption, outside the worker."""
    work = tmp_path_factory.mktemp("reference")
    engine = SmallEngine()
    prepared = engine.prepare(MEDIA / "yongen.mp4", None)  # type: ignore[arg-type]
    plan = SegmentPlan(directory=work / "segments", frames_per_segment=SEGMENT_FRAMES)
    engine.speak(
        prepared,
        MEDIA / "yongen.wav",
        work / "out.mp4",
        options=None,  # type: ignore[arg-type]
        segments=plan,
    )
    return decoded(work / "out.mp4")


def run_job(run_once: Callable[[], Outcome | None]) -> Outcome:
    outcome = run_once()
    assert outcome is not None
    return outcome


def stopping_worker(make_worker: MakeWorker, frame: int) -> Worker:
    """A worker on the small engine that is told to stop (as by SIGTERM, with no time left to
    finish) once `frame` frames are rendered; it interrupts at the engine's next check."""
    engine = SmallEngine()
    worker = make_worker(engine, **SEGMENTED, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"})
    engine.after_batch = lambda done: worker.stop.request() if done >= frame else None
    return worker


def segment_keys(world: WorkerWorld, tenant: str, job_id: str) -> list[str]:
    """The render's segment objects (not the preview playlist next to them)."""
    listing = world.s3.list_objects_v2(
        Bucket=world.bucket(BucketRole.OUTPUTS), Prefix=job_segments_prefix(tenant, job_id)
    )
    return [item["Key"] for item in listing.get("Contents", []) if item["Key"].endswith(".ts")]


def output_frames(world: WorkerWorld, job_id: str, tmp_path: Path) -> list[np.ndarray]:
    record = world.record(job_id)
    assert record.output is not None
    path = tmp_path / f"{job_id}.mp4"
    world.s3.download_file(record.output.bucket, record.output.key, str(path))
    return decoded(path)


@pytest.mark.parametrize(
    ("interruption", "frame", "segments_kept"),
    [("stop", 60, 1), ("stop", 160, 3), ("crash", 110, 2)],
)
def test_an_interrupted_job_resumes_at_the_first_missing_segment(
    world: WorkerWorld,
    make_worker: MakeWorker,
    reference: list[np.ndarray],
    tmp_path: Path,
    interruption: str,
    frame: int,
    segments_kept: int,
) -> None:
    # Given a job whose first attempt is told to stop (SIGTERM: the worker's stop policy turns
    # the engine's should_stop true) or crashes, once `frame` frames are rendered
    message = world.submit()
    if interruption == "stop":
        first = stopping_worker(make_worker, frame)
    else:
        first = make_worker(SmallEngine(fail_at_frame=frame), **SEGMENTED)
    outcome = run_job(first.run_once)
    assert outcome is (Outcome.INTERRUPTED if interruption == "stop" else Outcome.RETRY)
    # Then it is queued again with the finished segments recorded and in S3
    record = world.record(message.job_id)
    assert record.status is JobStatus.QUEUED
    assert (record.segments_done, record.segment_frames) == (segments_kept, SEGMENT_FRAMES)
    expected_keys = [segment_key(message.tenant, message.job_id, i) for i in range(segments_kept)]
    assert segment_keys(world, message.tenant, message.job_id) == expected_keys

    # When a second worker (another machine: nothing local) takes the redelivered message
    engine = SmallEngine()
    second = make_worker(engine, **SEGMENTED)
    assert run_job(second.run_once) is Outcome.SUCCEEDED

    # Then it rendered only from the first missing segment on
    resumed_at = segments_kept * SEGMENT_FRAMES
    assert engine.rendered_from == [resumed_at]
    assert engine.frames_rendered == 200 - resumed_at
    record = world.record(message.job_id)
    assert record.status is JobStatus.SUCCEEDED
    assert record.resumed_from_frame == resumed_at
    # And the event log says where it resumed, and announced the preview exactly once
    events = world.table.get_item(Key={JobsTable.PARTITION_KEY: job_pk(message.job_id)})["Item"]
    rendering = [e for e in events["events"] if e.get("status") == JobStatus.RENDERING.value]
    assert [e.get("resumed_from_frame") for e in rendering] == [None, resumed_at]
    assert [e["kind"] for e in events["events"]].count("preview_ready") == 1
    # And the output's decoded frames equal the uninterrupted render's exactly
    frames = output_frames(world, message.job_id, tmp_path)
    assert len(frames) == len(reference) == 200
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))
    # And the segments stay for the preview's grace, tagged for their lifecycle rule
    keys = segment_keys(world, message.tenant, message.job_id)
    assert len(keys) == 4
    for key in keys:
        tags = world.s3.get_object_tagging(Bucket=world.bucket(BucketRole.OUTPUTS), Key=key)
        assert {(t["Key"], t["Value"]) for t in tags["TagSet"]} == {PREVIEW_TAG}


def test_segments_of_another_render_are_not_reused(
    world: WorkerWorld, make_worker: MakeWorker, reference: list[np.ndarray], tmp_path: Path
) -> None:
    # Given a job interrupted after two segments, whose record then names another render
    message = world.submit()
    first = stopping_worker(make_worker, 110)
    assert run_job(first.run_once) is Outcome.INTERRUPTED
    world.table.update_item(
        Key={JobsTable.PARTITION_KEY: job_pk(message.job_id)},
        UpdateExpression="SET segments_hash = :other",
        ExpressionAttributeValues={":other": "0" * 64},
    )
    # When the next attempt runs
    engine = SmallEngine()
    second = make_worker(engine, **SEGMENTED)
    assert run_job(second.run_once) is Outcome.SUCCEEDED
    # Then it started over from the first frame and still produced the reference frames
    assert engine.rendered_from == [0]
    assert world.record(message.job_id).resumed_from_frame is None
    frames = output_frames(world, message.job_id, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))


@pytest.mark.parametrize(
    ("first_options", "first_env", "first_encoding"),
    [
        # A worker deployed with MUSETALK_X264_PRESET=ultrafast: x264's parameter sets differ
        # from the default preset's (ultrafast's without CABAC)
        ({"encoder_preset": "ultrafast"}, {EnvVar.X264_PRESET: "ultrafast"}, "libx264/ultrafast"),
        # A host where NVENC opened, on the same settings: the engine, not the preset, decides.
        # The test host has no NVENC; the stand-in's segments differ from superfast's as NVENC's do
        ({"encoder_preset": "ultrafast", "reported_encoding": "h264_nvenc"}, {}, "h264_nvenc"),
    ],
    ids=["x264-preset", "nvenc"],
)
def test_segments_of_another_encoding_are_not_reused(
    world: WorkerWorld,
    make_worker: MakeWorker,
    reference: list[np.ndarray],
    tmp_path: Path,
    first_options: dict[str, Any],
    first_env: dict[str, str],
    first_encoding: str,
) -> None:
    # Given a job interrupted after two segments encoded otherwise than the default engine's
    message = world.submit()
    first_engine = SmallEngine(**first_options)
    first = make_worker(
        first_engine, **SEGMENTED, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"}, **first_env
    )
    first_engine.after_batch = lambda done: first.stop.request() if done >= 110 else None
    assert run_job(first.run_once) is Outcome.INTERRUPTED
    record = world.record(message.job_id)
    assert (record.segments_done, record.segments_encoding) == (2, first_encoding)
    # When the next attempt runs on a worker with the default engine (libx264, default preset)
    engine = SmallEngine()
    second = make_worker(engine, **SEGMENTED)
    assert run_job(second.run_once) is Outcome.SUCCEEDED
    # Then it started over, so every frame is the default preset's (the reference's)
    assert engine.rendered_from == [0]
    record = world.record(message.job_id)
    assert record.resumed_from_frame is None
    assert record.segments_encoding == f"libx264/{DEFAULT_PRESET}"
    frames = output_frames(world, message.job_id, tmp_path)
    assert len(frames) == len(reference)
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference, strict=True))


EARLIER_BODY = b"an earlier attempt's segment"


def seed_longer_earlier_attempt(world: WorkerWorld, tenant: str, job_id: str) -> int:
    """An earlier attempt of another segment size that recorded segments 0..6 and uploaded 7
    without recording it (stopped between the two); returns its last segment's index."""
    for index in range(8):
        world.s3.put_object(
            Bucket=world.bucket(BucketRole.OUTPUTS),
            Key=segment_key(tenant, job_id, index),
            Body=EARLIER_BODY,
        )
    world.table.update_item(
        Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
        UpdateExpression="SET segments_done = :done, segment_frames = :size, segments_hash = :hash",
        ExpressionAttributeValues={":done": 7, ":size": 25, ":hash": "0" * 64},
    )
    return 7


def test_a_shorter_render_deletes_a_longer_earlier_attempts_later_segments(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose earlier attempt (25-frame segments) left segments 0..7
    message = world.submit()
    seed_longer_earlier_attempt(world, message.tenant, message.job_id)
    # When it renders again in 50-frame segments: 4 of them
    assert run_job(make_worker(SmallEngine(), **SEGMENTED).run_once) is Outcome.SUCCEEDED
    # Then only this render's segments 0..3 are left, and none is the earlier attempt's
    keys = segment_keys(world, message.tenant, message.job_id)
    assert keys == [segment_key(message.tenant, message.job_id, i) for i in range(4)]
    assert world.record(message.job_id).segments_done == 4
    for key in keys:
        body = world.s3.get_object(Bucket=world.bucket(BucketRole.OUTPUTS), Key=key)["Body"]
        assert body.read() != EARLIER_BODY, key


def test_a_failed_deletion_of_earlier_segments_never_fails_the_job(
    world: WorkerWorld,
    make_worker: MakeWorker,
    worker_session: boto3.session.Session,
) -> None:
    # Given the same longer earlier attempt, and S3 refusing every DeleteObjects of the worker
    message = world.submit()
    last = seed_longer_earlier_attempt(world, message.tenant, message.job_id)

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObjects")

    worker_session.events.register("before-call.s3.DeleteObjects", refuse, unique_id="refuse")
    try:
        worker = make_worker(SmallEngine(), **SEGMENTED)  # its clients copy the handler
    finally:
        worker_session.events.unregister("before-call.s3.DeleteObjects", unique_id="refuse")
    # When it renders again
    # Then the job still succeeds; the earlier segments past its last wait for the lifecycle rule
    assert run_job(worker.run_once) is Outcome.SUCCEEDED
    keys = segment_keys(world, message.tenant, message.job_id)
    assert keys == [segment_key(message.tenant, message.job_id, i) for i in range(last + 1)]


class CancelledMidRender(SmallEngine):
    """The caller cancels the job (as the API does) while segment 1 is being uploaded."""

    def __init__(self, world: WorkerWorld, job_id: str) -> None:
        super().__init__()
        self._world, self._job_id = world, job_id

    def speak(self, prepared: Any, audio: Path, out_path: Path, **kwargs: Any) -> Any:
        plan: SegmentPlan = kwargs.pop("segments")
        forward = plan.on_segment
        assert forward is not None

        def on_segment(segment: Segment) -> None:
            if segment.index == 1:
                self._world.table.update_item(
                    Key={JobsTable.PARTITION_KEY: job_pk(self._job_id)},
                    UpdateExpression="SET #status = :cancelled",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":cancelled": JobStatus.CANCELLED.value},
                )
            forward(segment)

        segments = SegmentPlan(
            directory=plan.directory,
            frames_per_segment=plan.frames_per_segment,
            start_frame=plan.start_frame,
            on_segment=on_segment,
        )
        return super().speak(prepared, audio, out_path, segments=segments, **kwargs)


def test_a_job_cancelled_mid_render_leaves_no_segments_and_no_message(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job cancelled while its second segment uploads
    message = world.submit()
    worker = make_worker(CancelledMidRender(world, message.job_id), **SEGMENTED)
    # When the worker's record write for that segment finds the job no longer its own
    assert run_job(worker.run_once) is Outcome.CANCELLED
    # Then it stopped and removed every segment and the playlist (no preview to finish)
    listing = world.s3.list_objects_v2(
        Bucket=world.bucket(BucketRole.OUTPUTS),
        Prefix=job_segments_prefix(message.tenant, message.job_id),
    )
    assert listing.get("KeyCount", 0) == 0
    assert world.record(message.job_id).segments_done == 1
    # And its message is gone at once, not back after the visibility timeout as a duplicate
    assert world.messages_in(world.queue_urls[message.lane]) == 0


def test_a_job_stopped_by_sigterm_keeps_its_render_claim_and_resumes_under_it(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose render is stopped by SIGTERM after two segments
    message = world.submit()
    assert run_job(stopping_worker(make_worker, 110).run_once) is Outcome.INTERRUPTED
    content_hash = world.record(message.job_id).segments_hash
    assert content_hash is not None
    claims = RenderClaims(world.table)

    # When another job of the same content asks for the content's render claim
    other = claims.take(content_hash, owner="worker-x", job_id="job-other", lease_seconds=60)

    # Then the stopped job still holds it (no second render from frame 0 elsewhere) ...
    assert isinstance(other, ClaimHeld)
    assert other.job_id == message.job_id
    # ... and the stopped job, redelivered, takes it back and resumes at its first missing segment
    engine = SmallEngine()
    assert run_job(make_worker(engine, **SEGMENTED).run_once) is Outcome.SUCCEEDED
    assert engine.rendered_from == [2 * SEGMENT_FRAMES]
    # And the claim is released once the render is cached
    retaken = claims.take(content_hash, owner="worker-x", job_id="job-other", lease_seconds=60)
    assert isinstance(retaken, Claim)
