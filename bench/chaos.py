"""Chaos and load figures: kill workers, flood duplicates, feed poison, inject faults; count.

    python -m bench.chaos [--workers 3] [--flood 300] [--keys 120] [--contents 6] [--fault-rate 0.1]

Stands up the local stack the way `python -m runtime.local` does (moto server, the stage's
resources from `runtime.local.resources.provision`, the API Lambda behind the local gateway, the
sweeper and dead-letter Lambdas on their triggers) but with several API gateway processes (as
Lambda runs concurrent instances), two tenants, and 2-3 REAL worker processes
(`python -m bench.chaos_worker` = `runtime.worker` with AWS faults injected; the small test engine
from `tests/support/small_engine.py`, so a render takes about a second). Then, all through the
public API:

- kill:    jobs with distinct avatars and audio; workers are SIGKILLed mid-render and SIGTERMed
           during prepare, speak and upload; a replacement starts each time (as ECS would);
- flood:   hundreds of parallel submissions over a few distinct Idempotency-Keys and contents;
- poison:  corrupt video, silent audio, a faceless image, huge dimensions, a PNG behind an audio
           upload, zero-length audio: each must end FAILED with its own code (or 4xx at the API);
- faults:  every worker answers a share of its S3/SQS/DynamoDB/SNS calls with injected
           throttling and 5xx; one worker runs out of GPU memory above batch size 2 (OOM storm).

It waits until every accepted job is final, drains the completion events, checks tenant isolation
and scans every log line of the API and the workers for secrets and personal data, then prints the
table. Exit status 1 if an invariant (lost, rendered twice, events, leaks, isolation) fails.
`tests/e2e/test_chaos.py` runs a smaller configuration of the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import httpx

from bench.poison_media import flat_png, huge_png, silent_wav, tone_wav
from infra.config import stage_config
from runtime.cli.client import ApiClient
from runtime.cli.errors import CliError
from runtime.cli.upload_weights import upload_weights
from runtime.common.jobs import MODEL_VERSION, AvatarOptions, JobStatus, RenderOptions
from runtime.common.names import BucketRole, EnvVar, JobsTable, Lane, ResourceNames
from runtime.common.records import JobRecord
from runtime.local.emulator import local_session, moto_server
from runtime.local.processes import ManagedProcess, free_port, port_open, wait_until
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision
from runtime.local.stack import (
    ENV_LOCAL_API_KEYS,
    ENV_LOCAL_DEAD_LETTER_QUEUES,
    _child_env,
    _subscribe_completion_queue,
)
from runtime.local.stack import (
    worker_env as stage_worker_env,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDIA = REPO_ROOT / "examples" / "media"
FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
TENANTS = {"key-a": "tenant-a", "key-b": "tenant-b"}
# What each poison must end as: the job's error code, or the API's 4xx code.
POISON_EXPECTED = {
    "corrupt video": "INVALID_MEDIA",
    "audio without speech": "NO_SPEECH",
    "video without a face": "NO_FACE",
    "huge dimensions": "MEDIA_TOO_LARGE",
    "PNG behind an audio upload": "INVALID_MEDIA",
    "zero-length audio": "INVALID_MEDIA",
}
# (signal, stage): the stage is read from the job record (PREPARING; RENDERING before the last
# frame; RENDERING with every frame done = encoding and uploading).
KILLS = (
    ("SIGKILL", "speak"),
    ("SIGTERM", "prepare"),
    ("SIGTERM", "speak"),
    ("SIGTERM", "upload"),
    ("SIGKILL", "upload"),
)


@dataclass(frozen=True)
class ChaosConfig:
    workers: int = 3
    gateways: int = 2
    kill_jobs: int = 8
    kills: tuple[tuple[str, str], ...] = KILLS
    flood: int = 300
    flood_keys: int = 120
    flood_contents: int = 6
    flood_threads: int = 16
    fault_rate: float = 0.1
    oom_workers: int = 1
    seconds_per_frame: float = 0.04
    prepare_seconds: float = 1.0
    slow_put_seconds: float = 1.0
    audio_seconds: float = 1.0
    final_timeout_seconds: float = 240.0
    seed: int = 7


@dataclass
class Submission:
    scenario: str
    name: str
    job_id: str | None = None
    rejected_code: str | None = None


@dataclass
class ChaosReport:
    submitted: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    lost: list[str] = field(default_factory=list)
    rendered_twice: list[str] = field(default_factory=list)
    # Output cache keys (one per distinct tenant and render content, renders being per tenant
    # by default) rendered more than once, by any jobs.
    rendered_twice_content: list[str] = field(default_factory=list)
    renders: int = 0
    contents_rendered: int = 0
    claim_waits: int = 0
    events_missing: list[str] = field(default_factory=list)
    events_duplicated: list[str] = field(default_factory=list)
    max_queue_wait_ms: float = 0.0
    job_seconds: list[float] = field(default_factory=list)
    flood_submissions: int = 0
    flood_keys: int = 0
    flood_jobs: int = 0
    flood_contents: int = 0
    flood_renders: int = 0
    poison: dict[str, str] = field(default_factory=dict)  # name -> code it ended with
    kills: list[str] = field(default_factory=list)
    kills_missed: list[str] = field(default_factory=list)
    faults_injected: int = 0
    requeues: int = 0
    oom_halvings: int = 0
    leaks: list[str] = field(default_factory=list)
    isolation_breaches: list[str] = field(default_factory=list)
    isolation_checks: int = 0
    log_lines: int = 0

    def invariant_failures(self) -> list[str]:
        problems = []
        for name, values in (
            ("lost", self.lost),
            ("rendered twice", self.rendered_twice),
            ("rendered twice (content)", self.rendered_twice_content),
            ("completion event missing", self.events_missing),
            ("completion event duplicated", self.events_duplicated),
            ("secret or personal data in logs", self.leaks),
            ("tenant isolation", self.isolation_breaches),
        ):
            if values:
                problems.append(f"{name}: {values[:5]}")
        if self.flood_jobs != self.flood_keys:
            problems.append(f"flood created {self.flood_jobs} jobs for {self.flood_keys} keys")
        for name, code in self.poison.items():
            if code != POISON_EXPECTED[name]:
                problems.append(f"poison {name!r} ended {code}, expected {POISON_EXPECTED[name]}")
        return problems

    def table(self) -> str:
        def pct(q: float) -> str:
            if not self.job_seconds:
                return "-"
            ordered = sorted(self.job_seconds)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f} s"

        rows: list[tuple[str, str]] = [
            ("submitted (POST /v1/jobs)", str(self.submitted)),
            ("accepted (202, distinct jobs)", str(self.accepted)),
            ("rejected at the API", _counts(self.rejected)),
            ("succeeded", str(self.succeeded)),
            ("failed, by code", _counts(self.failed)),
            ("cancelled", str(self.cancelled)),
            ("LOST (accepted, not final)", str(len(self.lost))),
            ("RENDERED TWICE (job)", str(len(self.rendered_twice))),
            ("RENDERED TWICE (content)", str(len(self.rendered_twice_content))),
            (
                "renders / distinct (tenant, content) / claim waits",
                f"{self.renders} / {self.contents_rendered} / {self.claim_waits}",
            ),
            (
                "completion events missing / duplicated",
                f"{len(self.events_missing)} / {len(self.events_duplicated)}",
            ),
            ("max queue wait", f"{self.max_queue_wait_ms / 1000:.2f} s"),
            ("job time p50 / p95 (created -> final)", f"{pct(0.5)} / {pct(0.95)}"),
            (
                "flood: submissions / keys / jobs",
                f"{self.flood_submissions} / {self.flood_keys} / {self.flood_jobs}",
            ),
            (
                "flood (one tenant): distinct contents / renders",
                f"{self.flood_contents} / {self.flood_renders}",
            ),
            ("poison -> code", ", ".join(f"{k}: {v}" for k, v in self.poison.items()) or "-"),
            ("workers killed (signal@stage)", ", ".join(self.kills) or "-"),
            ("kills not landed (stage never seen)", ", ".join(self.kills_missed) or "-"),
            ("faults injected (AWS calls)", str(self.faults_injected)),
            ("jobs requeued / OOM halvings", f"{self.requeues} / {self.oom_halvings}"),
            (
                "tenant isolation: checks / breaches",
                f"{self.isolation_checks} / {len(self.isolation_breaches)}",
            ),
            ("log lines scanned / leaks", f"{self.log_lines} / {len(self.leaks)}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counter.items())) or "0"


@dataclass
class Stack:
    resources: LocalResources
    session: Any
    gateway_urls: list[str]
    api_keys: dict[str, str]  # tenant -> key value
    completion_queue_url: str
    logs: Path
    spawn_worker: Callable[[dict[str, str]], ManagedProcess]
    workers: list[tuple[ManagedProcess, dict[str, str]]]
    webhook_secret: str

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.resources.endpoint_url)

    def api(self, tenant: str, index: int = 0) -> ApiClient:
        url = self.gateway_urls[index % len(self.gateway_urls)]
        return ApiClient(url, self.api_keys[tenant], timeout_seconds=60)


@contextmanager
def chaos_stack(config: ChaosConfig, work: Path) -> Iterator[Stack]:
    """The local stack with N gateways, two tenants and `config.workers` chaos workers."""
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    session = local_session(LOCAL_REGION)
    with ExitStack() as cleanup:
        endpoint = cleanup.enter_context(moto_server())
        stage = stage_config("dev")
        names = ResourceNames(stage=stage.stage, account=LOCAL_ACCOUNT, region=LOCAL_REGION)
        resources = provision(session, names=names, config=stage, endpoint_url=endpoint)
        completion_queue = _subscribe_completion_queue(session, resources)
        env = _child_env(resources)
        key_values = {tenant: secrets.token_urlsafe(24) for tenant in TENANTS.values()}
        key_ids = {tenant: key_id for key_id, tenant in TENANTS.items()}
        gateway_env = {
            **env,
            EnvVar.API_KEY_TENANTS: json.dumps(TENANTS),
            ENV_LOCAL_API_KEYS: json.dumps({key_values[t]: key_ids[t] for t in key_values}),
            ENV_LOCAL_DEAD_LETTER_QUEUES: json.dumps(
                list(resources.dead_letter_queue_urls.values())
            ),
            "POWERTOOLS_SERVICE_NAME": "musetalk-api",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "MuseTalk",
        }
        gateway_urls = []
        for index in range(config.gateways):
            port = free_port()
            gateway = ManagedProcess(
                f"gateway-{index}",
                [sys.executable, "-m", "runtime.local", "gateway", "--port", str(port)],
                env={str(k): v for k, v in gateway_env.items()},
                log_path=logs / f"api-{index}.log",
                cwd=REPO_ROOT,
            )
            cleanup.callback(gateway.stop, 5)
            wait_until(
                lambda port=port: port_open(port),  # type: ignore[misc]
                timeout_seconds=60,
                what=f"gateway {index}",
                watch=[gateway],
            )
            gateway_urls.append(f"http://127.0.0.1:{port}")

        models = work / "models"
        models.mkdir(exist_ok=True)
        (models / "weights.bin").write_bytes(b"small engine")
        upload_weights(
            session.client("s3", endpoint_url=endpoint),
            directory=models,
            bucket=resources.buckets[BucketRole.WEIGHTS],
            model_version=MODEL_VERSION,
        )
        worker_base = {
            **env,
            EnvVar.ENGINE_FACTORY: "tests.support.small_engine:load",
            "SMALL_ENGINE_SECONDS_PER_FRAME": str(config.seconds_per_frame),
            "SMALL_ENGINE_PREPARE_SECONDS": str(config.prepare_seconds),
            "CHAOS_FAULT_RATE": str(config.fault_rate),
            "CHAOS_SLOW_PUT_SECONDS": str(config.slow_put_seconds),
        }
        workers: list[tuple[ManagedProcess, dict[str, str]]] = []
        counter = [0]

        def spawn(extra: dict[str, str]) -> ManagedProcess:
            counter[0] += 1
            worker_env = {
                **worker_base,
                **stage_worker_env(resources, models),
                # Short leases so a SIGKILLed worker's job is taken over within seconds.
                EnvVar.VISIBILITY_TIMEOUT_SECONDS: "4",
                EnvVar.HEARTBEAT_SECONDS: "1",
                EnvVar.STOP_TIMEOUT_SECONDS: "3",
                EnvVar.RETRY_BASE_SECONDS: "1",
                **extra,
            }
            process = ManagedProcess(
                f"worker-{counter[0]}",
                [sys.executable, "-m", "bench.chaos_worker"],
                env={str(k): v for k, v in worker_env.items()},
                log_path=logs / f"worker-{counter[0]}.log",
                cwd=REPO_ROOT,
            )
            workers.append((process, extra))
            return process

        cleanup.callback(lambda: [process.stop(10) for process, _ in workers])
        for index in range(config.workers):
            oom = {"SMALL_ENGINE_OOM_ABOVE": "2"} if index < config.oom_workers else {}
            spawn(oom)
        secret = session.client("secretsmanager", endpoint_url=endpoint).get_secret_value(
            SecretId=resources.webhook_secret_arn
        )["SecretString"]
        yield Stack(
            resources=resources,
            session=session,
            gateway_urls=gateway_urls,
            api_keys=key_values,
            completion_queue_url=completion_queue,
            logs=logs,
            spawn_worker=spawn,
            workers=workers,
            webhook_secret=str(secret),
        )


# Media.


@dataclass(frozen=True)
class Media:
    avatar: Path
    kill_avatars: list[Path]
    contents: list[Path]
    kill_audio: list[Path]
    poisons: dict[str, tuple[Path, Path]]  # name -> (avatar, audio)
    marker: str  # embedded in poison files: must never show up in a log


def make_media(config: ChaosConfig, folder: Path) -> Media:
    folder.mkdir(parents=True, exist_ok=True)
    marker = f"CHAOS-CONTENT-{uuid.uuid4().hex}"
    face = cv2.imread(str(MEDIA / "musk.png"))
    if face is None:
        raise FileNotFoundError(MEDIA / "musk.png")
    kill_avatars = []
    for index in range(config.kill_jobs):
        variant = face.copy()
        variant[0, 0] = (index, index, index)  # distinct bytes: each is prepared afresh
        path = folder / f"face-{index}.png"
        cv2.imwrite(str(path), variant)
        kill_avatars.append(path)
    contents = [
        tone_wav(folder / f"speech-{i}.wav", config.audio_seconds, 180.0 + 37 * i)
        for i in range(config.flood_contents)
    ]
    kill_audio = [
        tone_wav(folder / f"kill-speech-{i}.wav", config.audio_seconds, 900.0 + 41 * i)
        for i in range(config.kill_jobs)
    ]
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes((marker.encode() + os.urandom(61)) * 64)
    png_as_audio = folder / "not-audio.wav"
    png_as_audio.write_bytes((MEDIA / "musk.png").read_bytes() + marker.encode())
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    speech = contents[0]
    poisons = {
        "corrupt video": (corrupt, speech),
        "audio without speech": (MEDIA / "musk.png", silent_wav(folder / "silence.wav", 1.0)),
        "video without a face": (flat_png(folder / "flat.png"), speech),
        "huge dimensions": (huge_png(folder / "huge.png", 4500, 4500), speech),
        "PNG behind an audio upload": (MEDIA / "musk.png", png_as_audio),
        "zero-length audio": (MEDIA / "musk.png", empty),
    }
    return Media(
        avatar=MEDIA / "musk.png",
        kill_avatars=kill_avatars,
        contents=contents,
        kill_audio=kill_audio,
        poisons=poisons,
        marker=marker,
    )


# Submitting through the API.


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


# Waiting and counting.


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


_ALWAYS_FORBIDDEN = (
    "X-Amz-Signature",
    "X-Amz-Credential",
    "AWSAccessKeyId=",
    "Signature=",
    "hooks.example.com",
)


def scan_logs(logs: Path, forbidden: dict[str, str], report: ChaosReport) -> None:
    """Every line of every API and worker log; `forbidden` maps a label to a value."""
    needles = {**{f"pattern {p}": p for p in _ALWAYS_FORBIDDEN}, **forbidden}
    lowered = {label: value.lower() for label, value in needles.items() if value}
    for path in sorted(logs.glob("*.log")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            report.log_lines += 1
            text = line.lower()
            for label, value in lowered.items():
                if value in text:
                    report.leaks.append(f"{path.name}:{number}: {label}")
            if line.startswith("chaos-fault "):
                report.faults_injected += 1


def _log_records(logs: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(logs.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


def _metric_total(record: dict[str, Any], name: str) -> float:
    value = record.get(name)
    return float(value) if isinstance(value, int | float) and "_aws" in record else 0.0


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run(config: ChaosConfig, work: Path, say: Callable[[str], None] = print) -> ChaosReport:
    report = ChaosReport()
    rng = random.Random(config.seed)
    media = make_media(config, work / "media")
    with chaos_stack(config, work) as stack:
        submitter = Submitter(stack)
        say(f"stack up: {config.gateways} gateways, {config.workers} workers; submitting")
        submissions: list[Submission] = []

        # Kill: distinct avatars and audio, so every job prepares and renders afresh.
        kill = [
            submitter.job(
                Submission("kill", f"kill-{i}"),
                tenant="tenant-a",
                avatar=media.kill_avatars[i],
                audio=media.kill_audio[i],
                key=f"kill-{i}",
            )
            for i in range(config.kill_jobs)
        ]
        submissions += kill
        monkey = threading.Thread(
            target=run_kills,
            args=(stack, config.kills, {s.job_id for s in kill if s.job_id}, report),
        )
        monkey.start()

        # Flood: every key always carries the same body (same content), in parallel.
        key_content = {
            f"flood-{k}": media.contents[k % config.flood_contents]
            for k in range(config.flood_keys)
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
        submissions += flood

        # Poison, plus one job with a webhook whose URL must never be logged.
        for name, (avatar, audio) in media.poisons.items():
            submissions.append(
                submitter.job(
                    Submission("poison", name),
                    tenant="tenant-a",
                    avatar=avatar,
                    audio=audio,
                    key=f"poison-{name.replace(' ', '-')}",
                )
            )
        webhook_token = secrets.token_hex(8)
        submissions.append(
            submitter.job(
                Submission("webhook", "webhook"),
                tenant="tenant-a",
                avatar=media.avatar,
                audio=media.contents[0],
                key="webhook-1",
                webhook_url=f"https://hooks.example.com/{webhook_token}",
            )
        )
        monkey.join()
        job_ids = {s.job_id for s in submissions if s.job_id}
        say(f"{len(job_ids)} jobs accepted; waiting until every one is final")
        records = wait_final(stack, job_ids, config.final_timeout_seconds)
        final_ids = {job_id for job_id, r in records.items() if r.status in FINAL}
        events = drain_events(stack, final_ids, timeout=30)
        check_isolation(stack, submitter, job_ids, media, report)
        # Download links of finished jobs are presigned: they must not be logged either.
        with stack.api("tenant-a") as api:
            for job_id in sorted(final_ids)[:20]:
                answer = api.get_job(job_id)
                url = answer.get("output_url") or (answer.get("output") or {}).get("url")
                if isinstance(url, str) and "?" in url:
                    submitter.secrets_seen.add(url.split("?", 1)[1])

    # Counting (everything stopped: the logs are complete).
    report.submitted = len(submissions)
    report.accepted = len(job_ids)
    # Poison the API refuses up front is counted with the poison (its code), not here.
    report.rejected = Counter(
        s.rejected_code or "?" for s in submissions if not s.job_id and s.scenario != "poison"
    )
    for job_id in job_ids:
        record = records.get(job_id)
        if record is None or record.status not in FINAL:
            report.lost.append(job_id)
            continue
        if record.status is JobStatus.SUCCEEDED:
            report.succeeded += 1
            report.job_seconds.append(_seconds(record.created_at, record.updated_at))
        elif record.status is JobStatus.FAILED:
            report.failed[record.error.code.value if record.error else "?"] += 1
        else:
            report.cancelled += 1
        report.max_queue_wait_ms = max(
            report.max_queue_wait_ms, record.timings.queue_wait_ms or 0.0
        )
        announced = events.get(job_id, [])
        if not announced:
            report.events_missing.append(job_id)
        elif len(announced) > 1:
            report.events_duplicated.append(job_id)

    renders: Counter[str] = Counter()
    for line in _log_records(stack.logs):
        if line.get("message") == "rendered" and line.get("job_id"):
            renders[str(line["job_id"])] += 1
        report.requeues += int(_metric_total(line, "JobsRequeued"))
        report.oom_halvings += int(_metric_total(line, "OomHalvings"))
        report.claim_waits += int(_metric_total(line, "RenderClaimWaits"))
    report.rendered_twice = sorted(job_id for job_id, n in renders.items() if n > 1)
    # Jobs of equal content (of one tenant, unless the workers share renders across tenants)
    # share the output cache key: renders per key is renders per (tenant, content).
    by_content: Counter[str] = Counter()
    for job_id, count in renders.items():
        record = records.get(job_id)
        by_content[record.output_cache_key if record and record.output_cache_key else job_id] += (
            count
        )
    report.renders = sum(by_content.values())
    report.contents_rendered = len(by_content)
    report.rendered_twice_content = sorted(key for key, n in by_content.items() if n > 1)

    flood_ids = {s.job_id for s in flood if s.job_id}
    report.flood_submissions = len(flood)
    report.flood_keys = len(set(plan))
    report.flood_jobs = len(flood_ids)
    report.flood_contents = config.flood_contents
    report.flood_renders = sum(renders[job_id] for job_id in flood_ids)
    for s in submissions:
        if s.scenario != "poison":
            continue
        record = records.get(s.job_id or "")
        if s.rejected_code:
            report.poison[s.name] = s.rejected_code
        elif record is not None and record.error is not None:
            report.poison[s.name] = record.error.code.value
        else:
            report.poison[s.name] = record.status.value if record else "LOST"

    forbidden = {
        "api key of tenant-a": stack.api_keys["tenant-a"],
        "api key of tenant-b": stack.api_keys["tenant-b"],
        "webhook secret": stack.webhook_secret,
        "webhook secret body": stack.webhook_secret.removeprefix("whsec_"),
        "webhook URL": webhook_token,
        "file content": media.marker,
        **{f"presigned value {i}": v for i, v in enumerate(sorted(submitter.secrets_seen))},
    }
    scan_logs(stack.logs, forbidden, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--flood", type=int, default=300, help="flood submissions")
    parser.add_argument("--keys", type=int, default=120, help="distinct idempotency keys")
    parser.add_argument("--contents", type=int, default=6, help="distinct audio contents")
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep logs here")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        workers=args.workers,
        gateways=args.gateways,
        flood=args.flood,
        flood_keys=args.keys,
        flood_contents=args.contents,
        fault_rate=args.fault_rate,
    )
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="musetalk-chaos-"))
    began = time.monotonic()
    report = run(config, work, say=lambda text: print(f"==> {text}", file=sys.stderr, flush=True))
    print(report.table())
    print(f"(wall time {time.monotonic() - began:.0f} s; logs in {work / 'logs'})")
    problems = report.invariant_failures()
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
