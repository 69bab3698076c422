"""The input checks' child process: a native crash, a hang or a runaway allocation in a check
fails the job with a permanent code and leaves the worker (and the next check) unharmed."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.common.jobs import ErrorCode
from runtime.common.limits import DEFAULT_LIMITS
from runtime.common.names import Lane
from runtime.worker.inputs import check_audio
from runtime.worker.isolated import GIB, IsolatedChecks
from runtime.worker.media_errors import MediaError
from tests.support.hostile_media import adts_duration_lie, pcm_wav

INTERACTIVE = DEFAULT_LIMITS.for_lane(Lane.INTERACTIVE)


def crash() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a decoder bug would


def hang() -> None:
    threading.Event().wait()


def allocate(size: int) -> int:
    return len(bytearray(size))


@pytest.fixture
def checks() -> Iterator[IsolatedChecks]:
    isolated = IsolatedChecks(timeout_seconds=5, memory_bytes=2 * GIB)
    yield isolated
    isolated.close()


def test_a_crash_in_a_check_is_invalid_media_and_the_next_check_runs(
    checks: IsolatedChecks, tmp_path: Path
) -> None:
    # Given a check that crashes its process natively
    with pytest.raises(MediaError) as refused:
        checks.run(crash)

    # Then the job gets a permanent INVALID_MEDIA, and this process lives on
    assert refused.value.code is ErrorCode.INVALID_MEDIA
    assert "crashed its decoder" in refused.value.message
    # and the next check runs in a new child
    wav = pcm_wav(tmp_path / "ok.wav", 8, seconds=0.5)
    assert checks.run(check_audio, wav, DEFAULT_LIMITS, INTERACTIVE) == pytest.approx(0.5)


def test_a_check_that_never_ends_is_stopped_at_the_time_limit(checks: IsolatedChecks) -> None:
    checks.timeout_seconds = 0.5
    with pytest.raises(MediaError) as refused:
        checks.run(hang)
    assert refused.value.code is ErrorCode.INVALID_MEDIA
    assert "not checked within" in refused.value.message


def test_an_allocation_past_the_memory_limit_is_media_too_large(checks: IsolatedChecks) -> None:
    # Given a check that allocates 3 GiB under a 2 GiB address-space limit
    with pytest.raises(MediaError) as refused:
        checks.run(allocate, 3 * GIB)
    assert refused.value.code is ErrorCode.MEDIA_TOO_LARGE
    # while a small allocation passes
    assert checks.run(allocate, 1024) == 1024


def test_refusals_come_back_with_their_codes(checks: IsolatedChecks, tmp_path: Path) -> None:
    aac = adts_duration_lie(tmp_path / "lie.aac", 1.0, 70.0)
    with pytest.raises(MediaError) as refused:
        checks.run(check_audio, aac, DEFAULT_LIMITS, INTERACTIVE)
    assert refused.value.code is ErrorCode.AUDIO_TOO_LONG
    assert "counted while decoding" in refused.value.message
