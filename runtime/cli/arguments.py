"""`musetalk`'s arguments: the commands, their flags, and the connection flags every command
takes before or after its name."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runtime.cli.models_cache import default_models_dir
from runtime.common.jobs import MODEL_VERSION, JobStatus
from runtime.common.names import Lane

DEFAULT_OUT_DIR = Path("out")

_AddCommand = Callable[..., argparse.ArgumentParser]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line, connection flags defaulted (argparse raises SystemExit on a
    usage error, after printing it)."""
    args = build_parser().parse_args(argv)
    for name, default in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def build_parser() -> argparse.ArgumentParser:
    common = _common_flags()
    parser = argparse.ArgumentParser(
        prog="musetalk",
        parents=[common],
        description="Submit and follow MuseTalk lip-sync jobs on a deployed stack or local mode.",
        epilog="Exit codes: 0 ok, 1 job failed/cancelled, 2 usage, 3 invalid request, "
        "4 not found, 5 auth, 6 conflict, 7 throttled, 8 service/network, 9 timeout, "
        "130 interrupted. See docs/cli.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    _add_submit(add_command)
    _add_job_commands(add_command)
    _add_weights_commands(add_command)
    return parser


def _add_submit(add_command: _AddCommand) -> None:
    submit = add_command("submit", help="upload media and create a job")
    submit.add_argument("avatar", help="avatar video/image file, or an existing avatar id")
    submit.add_argument("audio", type=Path, help="speech audio file (wav, mp3, m4a, flac, ogg)")
    submit.add_argument("--lane", choices=[lane.value for lane in Lane], default="interactive")
    submit.add_argument("--bbox-shift", type=int, help="face crop top edge shift, px (-40..40)")
    submit.add_argument("--extra-margin", type=int, help="margin below the chin, px (0..40)")
    submit.add_argument("--fps", type=int, help="avatar frame rate (1..60, default 25)")
    submit.add_argument("--blend-mode", choices=["jaw", "raw", "neck"])
    submit.add_argument(
        "--mask-blur",
        choices=["offline", "realtime"],
        help="blend-mask blur of the official offline (default) or realtime script",
    )
    submit.add_argument(
        "--no-skip-silence", action="store_true", help="render silent stretches too"
    )
    submit.add_argument("--sync-threshold", type=float, help="flag results below (0..1)")
    submit.add_argument("--webhook-url", help="https URL to POST the signed completion event to")
    submit.add_argument("--idempotency-key", help="resubmitting with the same key is safe")
    _add_wait_flags(submit, with_switch=True)


def _add_job_commands(add_command: _AddCommand) -> None:
    status = add_command("status", help="show a job")
    status.add_argument("job_id")

    wait = add_command("wait", help="follow a job to the end with a progress bar")
    wait.add_argument("job_id")
    _add_wait_flags(wait, with_switch=False)

    download = add_command("download", help="save a finished job's mp4")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", type=Path, help="file (default out/<job_id>.mp4)")

    jobs = add_command("jobs", help="list your jobs, newest first")
    jobs.add_argument("--status", choices=[status.value for status in JobStatus])
    jobs.add_argument("--limit", type=int)
    jobs.add_argument("--next-token")

    cancel = add_command("cancel", help="cancel a job that has not finished")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason", help="why (kept in the job's error; up to 200 characters)")

    purge = add_command(
        "purge", help="cancel a job and delete its inputs and outputs now (right to erasure)"
    )
    purge.add_argument("job_id")
    purge.add_argument("--yes", action="store_true", help="confirm the deletion")

    add_command("avatars", help="list your registered avatars")


def _add_weights_commands(add_command: _AddCommand) -> None:
    weights = add_command(
        "upload-weights", help="upload a models directory to the weights bucket (manifest last)"
    )
    weights.add_argument("directory", type=Path)
    weights.add_argument("--bucket", help="weights bucket (env MUSETALK_WEIGHTS_BUCKET, --stack)")
    weights.add_argument("--model-version", default=MODEL_VERSION)

    fetch = add_command(
        "fetch-weights",
        help="download the official MuseTalk v1.5 models directory (pinned, verified, resumable)",
    )
    fetch.add_argument("directory", nargs="?", type=Path, help=f"default: {default_models_dir()}")
    fetch.add_argument(
        "--no-syncnet", action="store_true", help="skip SyncNet (1.5 GB; sync scores only)"
    )
    fetch.add_argument("--mirror", help="serves <mirror>/<host>/<path> for the non-Hub files")


def _common_flags() -> argparse.ArgumentParser:
    """Flags accepted before or after the command (`musetalk status X --json` works too)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (flags, else environment, else --stack)")
    quiet = argparse.SUPPRESS  # so a subcommand's default never overwrites the main parser's value
    group.add_argument("--api-url", default=quiet, help="API endpoint (env MUSETALK_API_URL)")
    group.add_argument("--api-key", default=quiet, help="API key (env MUSETALK_API_KEY)")
    group.add_argument("--stack", default=quiet, help="read endpoint and key from this stack")
    group.add_argument("--region", default=quiet, help="AWS region of --stack / weights bucket")
    group.add_argument(
        "--tenant", default=quiet, help="with --stack: whose API key (env MUSETALK_TENANT)"
    )
    group.add_argument(
        "--http-timeout", type=float, default=quiet, help="seconds per HTTP request (default 30)"
    )
    common.add_argument(
        "--json", action="store_true", default=quiet, help="print one JSON document to stdout"
    )
    return common


_COMMON_DEFAULTS = {
    "api_url": None,
    "api_key": None,
    "stack": None,
    "region": None,
    "tenant": None,
    "http_timeout": 30.0,
    "json": False,
}


def _add_wait_flags(parser: argparse.ArgumentParser, *, with_switch: bool) -> None:
    if with_switch:
        parser.add_argument("--wait", action="store_true", help="follow the job to the end")
    parser.add_argument(
        "--download",
        nargs="?",
        const=DEFAULT_OUT_DIR,
        type=Path,
        metavar="PATH",
        help="after success save the mp4 (to PATH, a directory or file; default out/)",
    )
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    parser.add_argument("--poll-seconds", type=float, default=2.0)
