"""Human-readable renderings of API answers. `--json` bypasses all of this and prints the JSON."""

from __future__ import annotations

from typing import Any

STAGE_LABELS = {
    "queue_wait_ms": "queue wait",
    "download_ms": "download",
    "prepare_ms": "prepare",
    "speak_ms": "speak",
    "encode_ms": "encode",
    "upload_ms": "upload",
}


def format_ms(value: float) -> str:
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def format_timings(timings: dict[str, Any] | None) -> str:
    """`queue wait 12 ms · prepare 1.2 s · ...` in pipeline order; stages without a time omitted."""
    if not timings:
        return "-"
    parts = [
        f"{label} {format_ms(float(timings[name]))}"
        for name, label in STAGE_LABELS.items()
        if timings.get(name) is not None
    ]
    return " · ".join(parts) or "-"


def format_job(job: dict[str, Any]) -> str:
    lines = [f"job       {job.get('job_id')}  {job.get('status')}  lane={job.get('lane', '?')}"]
    if job.get("progress") is not None and job.get("status") not in {"SUCCEEDED", "QUEUED"}:
        lines.append(f"progress  {float(job['progress']):.0%}")
    if job.get("avatar_id"):
        lines.append(f"avatar    {job['avatar_id']}")
    lines.append(f"timings   {format_timings(job.get('timings'))}")
    if job.get("sync_confidence") is not None:
        low = "  (low: check the audio and avatar)" if job.get("low_sync") else ""
        lines.append(f"sync      {float(job['sync_confidence']):.2f}{low}")
    if job.get("weights"):
        lines.append(f"weights   {job['weights']}")
    error = job.get("error")
    if isinstance(error, dict):
        lines.append(f"error     {error.get('code')}: {error.get('message')}")
    if job.get("created_at"):
        lines.append(f"created   {job['created_at']}")
    return "\n".join(lines)


def format_job_row(job: dict[str, Any]) -> str:
    return (
        f"{job.get('job_id', ''):<28} {job.get('status', ''):<10} {job.get('lane', ''):<12} "
        f"{job.get('created_at', '')}"
    )


def format_avatar_row(avatar: dict[str, Any]) -> str:
    options = avatar.get("options") or {}
    summary = " ".join(f"{k}={v}" for k, v in options.items())
    return f"{avatar.get('avatar_id', ''):<66} {avatar.get('created_at', '')}  {summary}".rstrip()
