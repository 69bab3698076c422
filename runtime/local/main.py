"""`python -m runtime.local`: `demo` (run the sample media end to end), `up` (keep the local
service running for the CLI), and `gateway` (the API gateway child process local mode starts)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from runtime.api.cors import is_browser_origin
from runtime.cli.errors import ExitCode
from runtime.common.names import EnvVar
from runtime.local.processes import LocalModeError
from runtime.local.stack import (
    ENV_LOCAL_API_KEYS,
    ENV_LOCAL_DEAD_LETTER_QUEUES,
    REPO_ROOT,
    StackOptions,
    running_stack,
)
from runtime.local.workers import WorkerWatch, attach_command, run_attached_worker

DEFAULT_WORK_DIR = REPO_ROOT / ".local"
DEFAULT_OUT_DIR = REPO_ROOT / "out"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.local",
        description="Run the whole MuseTalk service on this machine against a local AWS emulator.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="render the sample media end to end, then stop")
    up = commands.add_parser("up", help="start everything and keep it running until Ctrl-C")
    for command in (demo, up):
        command.add_argument(
            "--models",
            type=Path,
            help="MuseTalk weights directory (default: the fetch-weights cache when complete, "
            "else tiny random weights)",
        )
        command.add_argument("--stage", default="dev", help="stage config to mirror (dev)")
        command.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="where the mp4s go")
    demo.add_argument(
        "--avatar-seconds", type=float, default=1.0, help="trim the sample video to this (1)"
    )
    demo.add_argument(
        "--audio-seconds", type=float, default=3.0, help="trim the sample speech to this (3)"
    )
    demo.add_argument(
        "--max-side", type=int, default=360, help="scale the sample video down to this (360 px)"
    )
    demo.add_argument(
        "--job-timeout", type=float, default=900.0, help="seconds to wait for each job"
    )
    up.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        type=_origin,
        metavar="ORIGIN",
        help="also let pages from this origin call the API (CORS), e.g. the playground served "
        "by a static server; repeatable",
    )
    worker = commands.add_parser(
        "worker", help="start another worker for the stack `up` runs (in the foreground)"
    )
    worker.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    gateway = commands.add_parser("gateway", help=argparse.SUPPRESS)
    gateway.add_argument("--port", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gateway":
        return _serve_gateway(args.port)
    if args.command == "worker":
        try:
            return run_attached_worker(args.work_dir.resolve())
        except LocalModeError as error:
            _say(f"error: {error}")
            return int(ExitCode.SERVICE)
    interrupt_on_signals()
    options = StackOptions(
        work_dir=args.work_dir.resolve(),
        models_dir=_models_dir(args.models),
        stage=args.stage,
        extra_origins=tuple(getattr(args, "allow_origin", ())),
    )
    try:
        if args.command == "demo":
            return _demo(args, options)
        return _up(options)
    except LocalModeError as error:
        _say(f"error: {error}")
        return int(ExitCode.SERVICE)
    except KeyboardInterrupt:
        _say("interrupted; everything local mode started has been stopped")
        return int(ExitCode.INTERRUPTED)


def _models_dir(given: Path | None) -> Path | None:
    """`--models`, else the official weights `musetalk fetch-weights` put in its cache (when
    complete), else None: tiny random weights."""
    if given is not None:
        return given
    from runtime.cli.models_cache import default_models_dir
    from runtime.engine.layout import ModelsLayout

    fetched = default_models_dir()
    if fetched.is_dir() and not ModelsLayout(fetched).missing_files():
        _say(f"weights: the official MuseTalk v1.5 weights in {fetched} (musetalk fetch-weights)")
        return fetched
    return None


def _demo(args: argparse.Namespace, options: StackOptions) -> int:
    from runtime.local.demo import DemoMedia, prepare_media, run_demo
    from runtime.local.media import EXAMPLES_DIR, speech_start_seconds

    start = speech_start_seconds(EXAMPLES_DIR / "eng.wav")
    jobs = prepare_media(
        options.work_dir,
        DemoMedia(
            avatar_seconds=args.avatar_seconds,
            audio_seconds=args.audio_seconds,
            max_side=args.max_side,
            audio_start=start,
        ),
    )
    _say(
        f"sample media trimmed to {args.avatar_seconds:g} s of video (at most {args.max_side} px) "
        f"and {args.audio_seconds:g} s of speech from {start:.2f} s (where the voice activity "
        f"detector hears the first word) in {options.work_dir / 'media'} "
        "(MIT, see NOTICE.md there)"
    )
    with running_stack(options, _say) as stack:
        return run_demo(
            stack,
            jobs,
            out_dir=args.out.resolve(),
            job_timeout=args.job_timeout,
            say=_say,
            models_dir=options.models_dir or options.work_dir / "models-tiny",
        )


def _up(options: StackOptions) -> int:
    with running_stack(options, _say) as stack:
        musetalk = cli_command()
        print(
            "\nLocal service running. In another shell (no virtual environment needed):\n"
            f"  export MUSETALK_API_URL={stack.api_url}\n"
            f"  export MUSETALK_API_KEY={stack.api_key}\n"
            f"  {musetalk} submit examples/media/musk.png examples/media/yongen.wav --wait \\\n"
            "    --download\n"
            f"More workers (or one after this one died): {attach_command(options.work_dir)}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        watch = WorkerWatch(stack.worker, options.work_dir)

        def report_dead_worker() -> None:
            report = watch.check()
            if report is not None:
                _say(report)

        wait_for_interrupt(on_tick=report_dead_worker)
    return int(ExitCode.OK)


def cli_command() -> str:
    """How to run the `musetalk` CLI from any shell and directory: the console script installed
    beside this interpreter (e.g. `<clone>/.venv/bin/musetalk`), else this interpreter with
    `-m runtime.cli`; a bare `musetalk` works only inside an activated virtual environment."""
    script = Path(sys.executable).absolute().parent / "musetalk"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(str(Path(sys.executable).absolute()))} -m runtime.cli"


SIGNAL_CHECK_SECONDS = 1.0


def wait_for_interrupt(on_tick: Callable[[], None] | None = None) -> None:
    """Block until Ctrl-C (or SIGTERM, see `interrupt_on_signals`) raises KeyboardInterrupt.

    Wakes every second: the kernel may deliver the signal to any thread (the in-process moto
    server has many), and Python runs its handler only when the main thread next wakes, so an
    untimed wait could sleep through Ctrl-C for good (seen once in CI). `on_tick` runs at each
    wake (`up` checks on its worker there).
    """
    never = threading.Event()
    while not never.wait(SIGNAL_CHECK_SECONDS):
        if on_tick is not None:
            on_tick()


def _serve_gateway(port: int) -> int:
    """The API process: the REST Lambda behind the gateway, plus the sweeper and dead-letter
    Lambdas on their triggers (all invocations one at a time, under one lock)."""
    import boto3

    from runtime.api.entrypoints import dead_letters, sweeper, webhook_deliveries
    from runtime.api.entrypoints.rest import lambda_handler
    from runtime.local.gateway import LocalGateway
    from runtime.local.triggers import LocalTriggers

    keys = json.loads(os.environ[ENV_LOCAL_API_KEYS])
    origins = json.loads(os.environ.get(EnvVar.CORS_ALLOWED_ORIGINS.value) or "[]")
    server = LocalGateway(port, lambda_handler, keys, cors_origins=tuple(origins))
    triggers = LocalTriggers(
        sqs=boto3.client("sqs"),
        dead_letter_queue_urls=json.loads(os.environ[ENV_LOCAL_DEAD_LETTER_QUEUES]),
        sweeper=sweeper.lambda_handler,
        dead_letters=dead_letters.lambda_handler,
        lock=server.invoke_lock,
        webhook_queue_url=os.environ.get(EnvVar.WEBHOOK_QUEUE_URL.value),
        webhook_deliveries=webhook_deliveries.lambda_handler,
        s3=boto3.client("s3"),
        lifecycle_buckets=tuple(
            os.environ[name.value]
            for name in (EnvVar.UPLOADS_BUCKET, EnvVar.OUTPUTS_BUCKET, EnvVar.AVATAR_CACHE_BUCKET)
        ),
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    triggers.start()
    server.serve_forever()
    triggers.stop()
    server.server_close()
    return 0


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM (e.g. from a test runner) unwind as KeyboardInterrupt, so everything
    local mode started is stopped. SIGINT is set explicitly: a process started in the
    background by a non-interactive shell inherits it ignored, and Python keeps it so."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _origin(value: str) -> str:
    if not is_browser_origin(value):
        raise argparse.ArgumentTypeError(
            "an exact origin: https://host[:port], or http://localhost|127.0.0.1[:port]"
        )
    return value


def _say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)
