"""Trimmed sample media: the length asked for, the frame rate kept, the size bounded."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from runtime.local.media import (
    EXAMPLES_DIR,
    copy_notice,
    speech_start_seconds,
    trim_audio,
    trim_video,
)


def test_trimmed_video_keeps_the_rate_and_fits_the_bound(tmp_path: Path) -> None:
    video = trim_video(EXAMPLES_DIR / "yongen.mp4", tmp_path / "v.mp4", 0.4, max_side=360)

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 10
        assert stream.average_rate == 25
        assert max(stream.width, stream.height) == 360
        assert stream.width % 2 == 0
        assert stream.height % 2 == 0
        assert not container.streams.audio


def test_trimmed_audio_is_exactly_as_long_as_asked_in_16k_mono(tmp_path: Path) -> None:
    audio = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "a.wav", 1.5)  # 48 kHz stereo in

    with av.open(str(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        assert (stream.sample_rate, stream.channels) == (16_000, 1)
    assert samples == 24_000


def test_the_mit_notice_travels_with_the_copies(tmp_path: Path) -> None:
    copy_notice(tmp_path)
    assert "MIT License" in (tmp_path / "NOTICE.md").read_text()


def test_trimmed_audio_starts_where_asked_sample_for_sample(tmp_path: Path) -> None:
    source = EXAMPLES_DIR / "eng.wav"  # 16 kHz mono s16: no resampling, so samples compare
    audio = trim_audio(source, tmp_path / "a.wav", 0.5, start_seconds=3.1)

    def samples(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])

    start = round(3.1 * 16_000)
    assert np.array_equal(samples(audio), samples(source)[start : start + 8_000])


def test_the_demo_speech_starts_where_the_voice_activity_detector_hears_it() -> None:
    # eng.wav opens with three near-silent seconds (silence skipping would show no generation).
    start = speech_start_seconds(EXAMPLES_DIR / "eng.wav")
    assert 2.5 < start < 3.1
