"""Equal content is rendered once: two workers with different jobs of the same content do not
both render (the render claim), a dead holder's claim expires, and a holder's media error
answers for the jobs that wait for it."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from runtime.common.events import JobEvent, events_of
from runtime.common.jobs import ErrorCode, JobError, JobMessage, JobStatus, MediaRef
from runtime.common.metrics import Metric
from runtime.common.names import JobsTable, Lane
from runtime.common.records import job_pk, render_claim_pk
from runtime.engine.options import AvatarOptions
from runtime.worker import deadlines
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import iso, utc_now
from runtime.worker.render_cache import render_cache_hash
from runtime.worker.render_claims import Claim, ClaimHeld, RenderClaims
from runtime.worker.service import Worker
from tests.integration.worker.conftest import InBackground, MakeWorker, ended
from tests.support.small_engine import SmallEngine, SmallPrepared
from tests.support.worker_world import MAX_RECEIVE_COUNT, MEDIA, WorkerWorld

GATE_TIMEOUT_SECONDS = 60


class GatedEngine(SmallEngine):
    """Holds `prepare` (after the claim is taken) until the test opens the gate, so another
    worker can run into the claim while this one renders."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def prepare(self, avatar_media: Path, options: AvatarOptions, **kwargs: Any) -> SmallPrepared:
        self.entered.set()
        assert self.gate.wait(GATE_TIMEOUT_SECONDS), "the test never opened the gate"
        return super().prepare(avatar_media, options, **kwargs)


class HeldAtTheGate:
    """A worker's `run_once` on a thread, held at its engine's gate until `finish`."""

    def __init__(self, worker: Worker, engine: GatedEngine) -> None:
        self._engine = engine
        self._run = InBackground(worker)
        assert engine.entered.wait(GATE_TIMEOUT_SECONDS), "the first worker never started"

    def finish(self) -> Outcome | None:
        self._engine.gate.set()
        return self._run.outcome(GATE_TIMEOUT_SECONDS)


def two_jobs_of_one_content(world: WorkerWorld, avatar: MediaRef) -> list[JobMessage]:
    audio = world.upload("tenant-a", MEDIA / "yongen.wav", "audio")
    return [world.submit(avatar=avatar, audio=audio, avatar_id="avatar-one") for _ in range(2)]


def output_bytes(world: WorkerWorld, job_id: str) -> bytes:
    output = world.record(job_id).output
    assert output is not None
    return bytes(world.s3.get_object(Bucket=output.bucket, Key=output.key)["Body"].read())


def test_two_workers_with_jobs_of_the_same_content_render_it_once(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given two jobs with the same avatar, audio and options, and a worker rendering the first
    first, second = two_jobs_of_one_content(
        world, world.upload("tenant-a", MEDIA / "musk.png", "avatar")
    )
    holder_engine, waiter_engine = GatedEngine(), SmallEngine()
    rendering = HeldAtTheGate(make_worker(holder_engine), holder_engine)
    waiter = make_worker(waiter_engine)

    # When a second worker takes the other job while the first renders
    outcome = waiter.run_once()

    # Then it does not render: the job is back in the queue, waiting for the render
    assert outcome is Outcome.WAITING
    assert waiter_engine.prepare_calls == 0
    assert waiter.metrics.count(Metric.RENDER_CLAIM_WAITS) == 1
    statuses = {world.record(job_id).status for job_id in (first.job_id, second.job_id)}
    assert statuses == {JobStatus.PREPARING, JobStatus.QUEUED}

    # And when the first render ends, the waiting job comes back and copies it
    assert rendering.finish() is Outcome.SUCCEEDED
    assert waiter.run_once() is Outcome.SUCCEEDED

    # Then the content was rendered once; both jobs succeeded with the same video
    assert holder_engine.speak_calls == 1
    assert (waiter_engine.prepare_calls, waiter_engine.speak_calls) == (0, 0)
    assert waiter.metrics.count(Metric.OUTPUT_CACHE_HITS) == 1
    for job_id in (first.job_id, second.job_id):
        assert world.record(job_id).status is JobStatus.SUCCEEDED
    assert output_bytes(world, first.job_id) == output_bytes(world, second.job_id)


def submit_claimed_elsewhere(
    world: WorkerWorld, deadline_at: str | None = None
) -> tuple[JobMessage, str]:
    """A job whose content another worker (of another job) has claimed; the job and the hash."""
    avatar_file, audio_file = MEDIA / "musk.png", MEDIA / "yongen.wav"
    message = world.submit(
        avatar=world.upload("tenant-a", avatar_file, "avatar"),
        audio=world.upload("tenant-a", audio_file, "audio"),
        deadline_at=deadline_at,
    )
    content_hash = render_cache_hash(
        engine=SmallEngine(),
        avatar_sha256=hashlib.sha256(avatar_file.read_bytes()).hexdigest(),
        audio_sha256=hashlib.sha256(audio_file.read_bytes()).hexdigest(),
        message=message,
    )
    claims = RenderClaims(world.table)
    claims.take(content_hash, owner="other-worker", job_id="other-job", lease_seconds=300)
    return message, content_hash


def test_a_dead_holders_claim_expires_and_another_worker_renders(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose content a worker claimed and then died with (no more heartbeats)
    message, content_hash = submit_claimed_elsewhere(world)
    engine = SmallEngine()
    worker = make_worker(engine)

    # When a worker takes the job while the claim is still within its lease
    first = worker.run_once()

    # Then it waits instead of rendering
    assert first is Outcome.WAITING
    assert engine.prepare_calls == 0
    assert world.record(message.job_id).status is JobStatus.QUEUED

    # And when the claim's lease runs out (the dead worker never extends it)
    world.table.update_item(
        Key={JobsTable.PARTITION_KEY: render_claim_pk(content_hash)},
        UpdateExpression="SET claim_expires_at = :past",
        ExpressionAttributeValues={":past": iso(utc_now().replace(year=2000))},
    )
    second = worker.run_once()

    # Then the waiting job's worker takes the claim over and renders it
    assert second is Outcome.SUCCEEDED
    assert engine.speak_calls == 1
    assert world.record(message.job_id).status is JobStatus.SUCCEEDED


def test_a_holders_media_error_fails_the_waiting_job_at_once(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given two jobs of one content whose avatar has no face, one rendering and one waiting
    ok, flat = cv2.imencode(".png", np.full((96, 96, 3), 128, dtype=np.uint8))
    assert ok
    first, second = two_jobs_of_one_content(
        world, world.upload("tenant-a", flat.tobytes(), "avatar")
    )
    holder_engine, waiter_engine = GatedEngine(), SmallEngine()
    rendering = HeldAtTheGate(make_worker(holder_engine), holder_engine)
    waiter = make_worker(waiter_engine)
    assert waiter.run_once() is Outcome.WAITING

    # When the holder finds no face
    assert rendering.finish() is Outcome.FAILED

    # Then the waiting job fails with the same code at its next delivery, without preparing
    # and without waiting for the claim's lease (still tens of seconds away) to run out
    assert waiter.run_once() is Outcome.FAILED
    assert waiter_engine.prepare_calls == 0
    for job_id in (first.job_id, second.job_id):
        assert ended(world, job_id) == (JobStatus.FAILED, ErrorCode.NO_FACE)
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0


def test_a_waiting_job_still_expires_at_its_deadline(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job with a deadline in ten minutes, waiting for another job's render of its content
    deadline = iso(utc_now() + timedelta(minutes=10))
    message, _ = submit_claimed_elsewhere(world, deadline_at=deadline)
    engine = SmallEngine()
    worker = make_worker(engine)
    assert worker.run_once() is Outcome.WAITING

    # When its deadline passes while it waits
    monkeypatch.setattr(deadlines, "now", lambda: utc_now() + timedelta(hours=1))
    outcome = worker.run_once()

    # Then its next delivery ends it EXPIRED, announced, and nothing rendered or left queued
    assert outcome is Outcome.EXPIRED
    record = world.record(message.job_id)
    assert record.status is JobStatus.EXPIRED
    assert engine.prepare_calls == 0
    assert [json.loads(e["Message"])["job_id"] for e in world.events()] == [message.job_id]
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0


def test_a_holder_whose_claim_was_taken_over_cannot_end_or_extend_the_new_holders_claim(
    world: WorkerWorld,
) -> None:
    # Given a claim whose holder stalled past its lease, then taken over by another job's worker
    claims = RenderClaims(world.table)
    stalled = claims.take("c0ffee", owner="stalled", job_id="job-1", lease_seconds=-1)
    assert isinstance(stalled, Claim)
    taker = claims.take("c0ffee", owner="taker", job_id="job-2", lease_seconds=300)
    assert isinstance(taker, Claim)

    # When the stalled holder wakes up and extends, fails and releases
    extended = claims.extend(stalled, 300)
    claims.fail(stalled, JobError(code=ErrorCode.NO_FACE, message="no face"))
    claims.release(stalled)

    # Then none of it touched the new claim: a third job still finds it held by job-2
    assert extended is False
    third = claims.take("c0ffee", owner="third", job_id="job-3", lease_seconds=300)
    assert isinstance(third, ClaimHeld)
    assert (third.job_id, third.done_by) == ("job-2", None)
    # And when job-2's worker estimates its finish, waiting jobs see when
    assert claims.extend(taker, 300, seconds_left=5) is True
    third = claims.take("c0ffee", owner="third", job_id="job-3", lease_seconds=300)
    assert isinstance(third, ClaimHeld)
    assert third.done_by is not None
    assert iso(utc_now()) < third.done_by <= iso(utc_now() + timedelta(seconds=5))
    # And once job-2's worker releases it, the next job takes it at once
    claims.release(taker)
    assert isinstance(
        claims.take("c0ffee", owner="third", job_id="job-3", lease_seconds=300), Claim
    )


@pytest.mark.parametrize("shared", [False, True])
def test_a_media_error_verdict_answers_for_its_own_tenant_unless_renders_are_shared(
    shared: bool, world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given tenant A's and tenant B's jobs of the same content, each uploaded by its tenant
    avatar_file, audio_file = MEDIA / "musk.png", MEDIA / "yongen.wav"
    jobs = {
        tenant: world.submit(
            tenant=tenant,
            avatar=world.upload(tenant, avatar_file, "avatar"),
            audio=world.upload(tenant, audio_file, "audio"),
        )
        for tenant in ("tenant-a", "tenant-b")
    }
    # And a verdict, moments old, that tenant A's render of this content found no face
    content_hash = render_cache_hash(
        engine=SmallEngine(),
        avatar_sha256=hashlib.sha256(avatar_file.read_bytes()).hexdigest(),
        audio_sha256=hashlib.sha256(audio_file.read_bytes()).hexdigest(),
        message=jobs["tenant-a"],
        shared_across_tenants=shared,
    )
    claims = RenderClaims(world.table)
    claim = claims.take(content_hash, owner="other-worker", job_id="other-job", lease_seconds=300)
    assert isinstance(claim, Claim)
    claims.fail(claim, JobError(code=ErrorCode.NO_FACE, message="no face"))

    # When a worker (sharing renders across tenants or not) processes both jobs
    engine = SmallEngine()
    worker = make_worker(engine, MUSETALK_SHARE_RENDER_CACHE_ACROSS_TENANTS=str(shared).lower())
    assert worker.run_once() is not None
    assert worker.run_once() is not None

    # Then tenant A's job takes the verdict; tenant B's job is judged on its own (the face is
    # there: it renders) unless renders are shared, when the verdict answers for it too
    assert ended(world, jobs["tenant-a"].job_id) == (JobStatus.FAILED, ErrorCode.NO_FACE)
    expected_b = (JobStatus.FAILED, ErrorCode.NO_FACE) if shared else (JobStatus.SUCCEEDED, None)
    assert ended(world, jobs["tenant-b"].job_id) == expected_b
    assert engine.speak_calls == (0 if shared else 1)


def test_waiting_for_another_jobs_render_is_not_an_attempt_and_never_dead_letters(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose content another job's worker renders
    message, content_hash = submit_claimed_elsewhere(world)
    engine = SmallEngine()
    worker = make_worker(engine)

    # When it waits more times than its lane's deliveries before the dead-letter queue
    waits = MAX_RECEIVE_COUNT + 1
    assert [worker.run_once() for _ in range(waits)] == [Outcome.WAITING] * waits

    # Then no wait counted as a delivery attempt; each counted as a wait and logged one event
    record = world.record(message.job_id)
    assert (record.status, record.attempt, record.claim_waits) == (JobStatus.QUEUED, 0, waits)
    assert [(e.status, e.detail) for e in world_events(world, message.job_id)] == [
        (JobStatus.QUEUED, "waiting for the same content rendered by another job")
    ] * waits
    # And the job is still in its queue, nothing dead-lettered
    assert world.messages_in(world.dlq_urls[Lane.INTERACTIVE]) == 0
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 1

    # When the holder's claim ends and the job comes back
    RenderClaims(world.table).release(Claim(content_hash, "other-worker", "other-job"))
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then the render is its first attempt
    record = world.record(message.job_id)
    assert (record.attempt, record.claim_waits) == (1, waits)
    statuses = [e.status for e in world_events(world, message.job_id) if e.kind == "status"]
    assert statuses[waits:] == [
        JobStatus.PREPARING,
        JobStatus.RENDERING,
        JobStatus.SUCCEEDED,
    ]


def world_events(world: WorkerWorld, job_id: str) -> list[JobEvent]:
    item = world.table.get_item(Key={JobsTable.PARTITION_KEY: job_pk(job_id)}, ConsistentRead=True)[
        "Item"
    ]
    return events_of(item)
