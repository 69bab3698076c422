"""The chaos run's traffic, all through the public API: uploads, avatars and jobs per scenario
(kill, flood, poison, webhook), the chaos monkey that signals workers at a job's stage, waiting
for every job to end, draining completion events, and probing tenant isolation."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.chaos_config import ChaosConfig
from bench.chaos_media import Media
from bench.chaos_report import FINAL, ChaosReport
from bench.chaos_stack import Stack
from runtime.cli.errors import CliError
from runtime.common.jobs import AvatarOptions, JobStatus, RenderOptions
from runtime.common.names import JobsTable, Lane
from runtime.common.records import JobRecord


@dataclass
class Submission:
    scenario: str
    name: str
    job_id: str | None = None
    rejected_code: str | None = None


class Submitter:
    """Uploads, avatars and jobs through the public API; collects what logs must never show."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.secrets_seen: set[str] = set()  # presigned policies, signatures, URLs
        self._lock = threading.Lock()
        self._uploads: dict[tuple[str, Path], str] = {}
        self._avatars: dict[tuple[str, Path], str] = {}
        self.avatar_ids: dict[str, list[str]] = defaultdict(list)
        self.upload_ids: dict[str, list[str]] = defaultdict(list)

    def upload(self, tenant: str, path: Path) -> str:
        with self._lock:
            cached = self._uploads.get((tenant, path))
        if cached:
            return cached
        with self.stack.api(tenant) as api:
            post = api.create_upload(path)
            api.upload_file(post, path)
        with self._lock:
            self.secrets_seen.update(
                value
                for name, value in post.fields.items()
                if name.lower() in {"policy", "x-amz-signature", "signature"}
            )
            self._uploads[(tenant, path)] = post.upload_id
            self.upload_ids[tenant].append(post.upload_id)
        return post.upload_id

    def avatar(self, tenant: str, path: Path) -> str:
        with self._lock:
            cached = self._avatars.get((tenant, path))
        if cached:
            return cached
        with self.stack.api(tenant) as api:
            answer = api.create_avatar(self.upload(tenant, path), AvatarOptions())
        avatar_id = str(answer["avatar_id"])
        with self._lock:
            self._avatars[(tenant, path)] = avatar_id
            self.avatar_ids[tenant].append(avatar_id)
        return avatar_id

    def job(
        self,
        submission: Submission,
        *,
        tenant: str,
        avatar: Path,
        audio: Path,
        key: str,
        gateway: int = 0,
        webhook_url: str | None = None,
    ) -> Submission:
        try:
            avatar_id = self.avatar(tenant, avatar)
            audio_id = self.upload(tenant, audio)
            with self.stack.api(tenant, gateway) as api:
                answer = api.create_job(
                    avatar_id=avatar_id,
                    audio_upload_id=audio_id,
                    lane=Lane.INTERACTIVE,
                    options=RenderOptions(),
                    webhook_url=webhook_url,
                    idempotency_key=key,
                )
            submission.job_id = str(answer["job_id"])
        except CliError as error:
            submission.rejected_code = error.code or f"HTTP {error.status_code}"
        return submission


# Chaos monkey: signals at stages.


def _stage(record: JobRecord) -> str | None:
    if record.status is JobStatus.PREPARING:
        return "prepare"
    if record.status is JobStatus.RENDERING:
        return "upload" if record.progress >= 1.0 else "speak"
    return None


def scan_jobs(stack: Stack) -> list[JobRecord]:
    table = stack.session.resource("dynamodb", endpoint_url=stack.resources.endpoint_url).Table(
        stack.resources.names.jobs_table
    )
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [
        JobRecord.from_item(item)
        for item in items
        if str(item.get(JobsTable.PARTITION_KEY, "")).startswith("JOB#")
    ]


def run_kills(
    stack: Stack, kills: tuple[tuple[str, str], ...], job_ids: set[str], report: ChaosReport
) -> None:
    """Signal the worker holding one of `job_ids` at each (signal, stage); replace it."""
    for signame, stage in kills:
        landed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not landed:
            by_pid = {p.pid: (p, extra) for p, extra in stack.workers if p.running()}
            for record in scan_jobs(stack):
                if record.job_id not in job_ids or _stage(record) != stage:
                    continue
                pid = int((record.lease_owner or "x-0-x").rsplit("-", 2)[1])
                if pid not in by_pid:
                    continue
                process, extra = by_pid[pid]
                os.kill(process.pid, getattr(signal, signame))
                report.kills.append(f"{signame}@{stage}")
                stack.spawn_worker(extra)  # ECS starts a replacement task
                landed = True
                break
            time.sleep(0.05)
        if not landed:
            report.kills_missed.append(f"{signame}@{stage}")


# Waiting for the jobs and their events; isolation.


def wait_final(stack: Stack, job_ids: set[str], timeout: float) -> dict[str, JobRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = {r.job_id: r for r in scan_jobs(stack) if r.job_id in job_ids}
        if all(r.status in FINAL for r in records.values()) and len(records) == len(job_ids):
            return records
        if time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def drain_events(stack: Stack, expected: set[str], timeout: float) -> dict[str, list[str]]:
    """Completion events per job id; waits until every expected job has one (or timeout)."""
    sqs = stack.client("sqs")
    events: dict[str, list[str]] = defaultdict(list)
    deadline = time.monotonic() + timeout
    quiet_polls = 0
    while quiet_polls < 3:
        answer = sqs.receive_message(
            QueueUrl=stack.completion_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        for message in messages:
            event = json.loads(json.loads(message["Body"])["Message"])
            events[str(event["job_id"])].append(str(event["status"]))
            sqs.delete_message(
                QueueUrl=stack.completion_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        complete = expected <= set(events)
        quiet_polls = quiet_polls + 1 if (not messages and complete) else 0
        if time.monotonic() > deadline:
            break
        if not messages:
            time.sleep(0.2)
    return events


def check_isolation(
    stack: Stack, submitter: Submitter, job_ids: set[str], media: Media, report: ChaosReport
) -> None:
    """Tenant B's key must get 404 for every job, avatar and upload of tenant A, whether read,
    cancelled or used in its own requests (well-formed bodies, so only ownership can refuse)."""
    own_audio = submitter.upload("tenant-b", media.contents[0])
    own_avatar = submitter.avatar("tenant-b", media.avatar)
    theirs_avatars = sorted(set(submitter.avatar_ids["tenant-a"]))
    theirs_uploads = sorted(set(submitter.upload_ids["tenant-a"]))
    probes: list[tuple[str, str, dict[str, Any] | None]] = []
    for job_id in sorted(job_ids):
        probes += [("GET", f"/v1/jobs/{job_id}", None), ("DELETE", f"/v1/jobs/{job_id}", None)]
    for avatar_id in theirs_avatars:
        job = {"avatar_id": avatar_id, "audio_upload_id": own_audio, "lane": "interactive"}
        probes += [("GET", f"/v1/avatars/{avatar_id}", None), ("POST", "/v1/jobs", job)]
    for upload_id in theirs_uploads:
        job = {"avatar_id": own_avatar, "audio_upload_id": upload_id, "lane": "interactive"}
        probes += [("POST", "/v1/avatars", {"upload_id": upload_id}), ("POST", "/v1/jobs", job)]
    headers = {"x-api-key": stack.api_keys["tenant-b"]}
    with httpx.Client(base_url=stack.gateway_urls[0], headers=headers, timeout=60) as http:
        for method, path, body in probes:
            extra = {"Idempotency-Key": uuid.uuid4().hex} if path == "/v1/jobs" else {}
            answer = http.request(method, path, json=body, headers=extra)
            report.isolation_checks += 1
            if answer.status_code != 404:
                report.isolation_breaches.append(f"{method} {path} -> {answer.status_code}")


# Scenarios.


def submit_kill_jobs(config: ChaosConfig, submitter: Submitter, media: Media) -> list[Submission]:
    """Jobs with distinct avatars and audio, so every job prepares and renders afresh."""
    return [
        submitter.job(
            Submission("kill", f"kill-{i}"),
            tenant="tenant-a",
            avatar=media.kill_avatars[i],
            audio=media.kill_audio[i],
            key=f"kill-{i}",
        )
        for i in range(config.kill_jobs)
    ]


def submit_flood(
    config: ChaosConfig, submitter: Submitter, media: Media
) -> tuple[list[Submission], list[str]]:
    """`config.flood` parallel submissions over `config.flood_keys` keys, every key always
    with the same body (same content); the submissions and the keys in submission order."""
    rng = random.Random(config.seed)
    key_content = {
        f"flood-{k}": media.contents[k % config.flood_contents] for k in range(config.flood_keys)
    }
    keys = list(key_content)
    plan = keys + [rng.choice(keys) for _ in range(config.flood - len(keys))]
    rng.shuffle(plan)
    for content in media.contents:  # uploads first, so repeated content is one upload
        submitter.upload("tenant-a", content)
    submitter.avatar("tenant-a", media.avatar)
    with ThreadPoolExecutor(config.flood_threads) as pool:
        flood = list(
            pool.map(
                lambda item: submitter.job(
                    Submission("flood", item[1]),
                    tenant="tenant-a",
                    avatar=media.avatar,
                    audio=key_content[item[1]],
                    key=item[1],
                    gateway=item[0],
                ),
                enumerate(plan),
            )
        )
    return flood, plan


def submit_poison(submitter: Submitter, media: Media) -> list[Submission]:
    """One job per poison input: each must end FAILED with its own code (or 4xx at the API)."""
    return [
        submitter.job(
            Submission("poison", name),
            tenant="tenant-a",
            avatar=avatar,
            audio=audio,
            key=f"poison-{name.replace(' ', '-')}",
        )
        for name, (avatar, audio) in media.poisons.items()
    ]


def submit_webhook(submitter: Submitter, media: Media) -> tuple[Submission, str]:
    """One job with a webhook; the URL's token, which must never be logged."""
    webhook_token = secrets.token_hex(8)
    submission = submitter.job(
        Submission("webhook", "webhook"),
        tenant="tenant-a",
        avatar=media.avatar,
        audio=media.contents[0],
        key="webhook-1",
        webhook_url=f"https://hooks.example.com/{webhook_token}",
    )
    return submission, webhook_token


def output_url_secrets(stack: Stack, submitter: Submitter, final_ids: set[str]) -> None:
    """Download links of finished jobs are presigned: they must not be logged either."""
    with stack.api("tenant-a") as api:
        for job_id in sorted(final_ids)[:20]:
            answer = api.get_job(job_id)
            url = answer.get("output_url") or (answer.get("output") or {}).get("url")
            if isinstance(url, str) and "?" in url:
                submitter.secrets_seen.add(url.split("?", 1)[1])
