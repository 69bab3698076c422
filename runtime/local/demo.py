"""The demo: sample media through the running local stack, driven by the `musetalk` CLI code.

Two jobs, as a user would submit them: the video avatar on the interactive lane and the still image
on the batch lane. The demo follows them with the CLI's progress bar, collects their completion
events from the SNS subscription, downloads the mp4s, and writes next to each mp4 the job as the
API reports it, the event as SNS delivered it and the record as the jobs table stores it.
"""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.cli.errors import ExitCode
from runtime.cli.main import main as cli_main
from runtime.cli.output import format_timings
from runtime.common.jobs import CompletionEvent, JobStatus
from runtime.common.names import JobsTable, Lane
from runtime.common.records import JobRecord, job_pk
from runtime.local.contact_sheets import contact_sheet
from runtime.local.media import EXAMPLES_DIR, copy_notice, trim_audio, trim_video
from runtime.local.stack import RunningStack, Say

EVENT_WAIT_SECONDS = 60
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class DemoJob:
    name: str
    avatar: Path
    audio: Path
    lane: Lane


@dataclass(frozen=True)
class DemoMedia:
    avatar_seconds: float
    audio_seconds: float
    max_side: int
    audio_start: float = 0.0  # seconds into eng.wav (the demo starts where the speech does)


def prepare_media(work_dir: Path, media: DemoMedia) -> list[DemoJob]:
    """Trimmed copies of yongen.mp4, eng.wav and musk.png (with their MIT notice)."""
    target = work_dir / "media"
    target.mkdir(parents=True, exist_ok=True)
    copy_notice(target)
    video = trim_video(
        EXAMPLES_DIR / "yongen.mp4", target / "yongen.mp4", media.avatar_seconds, media.max_side
    )
    speech = EXAMPLES_DIR / "eng.wav"
    audio = trim_audio(
        speech, target / "eng.wav", media.audio_seconds, start_seconds=media.audio_start
    )
    image = target / "musk.png"
    image.write_bytes((EXAMPLES_DIR / "musk.png").read_bytes())
    return [
        DemoJob(name="yongen", avatar=video, audio=audio, lane=Lane.INTERACTIVE),
        DemoJob(name="musk", avatar=image, audio=audio, lane=Lane.BATCH),
    ]


def connection_args(api_url: str, api_key: str) -> list[str]:
    """`--name=value`: a random key may start with `-`, which argparse would take for an option
    in the two-word form (the demo then failed about once in 64 runs)."""
    return [f"--api-url={api_url}", f"--api-key={api_key}"]


def run_demo(
    stack: RunningStack,
    jobs: list[DemoJob],
    *,
    out_dir: Path,
    job_timeout: float,
    say: Say,
    models_dir: Path | None = None,
) -> int:
    """Submit, follow, collect and download every job; 0 only if every step of every job worked.
    With `models_dir` (the worker's weights), each finished job also gets its contact sheet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cli = _Cli(connection_args(stack.api_url, stack.api_key))
    with fail_fast_if_worker_dies(stack):
        submitted: dict[str, DemoJob] = {}
        for job in jobs:
            code, job_id = _submit(cli, job, say)
            if code != ExitCode.OK:
                return code
            submitted[job_id] = job
        outcomes = {
            job_id: _wait(cli, job_id, out_dir / f"{job.name}.mp4", job_timeout, say)
            for job_id, job in submitted.items()
        }

    events = receive_completion_events(stack, set(submitted), EVENT_WAIT_SECONDS)
    reports = [
        _collect(
            stack,
            cli,
            job_id,
            job,
            waited=outcomes[job_id],
            event=events.get(job_id),
            out_dir=out_dir,
            say=say,
            models_dir=models_dir,
        )
        for job_id, job in submitted.items()
    ]
    ok = all(report["ok"] for report in reports)
    _write_json(out_dir / SUMMARY_FILE, {"jobs": reports, "ok": ok})
    say(f"summary: {out_dir / SUMMARY_FILE}")
    if not ok:
        say(f"something failed: see the job JSON above and the logs in {stack.logs_dir}")
    return ExitCode.OK if ok else ExitCode.JOB_FAILED


class _Cli:
    """The `musetalk` CLI run in-process against the local stack, as a user would run it."""

    def __init__(self, connection: list[str]) -> None:
        self._connection = connection

    def __call__(self, *args: str, capture: bool = False) -> tuple[int, str]:
        buffer = io.StringIO()
        code = cli_main([*self._connection, *args], stdout=buffer if capture else None)
        if code == ExitCode.INTERRUPTED:  # the CLI turned Ctrl-C into an exit code: stop here
            raise KeyboardInterrupt
        return code, buffer.getvalue()


def _submit(cli: _Cli, job: DemoJob, say: Say) -> tuple[int, str]:
    """The exit code and the new job's id (empty when the submit failed)."""
    say(f"musetalk submit {job.avatar.name} {job.audio.name} --lane {job.lane}")
    code, answer = cli(
        "--json",
        "submit",
        str(job.avatar),
        str(job.audio),
        "--lane",
        job.lane,
        capture=True,
    )
    document = json.loads(answer)
    if code != ExitCode.OK:
        say(f"submit failed (exit {code}): {json.dumps(document.get('error'))}")
        return code, ""
    return code, str(document["job_id"])


def _wait(cli: _Cli, job_id: str, output: Path, job_timeout: float, say: Say) -> int:
    say(f"musetalk wait {job_id} --download {output}")
    # The progress bar goes to stderr; the CLI's own summary is replaced by the demo's.
    code, _ = cli(
        "wait",
        job_id,
        "--download",
        str(output),
        "--timeout",
        f"{job_timeout:g}",
        "--poll-seconds",
        "1",
        capture=True,
    )
    return code


def _collect(
    stack: RunningStack,
    cli: _Cli,
    job_id: str,
    job: DemoJob,
    *,
    waited: int,
    event: dict[str, Any] | None,
    out_dir: Path,
    say: Say,
    models_dir: Path | None,
) -> dict[str, Any]:
    """One job's files (the API's view, the table's record, the SNS event, the contact sheet),
    printed, and its entry in the summary."""
    _, answer = cli("--json", "status", job_id, capture=True)
    api_view = _redacted(json.loads(answer))
    record = _job_record(stack, job_id)
    files = {
        "output": out_dir / f"{job.name}.mp4",
        "job": _write_json(out_dir / f"{job.name}.job.json", api_view),
        "record": _write_json(out_dir / f"{job.name}.record.json", record),
        "event": _write_json(out_dir / f"{job.name}.event.json", event),
    }
    job_ok = (
        waited == ExitCode.OK
        and api_view.get("status") == JobStatus.SUCCEEDED
        and event is not None
        and files["output"].is_file()
    )
    sheet = None
    if job_ok and models_dir is not None:
        say(f"contact sheet of {job.name}: python -m runtime.engine contact-sheet ...")
        sheet = contact_sheet(
            stack,
            avatar_id=str(api_view["avatar_id"]),
            audio=job.audio,
            models_dir=models_dir,
            png=out_dir / f"{job.name}.contact.png",
            work_dir=job.audio.parent,
        )
    _print_job(job, job_id, api_view, event, files["output"], sheet)
    return {
        "name": job.name,
        "job_id": job_id,
        "lane": job.lane.value,
        "avatar": str(job.avatar),
        "audio": str(job.audio),
        "status": api_view.get("status"),
        "weights": (event or {}).get("event", {}).get("weights"),
        "ok": job_ok,
        "files": {kind: str(path) for kind, path in files.items()},
        "contact_sheet": sheet,
    }


@contextmanager
def fail_fast_if_worker_dies(stack: RunningStack) -> Iterator[None]:
    """If the worker exits while jobs are pending, stop waiting and say why (its log's tail)
    instead of polling until the job timeout."""
    worker = stack.worker
    died, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            if not worker.running():
                died.set()
                _thread.interrupt_main()
                return

    watcher = threading.Thread(target=watch, name="worker-watch", daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if died.is_set():
            worker.check_running()  # raises LocalModeError with the worker's last log lines
        raise
    finally:
        done.set()
        watcher.join()


def receive_completion_events(
    stack: RunningStack, job_ids: set[str], timeout_seconds: float
) -> dict[str, dict[str, Any]]:
    """Completion events for `job_ids` from the subscribed queue, as SNS delivered them."""
    sqs = stack.client("sqs")
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_seconds
    while set(found) < job_ids and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=stack.completion_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            envelope = json.loads(message["Body"])
            event = CompletionEvent.model_validate_json(envelope["Message"])
            found[event.job_id] = {
                "event": event.model_dump(mode="json"),
                "attributes": {
                    name: attribute.get("Value")
                    for name, attribute in envelope.get("MessageAttributes", {}).items()
                },
            }
            sqs.delete_message(
                QueueUrl=stack.completion_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    return {job_id: found[job_id] for job_id in job_ids if job_id in found}


def _job_record(stack: RunningStack, job_id: str) -> dict[str, Any] | None:
    table = stack.session.resource("dynamodb", endpoint_url=stack.resources.endpoint_url).Table(
        stack.resources.names.jobs_table
    )
    item = table.get_item(Key={JobsTable.PARTITION_KEY: job_pk(job_id)}).get("Item")
    return None if item is None else JobRecord.from_item(item).model_dump(mode="json")


_PRESIGNED_FIELDS = ("output_url", "preview_url")


def _redacted(job: dict[str, Any]) -> dict[str, Any]:
    """The job without its presigned URLs (the download, and the preview during its grace):
    credentials while they live, so the demo neither prints them nor leaves them in files."""
    return {
        name: "<presigned URL, redacted>" if name in _PRESIGNED_FIELDS and value else value
        for name, value in job.items()
    }


def _write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def _print_job(
    job: DemoJob,
    job_id: str,
    api_view: dict[str, Any],
    event: dict[str, Any] | None,
    output: Path,
    sheet: dict[str, Any] | None = None,
) -> None:
    print(f"\n=== {job.name}: {job.avatar.name} + {job.audio.name} on {job.lane} ===")
    print(f"job       {job_id}  {api_view.get('status')}")
    print(f"output    {output if output.is_file() else '(none)'}")
    print(f"timings   {format_timings(api_view.get('timings'))}")
    print(f"event     {'received from SNS' if event else 'NOT received'}")
    if event and event["event"].get("weights") == "random":
        print("weights   random: the pipeline ran for real, the lips do not follow the speech")
    if sheet is not None and "error" not in sheet:
        print(f"contact   {sheet['out']}  (source crop, blend mask, generated face, result)")
        print(f"lips      {sheet['verdict']}")
    elif sheet is not None:
        print(f"contact   not made: {sheet['error']}")
    print(json.dumps(api_view, indent=2, sort_keys=True))
