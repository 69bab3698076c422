"""Hostile media cannot hurt the worker: every shape of attack ends in a documented error code
(or a render), at once and without a retry, and never in a native crash, an unbounded
allocation or a decode that outlasts the lane's limit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from bench.poison_media import deep_png
from runtime.common.jobs import ErrorCode
from runtime.common.limits import DEFAULT_LIMITS
from runtime.common.names import Lane
from runtime.engine.avatar_reader import AvatarReader
from runtime.engine.engine_contract import Failure, Interrupted
from runtime.engine.engine_contract import MediaError as EngineMediaError
from runtime.engine.untrusted import DecodeLimits, OversizedMedia
from runtime.worker.engine_options import decode_limits
from runtime.worker.inputs import check_audio, check_avatar
from runtime.worker.media_errors import MediaError
from tests.support.hostile_media import (
    adts_duration_lie,
    adts_format_switch,
    audio_corpus,
    avatar_corpus,
    pcm_wav,
    resolution_switch_ts,
    tiny_png,
    tiny_video,
)
from tests.support.media_fuzz import DOCUMENTED, run_corpus

INTERACTIVE = DEFAULT_LIMITS.for_lane(Lane.INTERACTIVE)


def test_an_8_channel_wav_decodes_to_the_channel_mean_without_crashing(tmp_path: Path) -> None:
    # Given an ordinary 8-channel WAV (PyAV's planar to_ndarray crashed on 8+ channels)
    wav = pcm_wav(tmp_path / "octo.wav", 8, seconds=0.5)

    # When the engine loads it in a child process (a crash must not take the tests down)
    code = (
        "import sys; from pathlib import Path; from runtime.engine.audio import load_audio_16k;"
        "a = load_audio_16k(Path(sys.argv[1])); print(len(a), float(abs(a).max()))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(wav)], capture_output=True, text=True, check=False
    )

    # Then the process survives and every channel's tone is in the mono mix
    assert child.returncode == 0, child.stderr[-500:]
    samples, peak = child.stdout.split()
    assert int(samples) == 8000
    assert 0.25 < float(peak) < 0.35
    # and the worker's check accepts it
    assert check_audio(wav, DEFAULT_LIMITS, INTERACTIVE) == pytest.approx(0.5)


def test_a_layout_the_writer_cannot_mix_down_is_refused_by_the_check(tmp_path: Path) -> None:
    # Given 9 channels without a channel mask (libswresample has no matrix for them)
    wav = pcm_wav(tmp_path / "nine.wav", 9)

    # When checked, Then INVALID_MEDIA names the layout (not a retried writer failure later)
    with pytest.raises(MediaError) as refused:
        check_audio(wav, DEFAULT_LIMITS, INTERACTIVE)
    assert refused.value.code is ErrorCode.INVALID_MEDIA
    assert "9 channels" in str(refused.value)


def test_an_audio_format_change_mid_stream_is_refused_by_the_check(tmp_path: Path) -> None:
    # Given ADTS AAC switching from mono 16 kHz to stereo 48 kHz (the writer's resampler raised
    # ValueError on it, a transient failure retried three times)
    aac = adts_format_switch(tmp_path / "switch.aac")

    # When checked, Then it is INVALID_MEDIA at once
    with pytest.raises(MediaError) as refused:
        check_audio(aac, DEFAULT_LIMITS, INTERACTIVE)
    assert refused.value.code is ErrorCode.INVALID_MEDIA
    assert "changes mid-stream" in str(refused.value)


def test_aac_whose_duration_estimate_lies_is_too_long_counted_while_decoding(
    tmp_path: Path,
) -> None:
    # Given ADTS AAC: 1 s of a high bitrate, then 70 s of a low one (the estimate is far less)
    aac = adts_duration_lie(tmp_path / "lie.aac", 1.0, 70.0)
    with av.open(str(aac)) as container:
        assert container.duration is not None
        assert container.duration / av.time_base < INTERACTIVE.max_audio_seconds

    # When the worker checks it for the 60 s lane, Then it is AUDIO_TOO_LONG
    with pytest.raises(MediaError) as refused:
        check_audio(aac, DEFAULT_LIMITS, INTERACTIVE)
    assert refused.value.code is ErrorCode.AUDIO_TOO_LONG
    # and the 600 s lane measures its real length
    batch = DEFAULT_LIMITS.for_lane(Lane.BATCH)
    assert check_audio(aac, DEFAULT_LIMITS, batch) == pytest.approx(71.0, abs=0.2)


def test_a_stream_that_switches_to_8k_mid_way_is_refused_while_decoding(tmp_path: Path) -> None:
    # Given an MPEG-TS whose header says 64x64 and whose stream switches to 7680x4320
    ts = resolution_switch_ts(tmp_path / "switch.ts")
    check_avatar(ts, DEFAULT_LIMITS.max_video_pixels)  # the header passes

    # When the engine decodes it, Then it is refused before an 8K frame reaches numpy
    reader = AvatarReader(ts, still_fps=25, limits=decode_limits(DEFAULT_LIMITS))
    decoded = []
    with pytest.raises(EngineMediaError) as refused:
        decoded.extend(reader.frames())
    assert refused.value.failure is Failure.INVALID_MEDIA
    assert all(frame.shape == (64, 64, 3) for frame in decoded)


def test_a_size_change_below_the_limit_is_invalid_media_not_a_retry(tmp_path: Path) -> None:
    # Given a stream switching from 64x64 to 128x128 (np.stack would raise ValueError later)
    ts = resolution_switch_ts(tmp_path / "switch.ts", (128, 128), 3)

    # When decoded, Then the change is refused as the engine's own UnreadableMedia
    with pytest.raises(Exception, match="frame size changes mid-stream") as refused:
        list(AvatarReader(ts, still_fps=25).frames())
    assert type(refused.value).__name__ == "UnreadableMedia"


def test_decoded_bytes_are_bounded_not_only_frame_counts(tmp_path: Path) -> None:
    # Given 10 frames of 96x96 and a budget of 5 frames' bytes
    video = tiny_video(tmp_path / "ten.mp4", 96, 96, frames=10)
    limits = DecodeLimits(max_decoded_bytes=5 * 96 * 96 * 3)

    # When decoded, Then the sixth frame is refused as oversized
    frames = []
    with pytest.raises(OversizedMedia, match="bytes of decoded frames"):
        frames.extend(AvatarReader(video, still_fps=25, limits=limits).frames())
    assert len(frames) == 5


def test_a_1000_fps_avatar_is_refused(tmp_path: Path) -> None:
    # Given 10 frames at 1000 fps (a minute of speech would be 60 000 frames to render)
    video = tiny_video(tmp_path / "fast.mp4", 64, 64, frames=10, fps=1000)

    # When decoded, Then the frame rate is refused
    with pytest.raises(Exception, match="frame rate 1000 is above the limit of 60"):
        list(AvatarReader(video, still_fps=25).frames())


def test_decoding_stops_when_asked(tmp_path: Path) -> None:
    # Given a 10-frame video and a stop that turns true after 3 frames (cancel, deadline,
    # lease lost)
    video = tiny_video(tmp_path / "ten.mp4", 96, 96, frames=10)
    frames: list[np.ndarray] = []

    # When decoded, Then it stops with Interrupted at the next frame
    reader = AvatarReader(video, still_fps=25, should_stop=lambda: len(frames) >= 3)
    with pytest.raises(Interrupted):
        frames.extend(reader.frames())
    assert len(frames) == 3


def test_a_16_bit_16000_square_png_is_refused_from_its_header_without_allocating(
    tmp_path: Path,
) -> None:
    # Given a 2 KB PNG declaring 16000x16000 16-bit pixels (FFmpeg's probe allocates 512 MB)
    png = deep_png(tmp_path / "deep.png", 16_000, 16_000, rows=64)
    code = (
        "import re, sys; from pathlib import Path;"
        "from runtime.worker.inputs import check_avatar; from runtime.worker.media_errors import"
        " MediaError\ntry: check_avatar(Path(sys.argv[1]), int(sys.argv[2]))\n"
        "except MediaError as e: print(e.code.value)\n"  # VmHWM: this process's peak (not
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])"
        " // 1024)"  # ru_maxrss, which keeps the forking parent's across exec)
    )
    # When checked in a child process against the default limit
    child = subprocess.run(
        [sys.executable, "-c", code, str(png), str(DEFAULT_LIMITS.max_video_pixels)],
        capture_output=True,
        text=True,
        check=True,
    )
    # Then it is MEDIA_TOO_LARGE and the process never grew anywhere near 512 MB
    verdict, peak_mib = child.stdout.split()
    assert verdict == "MEDIA_TOO_LARGE"
    assert int(peak_mib) < 300


@pytest.mark.parametrize("kind", ["png", "mp4"])
def test_a_2x2_avatar_is_invalid_media_before_the_detector_sees_it(
    tmp_path: Path, kind: str
) -> None:
    # Given a 2x2 avatar (S3FD raised on it and the job was retried as transient)
    avatar = (
        tiny_png(tmp_path / "tiny.png", 2)
        if kind == "png"
        else tiny_video(tmp_path / "tiny.mp4", 2, 2)
    )

    # When checked, Then it is a permanent INVALID_MEDIA naming the minimum
    with pytest.raises(MediaError) as refused:
        check_avatar(avatar, DEFAULT_LIMITS.max_video_pixels)
    assert refused.value.code is ErrorCode.INVALID_MEDIA
    assert "minimum" in str(refused.value)
    # and the engine's reader refuses it too
    with pytest.raises(Exception, match="minimum"):
        list(AvatarReader(avatar, still_fps=25, limits=decode_limits(DEFAULT_LIMITS)).frames())


def test_the_hostile_media_corpus_never_crashes_and_ends_in_documented_codes(
    tmp_path: Path,
) -> None:
    # Given every hostile audio and avatar shape of the generator
    paths = [
        make(tmp_path / f"{prefix}-{name}{suffix}")
        for prefix, corpus in (("audio", audio_corpus()), ("avatar", avatar_corpus()))
        for name, (suffix, make) in corpus.items()
    ]

    # When the worker's checks and the engine's decoders run over them in a child process
    results = run_corpus(paths)

    # Then no case crashed the process, and each ended in a documented code (or success)
    assert set(results) == {path.name for path in paths}
    crashed = {name: r for name, r in results.items() if "process" in r}
    assert crashed == {}
    undocumented = {n: r for n, r in results.items() if r["pipeline"] not in DOCUMENTED}
    assert undocumented == {}
    print(json.dumps(Counter(r["pipeline"] for r in results.values())))
