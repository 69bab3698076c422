"""A job through the worker against the emulator: render, output, record, event; exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from runtime.common.jobs import JobStatus
from runtime.common.keys import avatar_cache_key
from runtime.common.metrics import Metric
from runtime.common.names import BucketRole, EnvVar, Lane
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import MEDIA, WorkerWorld


def test_job_flows_from_queued_to_succeeded_with_a_playable_mp4_and_an_event(
    world: WorkerWorld, make_worker: MakeWorker, tmp_path: Path
) -> None:
    # Given a queued job and a worker
    message = world.submit(tenant="tenant-a")
    worker = make_worker()

    # When the worker takes one message
    outcome = worker.run_once()

    # Then the job succeeded with its results and timings recorded
    assert outcome is Outcome.SUCCEEDED
    record = world.record(message.job_id)
    assert record.status is JobStatus.SUCCEEDED
    assert record.attempt == 1
    assert record.lease_owner is None
    assert record.frames_total == 200  # 8 s of audio at 25 fps
    assert record.fps == 25
    assert record.weights == "random"
    assert record.sync_confidence is not None
    assert record.completion_pending is False  # the worker's event went out
    for stage in ("queue_wait_ms", "download_ms", "prepare_ms", "speak_ms", "upload_ms"):
        assert getattr(record.timings, stage) is not None, stage
    # And the output is an H.264 yuv420p mp4 with the audio muxed, moov atom first (faststart)
    assert record.output is not None
    assert record.output.bucket == world.bucket(BucketRole.OUTPUTS)
    # And the cached render it came from is on the record (so a purge can erase it too)
    assert record.output_cache_key is not None
    assert record.output_cache_key.startswith(f"rendered/{SmallEngine.model_version}/")
    world.s3.head_object(Bucket=record.output.bucket, Key=record.output_cache_key)
    local = tmp_path / "out.mp4"
    world.s3.download_file(record.output.bucket, record.output.key, str(local))
    data = local.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    with av.open(str(local)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in container.decode(video=0)) == 200
    # And a completion event reached the topic's subscriber, with filterable attributes
    (envelope,) = world.events()
    event = json.loads(envelope["Message"])
    assert event["job_id"] == message.job_id
    assert event["type"] == "job.succeeded"
    assert event["output"]["key"] == record.output.key
    assert envelope["MessageAttributes"]["status"]["Value"] == "SUCCEEDED"
    assert envelope["MessageAttributes"]["tenant"]["Value"] == "tenant-a"
    # And the message is gone and the metrics say so
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    assert worker.metrics.count(Metric.JOBS_SUCCEEDED) == 1


def test_duplicate_messages_of_one_job_render_once(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given the same job sent twice (an at-least-once queue, or a retried API call)
    message = world.submit(copies=2)
    engine = SmallEngine()
    worker = make_worker(engine)

    # When the worker takes both messages
    outcomes = [worker.run_once(), worker.run_once()]

    # Then it rendered once, dropped the duplicate, and no message is left
    assert outcomes == [Outcome.SUCCEEDED, Outcome.DROPPED]
    assert engine.speak_calls == 1
    assert worker.metrics.count(Metric.DUPLICATES_DROPPED) == 1
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    assert world.record(message.job_id).status is JobStatus.SUCCEEDED
    assert len(world.events()) == 1


@pytest.mark.parametrize(
    ("share", "renders"),
    [
        ("", 2),  # the default: each tenant's content renders once for that tenant
        ("true", 1),  # shared across tenants: the content renders once for everyone
    ],
)
def test_equal_content_renders_once_per_tenant_unless_shared_across_tenants(
    share: str, renders: int, world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given three jobs with the same avatar and audio content: tenant A's, tenant B's, A's again
    jobs = [world.submit(tenant=tenant) for tenant in ("tenant-a", "tenant-b", "tenant-a")]
    engine = SmallEngine()
    worker = make_worker(engine, **{EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS.value: share})

    # When all are processed
    for _ in jobs:
        assert worker.run_once() is Outcome.SUCCEEDED

    # Then the content rendered once per tenant (or once in all when shared); the rest were
    # copied from the output cache, each into its own tenant's prefix
    assert engine.speak_calls == renders
    assert worker.metrics.count(Metric.OUTPUT_CACHE_HITS) == len(jobs) - renders
    records = [world.record(job.job_id) for job in jobs]
    cache_keys = {record.output_cache_key for record in records}
    assert len(cache_keys) == renders
    for job, record in zip(jobs, records, strict=True):
        assert record.output is not None
        assert record.output.key.startswith(f"tenants/{job.tenant}/")
        assert record.frames_total == records[0].frames_total
        head = world.s3.head_object(Bucket=record.output.bucket, Key=record.output.key)
        assert head["ContentLength"] > 0


def test_prepared_avatars_are_reused_from_memory_and_from_the_bucket(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given two jobs for one avatar with different audio
    avatar = world.upload("tenant-a", MEDIA / "yongen.mp4", "avatar")
    world.submit(avatar=avatar, audio=world.upload("tenant-a", MEDIA / "yongen.wav", "audio"))
    short_audio = _first_seconds_of(MEDIA / "eng.wav", seconds=2)
    world.submit(avatar=avatar, audio=world.upload("tenant-a", short_audio, "audio"))
    engine = SmallEngine()
    worker = make_worker(engine)

    # When one worker renders both
    assert worker.run_once() is Outcome.SUCCEEDED
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then the avatar was prepared once and then taken from memory
    assert engine.prepare_calls == 1
    assert worker.metrics.count(Metric.AVATAR_CACHE_MISSES) == 1
    assert worker.metrics.count(Metric.AVATAR_CACHE_HITS) == 1

    # And another worker loads it from the avatar-cache bucket instead of preparing it
    other_audio = _first_seconds_of(MEDIA / "eng.wav", seconds=3)
    world.submit(avatar=avatar, audio=world.upload("tenant-a", other_audio, "audio"))
    other_engine = SmallEngine()
    other = make_worker(other_engine)
    assert other.run_once() is Outcome.SUCCEEDED
    assert other_engine.prepare_calls == 0
    assert other.metrics.count(Metric.AVATAR_CACHE_HITS) == 1
    assert other.metrics.totals[Metric.AVATAR_CACHE_LOAD_MS.value][0] == 1


def test_a_bucket_hit_older_than_the_refresh_age_restarts_the_bucket_expiry(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given an avatar prepared and persisted by one worker
    avatar = world.upload("tenant-a", MEDIA / "musk.png", "avatar")
    world.submit(avatar=avatar, avatar_id="avatar-musk")
    assert make_worker().run_once() is Outcome.SUCCEEDED
    key = avatar_cache_key(SmallEngine.model_version, "avatar-musk")
    bucket = world.bucket(BucketRole.AVATAR_CACHE)
    assert "refreshed-at" not in world.s3.head_object(Bucket=bucket, Key=key)["Metadata"]

    # When a worker that refreshes anything older than 0 days loads it from the bucket
    other_audio = world.upload("tenant-a", _first_seconds_of(MEDIA / "eng.wav", seconds=1), "audio")
    world.submit(avatar=avatar, audio=other_audio, avatar_id="avatar-musk")
    other = make_worker(**{EnvVar.AVATAR_CACHE_REFRESH_DAYS: "0"})
    assert other.run_once() is Outcome.SUCCEEDED

    # Then the object was re-put in place (new LastModified) and still loads
    assert "refreshed-at" in world.s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert other.metrics.count(Metric.AVATAR_CACHE_HITS) == 1


def test_a_cached_avatar_of_another_format_is_prepared_again_and_overwritten(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given the avatar-cache bucket holds a blob this engine cannot read (an older format)
    avatar = world.upload("tenant-a", MEDIA / "musk.png", "avatar")
    key = avatar_cache_key(SmallEngine.model_version, "avatar-musk")
    bucket = world.bucket(BucketRole.AVATAR_CACHE)
    world.s3.put_object(Bucket=bucket, Key=key, Body=b"MTPA-v0 not this engine's format")
    world.submit(avatar=avatar, avatar_id="avatar-musk")
    engine = SmallEngine()
    worker = make_worker(engine)

    # When a worker takes the job
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then the blob counted as a miss: the avatar was prepared and the blob replaced by one
    # that loads
    assert engine.prepare_calls == 1
    assert worker.metrics.count(Metric.AVATAR_CACHE_MISSES) == 1
    assert worker.metrics.count(Metric.AVATAR_CACHE_HITS) == 0
    stored = world.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert engine.load_prepared(stored).nbytes > 0


def test_interactive_messages_are_taken_before_waiting_batch_messages(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a batch job that was queued before an interactive one
    batch = world.submit(lane=Lane.BATCH)
    interactive = world.submit(lane=Lane.INTERACTIVE)
    worker = make_worker()

    # When the worker takes one job
    worker.run_once()

    # Then it was the interactive one
    assert world.record(interactive.job_id).status is JobStatus.SUCCEEDED
    assert world.record(batch.job_id).status is JobStatus.QUEUED


def _first_seconds_of(path: Path, *, seconds: float) -> bytes:
    """A distinct, valid WAV: the first seconds of a longer file (16-bit mono 16 kHz)."""
    import io
    import wave

    with wave.open(str(path)) as source:
        frames = source.readframes(int(source.getframerate() * seconds))
        params = source.getparams()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as target:
        target.setparams(params)
        target.writeframes(frames)
    return buffer.getvalue()
