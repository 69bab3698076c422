"""`musetalk` command line: the commands and their output in two modes (arguments: arguments.py).

Human output goes to stdout, progress and errors to stderr; `--json` prints exactly one JSON
document to stdout (the answer, or `{"error": ...}`) so scripts can parse it. Exit codes: errors.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx
from pydantic import ValidationError

from runtime.cli.arguments import DEFAULT_OUT_DIR, parse_args
from runtime.cli.client import MEDIA_TYPES, ApiClient
from runtime.cli.errors import CliError, ExitCode
from runtime.cli.media_check import check_media
from runtime.cli.models_cache import default_models_dir
from runtime.cli.output import format_avatar_row, format_job, format_job_row
from runtime.cli.progress import ProgressBar, is_final, wait_for_job
from runtime.cli.settings import resolve_endpoint, resolve_weights_bucket
from runtime.cli.upload_weights import upload_weights
from runtime.common.jobs import AvatarOptions, JobStatus, RenderOptions
from runtime.common.keys import is_safe_id
from runtime.common.names import Lane

_Options = TypeVar("_Options", AvatarOptions, RenderOptions)
_AVATAR_OPTION_FLAGS = {
    "bbox_shift": "--bbox-shift",
    "extra_margin": "--extra-margin",
    "fps": "--fps",
    "blend_mode": "--blend-mode",
    "mask_blur": "--mask-blur",
}


@dataclass
class Console:
    stdout: TextIO
    stderr: TextIO
    json_mode: bool

    def result(self, document: Any, human: str) -> None:
        if self.json_mode:
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        elif human:
            self.stdout.write(human + "\n")

    def note(self, text: str) -> None:
        """Progress chatter: stderr, and only for humans."""
        if not self.json_mode:
            self.stderr.write(text + "\n")

    def error(self, error: CliError) -> None:
        if self.json_mode:
            self.stdout.write(json.dumps(error.to_json(), indent=2, sort_keys=True) + "\n")
        else:
            code = f" [{error.code}]" if error.code else ""
            self.stderr.write(f"error{code}: {error}\n")


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run one command and return its exit code (`transport` lets tests stand in for HTTP)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse printed the usage error already
        return int(exit_.code or 0)
    console = Console(stdout or sys.stdout, stderr or sys.stderr, bool(args.json))
    try:
        return int(_COMMANDS[args.command](args, console, transport))
    except CliError as error:
        console.error(error)
        return int(error.exit_code)
    except KeyboardInterrupt:
        console.note("interrupted")
        return int(ExitCode.INTERRUPTED)


def _client(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> ApiClient:
    endpoint = resolve_endpoint(
        api_url=args.api_url,
        api_key=args.api_key,
        stack=args.stack,
        region=args.region,
        tenant=args.tenant,
    )
    return ApiClient(
        endpoint.api_url, endpoint.api_key, timeout_seconds=args.http_timeout, transport=transport
    )


def _submit(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    avatar_options = _avatar_options(args)
    render_options = _model(
        RenderOptions,
        {"skip_silence": not args.no_skip_silence, "sync_threshold": args.sync_threshold},
    )
    audio = _existing_file(args.audio, "audio")
    avatar_file = _avatar_file(args.avatar)
    if avatar_file is not None:
        check_media(avatar_file, field="avatar")
    check_media(audio, field="audio")
    with _client(args, transport) as client:
        if avatar_file is not None:
            console.note(f"uploading {avatar_file.name}")
            avatar_upload = client.upload(avatar_file)
            avatar = client.create_avatar(avatar_upload, avatar_options or AvatarOptions())
            avatar_id = str(avatar["avatar_id"])
            console.note(f"avatar    {avatar_id}")
        else:
            if avatar_options is not None:
                flags = ", ".join(
                    _AVATAR_OPTION_FLAGS[name] for name in _given_avatar_options(args)
                )
                raise CliError(
                    ExitCode.USAGE,
                    f"{flags} apply when registering an avatar from a file; "
                    f"avatar {args.avatar} keeps the options it was prepared with",
                    field=next(iter(_given_avatar_options(args))),
                )
            avatar_id = args.avatar
        console.note(f"uploading {audio.name}")
        audio_upload = client.upload(audio)
        job = client.create_job(
            avatar_id=avatar_id,
            audio_upload_id=audio_upload,
            lane=Lane(args.lane),
            options=render_options,
            webhook_url=args.webhook_url,
            idempotency_key=args.idempotency_key,
        )
        job_id = str(job["job_id"])
        console.note(f"job       {job_id}  {job.get('status', 'QUEUED')} on {args.lane}")
        if not (args.wait or args.download):
            console.result(job, job_id)
            return ExitCode.OK
        return _follow(client, job_id, args, console)


def _wait(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        return _follow(client, args.job_id, args, console)


def _follow(client: ApiClient, job_id: str, args: argparse.Namespace, console: Console) -> ExitCode:
    bar = ProgressBar(console.stderr, label=job_id)
    job = wait_for_job(
        client,
        job_id,
        poll_seconds=args.poll_seconds,
        timeout_seconds=args.timeout,
        on_update=(lambda _job: None) if console.json_mode else bar.update,
    )
    document: dict[str, Any] = dict(job)
    if job.get("status") == JobStatus.SUCCEEDED and args.download:
        path = _download(client, job, _destination(args.download, job_id))
        document["downloaded_to"] = str(path)
    human = format_job(job)
    if "downloaded_to" in document:
        human += f"\nsaved     {document['downloaded_to']}"
    console.result(document, human)
    return ExitCode.OK if job.get("status") == JobStatus.SUCCEEDED else ExitCode.JOB_FAILED


def _status(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        job = client.get_job(args.job_id)
    console.result(job, format_job(job))
    return ExitCode.OK


def _download_command(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        job = client.get_job(args.job_id)
        path = _download(client, job, args.output or DEFAULT_OUT_DIR / f"{args.job_id}.mp4")
    console.result({"job_id": args.job_id, "downloaded_to": str(path)}, str(path))
    return ExitCode.OK


def _download(client: ApiClient, job: dict[str, Any], destination: Path) -> Path:
    status = job.get("status")
    if status in {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}:
        raise CliError(ExitCode.JOB_FAILED, f"job {job.get('job_id')} is {status}: no output")
    if not is_final(job):
        raise CliError(
            ExitCode.CONFLICT, f"job {job.get('job_id')} is {status}; nothing to download yet"
        )
    url = job.get("output_url")
    if not url:
        raise CliError(ExitCode.SERVICE, f"job {job.get('job_id')} has no download URL")
    client.download(str(url), destination)
    return destination


def _jobs(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        page = client.list_jobs(status=args.status, limit=args.limit, next_token=args.next_token)
    rows = [format_job_row(job) for job in page.get("jobs", [])]
    if page.get("next_token"):
        rows.append(f"more: --next-token {page['next_token']}")
    console.result(page, "\n".join(rows) or "no jobs")
    return ExitCode.OK


def _cancel(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        job = client.cancel_job(args.job_id, reason=args.reason)
    console.result(job, f"{args.job_id}  {job.get('status', 'CANCELLED')}")
    return ExitCode.OK


def _purge(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    if not args.yes:
        raise CliError(
            ExitCode.USAGE,
            f"purge deletes job {args.job_id}'s inputs and outputs now; pass --yes to confirm",
            field="yes",
        )
    with _client(args, transport) as client:
        job = client.cancel_job(args.job_id, purge=True)
    console.result(job, f"{args.job_id}  purged")
    return ExitCode.OK


def _avatars(args: argparse.Namespace, console: Console, transport: Any) -> ExitCode:
    with _client(args, transport) as client:
        page = client.list_avatars()
    rows = [format_avatar_row(avatar) for avatar in page.get("avatars", [])]
    console.result(page, "\n".join(rows) or "no avatars")
    return ExitCode.OK


def _upload_weights(args: argparse.Namespace, console: Console, _transport: Any) -> ExitCode:
    import boto3

    bucket = resolve_weights_bucket(bucket=args.bucket, stack=args.stack, region=args.region)
    s3 = boto3.client("s3", region_name=args.region)

    def report(path: str, uploaded: bool) -> None:
        console.note(f"{'uploaded' if uploaded else 'unchanged'}  {path}")

    result = upload_weights(
        s3,
        directory=args.directory,
        bucket=bucket,
        model_version=args.model_version,
        on_file=report,
    )
    document = {
        "bucket": bucket,
        "manifest_key": result.manifest.manifest_key,
        "files": len(result.manifest.files),
        "uploaded": result.uploaded,
        "skipped": result.skipped,
        "total_bytes": result.total_bytes,
    }
    human = (
        f"s3://{bucket}/{result.manifest.manifest_key}: {len(result.manifest.files)} files, "
        f"{result.total_bytes / 1e6:.1f} MB ({len(result.uploaded)} uploaded, "
        f"{len(result.skipped)} unchanged)"
    )
    console.result(document, human)
    return ExitCode.OK


def _fetch_weights(args: argparse.Namespace, console: Console, _transport: Any) -> ExitCode:
    from runtime.cli.fetch_weights import Sources, fetch_weights

    directory = args.directory or default_models_dir()
    result = fetch_weights(
        directory,
        sources=Sources.from_env(mirror=args.mirror),
        include_optional=not args.no_syncnet,
        show_progress=not console.json_mode,
        on_file=lambda path, action: console.note(f"{action:8}  {path}"),
    )
    document = {
        "directory": str(directory),
        "fetched": result.fetched,
        "present": result.present,
        "total_bytes": result.total_bytes,
    }
    human = (
        f"{directory}: official MuseTalk v1.5 weights, {result.total_bytes / 1e9:.2f} GB verified "
        f"({len(result.fetched)} downloaded, {len(result.present)} already there)"
    )
    console.result(document, human)
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[argparse.Namespace, Console, Any], ExitCode]] = {
    "submit": _submit,
    "status": _status,
    "wait": _wait,
    "download": _download_command,
    "jobs": _jobs,
    "cancel": _cancel,
    "purge": _purge,
    "avatars": _avatars,
    "upload-weights": _upload_weights,
    "fetch-weights": _fetch_weights,
}


def _given_avatar_options(args: argparse.Namespace) -> list[str]:
    return [name for name in _AVATAR_OPTION_FLAGS if getattr(args, name) is not None]


def _avatar_options(args: argparse.Namespace) -> AvatarOptions | None:
    given = _given_avatar_options(args)
    if not given:
        return None
    return _model(AvatarOptions, {name: getattr(args, name) for name in given})


def _model(model: type[_Options], values: dict[str, Any]) -> _Options:
    """Validate options here first, so a typo fails before any upload, naming the flag."""
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        flag = f"--{field.replace('_', '-')}" if field else "options"
        raise CliError(ExitCode.USAGE, f"{flag}: {first['msg']}", field=field) from None


def _existing_file(path: Path, field: str) -> Path:
    if not path.is_file():
        raise CliError(ExitCode.USAGE, f"{path}: no such file", field=field)
    return path


def _avatar_file(value: str) -> Path | None:
    """A path to a media file, or None when `value` is an avatar id."""
    path = Path(value)
    if path.is_file():
        return path
    if path.suffix.lower() in MEDIA_TYPES or "/" in value or not is_safe_id(value):
        raise CliError(ExitCode.USAGE, f"{value}: no such file (nor an avatar id)", field="avatar")
    return None


def _destination(target: Path, job_id: str) -> Path:
    return target / f"{job_id}.mp4" if target.suffix.lower() != ".mp4" else target
