"""Counting a chaos run once everything stopped (the logs are complete): jobs by outcome,
completion events, renders per job and per content, the flood, the poison codes, and every
log line scanned for secrets and personal data."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.chaos_media import Media
from bench.chaos_report import FINAL, ChaosReport
from bench.chaos_stack import Stack
from bench.chaos_traffic import Submission, Submitter
from runtime.common.jobs import JobStatus
from runtime.common.records import JobRecord


def count_jobs(
    report: ChaosReport,
    submissions: list[Submission],
    records: dict[str, JobRecord],
    events: dict[str, list[str]],
) -> None:
    """Submitted, accepted and rejected; each accepted job by outcome (or lost), its time and
    queue wait, and whether it was announced exactly once."""
    job_ids = {s.job_id for s in submissions if s.job_id}
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


def count_renders(report: ChaosReport, logs: Path, records: dict[str, JobRecord]) -> Counter[str]:
    """Renders per job from the workers' logs (and their requeue, OOM and claim-wait metrics);
    jobs rendered twice, and renders per output cache key (per tenant and content)."""
    renders: Counter[str] = Counter()
    for line in _log_records(logs):
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
    return renders


def count_flood(
    report: ChaosReport,
    flood: list[Submission],
    plan: list[str],
    contents: int,
    renders: Counter[str],
) -> None:
    flood_ids = {s.job_id for s in flood if s.job_id}
    report.flood_submissions = len(flood)
    report.flood_keys = len(set(plan))
    report.flood_jobs = len(flood_ids)
    report.flood_contents = contents
    report.flood_renders = sum(renders[job_id] for job_id in flood_ids)


def count_poison(
    report: ChaosReport, submissions: list[Submission], records: dict[str, JobRecord]
) -> None:
    """The code each poison ended with: the API's refusal, the job's error, else its status."""
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


def forbidden_values(
    stack: Stack, submitter: Submitter, media: Media, webhook_token: str
) -> dict[str, str]:
    """What no log line may contain, by label: keys, the webhook secret and URL, the poison
    files' marker and every presigned value the API handed out."""
    return {
        "api key of tenant-a": stack.api_keys["tenant-a"],
        "api key of tenant-b": stack.api_keys["tenant-b"],
        "webhook secret": stack.webhook_secret,
        "webhook secret body": stack.webhook_secret.removeprefix("whsec_"),
        "webhook URL": webhook_token,
        "file content": media.marker,
        **{f"presigned value {i}": v for i, v in enumerate(sorted(submitter.secrets_seen))},
    }


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
