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
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.chaos_config import ChaosConfig
from bench.chaos_media import make_media
from bench.chaos_report import FINAL, ChaosReport
from bench.chaos_stack import chaos_stack
from bench.chaos_tally import (
    count_flood,
    count_jobs,
    count_poison,
    count_renders,
    forbidden_values,
    scan_logs,
)
from bench.chaos_traffic import (
    Submission,
    Submitter,
    check_isolation,
    drain_events,
    output_url_secrets,
    run_kills,
    submit_flood,
    submit_kill_jobs,
    submit_poison,
    submit_webhook,
    wait_final,
)


def run(config: ChaosConfig, work: Path, say: Callable[[str], None] = print) -> ChaosReport:
    """Every scenario at once on one stack; the report counted after the stack stopped."""
    report = ChaosReport()
    media = make_media(config, work / "media")
    with chaos_stack(config, work) as stack:
        submitter = Submitter(stack)
        say(f"stack up: {config.gateways} gateways, {config.workers} workers; submitting")
        submissions: list[Submission] = []
        kill = submit_kill_jobs(config, submitter, media)
        submissions += kill
        monkey = threading.Thread(
            target=run_kills,
            args=(stack, config.kills, {s.job_id for s in kill if s.job_id}, report),
        )
        monkey.start()
        flood, plan = submit_flood(config, submitter, media)
        submissions += flood
        # Poison, plus one job with a webhook whose URL must never be logged.
        submissions += submit_poison(submitter, media)
        webhook, webhook_token = submit_webhook(submitter, media)
        submissions.append(webhook)
        monkey.join()
        job_ids = {s.job_id for s in submissions if s.job_id}
        say(f"{len(job_ids)} jobs accepted; waiting until every one is final")
        records = wait_final(stack, job_ids, config.final_timeout_seconds)
        final_ids = {job_id for job_id, r in records.items() if r.status in FINAL}
        events = drain_events(stack, final_ids, timeout=30)
        check_isolation(stack, submitter, job_ids, media, report)
        output_url_secrets(stack, submitter, final_ids)

    # Counting (everything stopped: the logs are complete).
    count_jobs(report, submissions, records, events)
    renders = count_renders(report, stack.logs, records)
    count_flood(report, flood, plan, config.flood_contents, renders)
    count_poison(report, submissions, records)
    scan_logs(stack.logs, forbidden_values(stack, submitter, media, webhook_token), report)
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
