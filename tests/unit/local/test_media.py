"""Trimmed sample media: the length asked for, the frame rate kept, the size bounded."""

from __future__ import annotations

from pathlib import Path

import av

from runtime.local.media import EXAMPLES_DIR, copy_notice, trim_audio, trim_video


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
