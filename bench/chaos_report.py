"""The chaos run's report: its counts (taken by `bench/chaos_tally.py`), the invariants that
fail the run, and the printed table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runtime.common.jobs import JobStatus

FINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
# What each poison must end as: the job's error code, or the API's 4xx code.
POISON_EXPECTED = {
    "corrupt video": "INVALID_MEDIA",
    "audio without speech": "NO_SPEECH",
    "video without a face": "NO_FACE",
    "huge dimensions": "MEDIA_TOO_LARGE",
    "PNG behind an audio upload": "INVALID_MEDIA",
    "zero-length audio": "INVALID_MEDIA",
}


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
