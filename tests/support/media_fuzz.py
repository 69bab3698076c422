"""Runs the worker's input checks and the engine's decoders over a hostile media corpus in a
child process, one case after another, and reports each case's outcomes: "ok" or an error code
per step, and the pipeline's (the first step that refused, in the worker's order).

A native crash takes the child down; the parent records it as "CRASH" for the case it was on
and starts a new child at the next case, so one crash never hides the rest. `python -m
tests.support.media_fuzz DIR` prints the outcome of every file in DIR (the child's side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

DOCUMENTED = frozenset(
    {"ok", "INVALID_MEDIA", "MEDIA_TOO_LARGE", "AUDIO_TOO_LONG", "NO_SPEECH", "NO_FACE"}
)


def _outcome(run: Callable[[], object]) -> str:
    """The job's error code for what `run` raised, through the worker's seam."""
    from runtime.worker.engine_options import engine_failures
    from runtime.worker.media_errors import MediaError

    try:
        with engine_failures():
            run()
    except MediaError as error:
        return error.code.value
    except Exception as error:  # what the fuzz rule forbids: reported, not raised
        return f"UNEXPECTED {type(error).__name__}: {error}"
    return "ok"


def audio_outcomes(path: Path, scratch: Path) -> dict[str, str]:
    from runtime.common.limits import DEFAULT_LIMITS
    from runtime.common.names import Lane
    from runtime.engine.audio import load_audio_16k
    from runtime.engine.media import decode_audio_mono, encode_audio
    from runtime.worker.inputs import check_audio

    lane = DEFAULT_LIMITS.for_lane(Lane.INTERACTIVE)
    outcomes = {
        "check_audio": _outcome(lambda: check_audio(path, DEFAULT_LIMITS, lane)),
        "load_audio_16k": _outcome(lambda: load_audio_16k(path)),
        "decode_audio_mono": _outcome(lambda: decode_audio_mono(path, 16_000)),
        "encode_audio": _outcome(lambda: encode_audio(path, scratch / "audio.m4a")),
    }
    return outcomes | {"pipeline": _first_refusal(outcomes)}


def avatar_outcomes(path: Path) -> dict[str, str]:
    from runtime.common.limits import DEFAULT_LIMITS
    from runtime.engine.avatar_reader import AvatarReader
    from runtime.worker.engine_options import decode_limits
    from runtime.worker.inputs import check_avatar

    reader = AvatarReader(path, still_fps=25, max_frames=50, limits=decode_limits(DEFAULT_LIMITS))
    outcomes = {
        "check_avatar": _outcome(lambda: check_avatar(path, DEFAULT_LIMITS.max_video_pixels)),
        "AvatarReader": _outcome(lambda: sum(1 for _ in reader.frames())),
    }
    return outcomes | {"pipeline": _first_refusal(outcomes)}


def _first_refusal(outcomes: dict[str, str]) -> str:
    """The worker's order: the check first, then the decoders on what it let through. Every
    decoder also runs on what the check refused, which must not crash it (an outcome other
    than a documented code is allowed there: the worker never gets that far)."""
    return next((outcome for outcome in outcomes.values() if outcome != "ok"), "ok")


def _child(paths: list[Path]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for path in paths:
            print(json.dumps({"start": path.name}), flush=True)
            kind = path.name.split("-", 1)[0]
            outcomes = (
                audio_outcomes(path, Path(scratch)) if kind == "audio" else avatar_outcomes(path)
            )
            print(json.dumps({"case": path.name, "outcomes": outcomes}), flush=True)


def run_corpus(paths: list[Path], *, timeout: float = 120) -> dict[str, dict[str, str]]:
    """Every file's outcomes (files named `audio-*` or `avatar-*`), a crashed case as
    {"process": "CRASH <signal>"}."""
    results: dict[str, dict[str, str]] = {}
    pending = list(paths)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    while pending:
        child = subprocess.run(
            [sys.executable, "-m", "tests.support.media_fuzz", *map(str, pending)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        started: str | None = None
        for line in child.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["case"]] = record["outcomes"]
                started = None
        if child.returncode == 0:
            break
        if started is None:
            raise RuntimeError(f"the fuzz child failed outside a case: {child.stderr[-2000:]}")
        results[started] = {"process": f"CRASH {child.returncode}"}
        pending = pending[[p.name for p in pending].index(started) + 1 :]
    return results


if __name__ == "__main__":
    _child([Path(arg) for arg in sys.argv[1:]])
