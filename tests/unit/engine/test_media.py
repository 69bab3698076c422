"""PyAV decode and the streaming mp4 writer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.engine.audio import load_audio_16k
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine_contract import Failure, MediaError
from runtime.engine.media import VideoWriter
from runtime.engine.video_encoding import pick_video_codec
from tests.unit.engine.conftest import (
    MEDIA,
    SMALL_SIZE,
    count_frames,
    decode_frames,
    write_video,
)


def test_video_decodes_to_bgr_frames_at_the_stream_fps(short_video: Path) -> None:
    video = decode_avatar(short_video, still_fps=30)
    assert len(video.frames) == 12
    assert video.frames[0].shape == (SMALL_SIZE[1], SMALL_SIZE[0], 3)
    assert video.fps == 25.0  # the stream's rate, not the still-image fps
    assert not video.is_still


def test_a_video_longer_than_the_limit_is_too_large(short_video: Path) -> None:
    assert len(decode_avatar(short_video, still_fps=25, max_frames=12).frames) == 12
    with pytest.raises(MediaError) as raised:
        decode_avatar(short_video, still_fps=25, max_frames=11)
    assert raised.value.failure == Failure.MEDIA_TOO_LARGE


def test_a_video_below_one_fps_is_invalid(tmp_path: Path) -> None:
    frames = [np.full((16, 16, 3), 128, np.uint8)] * 2
    path = write_video(tmp_path / "slow.mp4", frames, fps=Fraction(1, 2))
    with pytest.raises(MediaError) as raised:
        decode_avatar(path, still_fps=25)
    assert raised.value.failure == Failure.INVALID_MEDIA


def test_still_image_is_one_frame_at_the_requested_fps() -> None:
    video = decode_avatar(MEDIA / "musk.png", still_fps=30)
    assert len(video.frames) == 1
    assert video.frames[0].shape == (266, 474, 3)
    assert video.fps == 30.0
    assert video.is_still


def test_frames_are_bgr(tmp_path: Path) -> None:
    # Given a pure red PNG (RGB 255, 0, 0)
    path = tmp_path / "red.png"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 8, 8, "rgb24"
        frame = np.zeros((8, 8, 3), np.uint8)
        frame[..., 0] = 255
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    # Then the decoded frame has red in the last channel
    [decoded] = decode_avatar(path, still_fps=25).frames
    assert decoded[0, 0].tolist() == [0, 0, 255]


def test_corrupt_avatar_is_invalid_media(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(MediaError) as raised:
        decode_avatar(path, still_fps=25)
    assert raised.value.failure == Failure.INVALID_MEDIA


def test_audio_only_file_is_not_an_avatar() -> None:
    with pytest.raises(MediaError) as raised:
        decode_avatar(MEDIA / "yongen.wav", still_fps=25)
    assert raised.value.failure == Failure.INVALID_MEDIA


def test_writer_streams_h264_with_the_audio_muxed(tmp_path: Path, short_speech: Path) -> None:
    # Given 20 frames of a moving gradient with odd dimensions
    frames = [np.full((61, 81, 3), 10 * i, np.uint8) for i in range(20)]
    out = tmp_path / "out.mp4"
    # When they are written with the speech clip
    with VideoWriter(out, width=81, height=61, fps=25.0, audio_path=short_speech) as writer:
        for frame in frames:
            writer.write(frame)
    # Then the mp4 has 20 H.264 yuv420p frames at 25 fps (cropped to even size) and AAC audio
    count, has_audio, fps = count_frames(out)
    assert (count, has_audio, fps) == (20, True, 25.0)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.width, video.height) == (80, 60)
        assert video.codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"
    # and the levels survive encoding (frame 10 is grey 100)
    assert abs(float(decode_frames(out)[10].mean()) - 100) < 1
    # and the whole speech is there (encoded beside the video), interleaved with the video
    with av.open(str(out)) as container:
        kinds = [packet.stream.type for packet in container.demux() if packet.size]
        audio = container.streams.audio[0]
        audio_seconds = float(audio.duration * audio.time_base)
    assert kinds.index("audio") < len(kinds) - 1 - kinds[::-1].index("video")
    speech_seconds = len(load_audio_16k(short_speech)) / 16000
    assert audio_seconds == pytest.approx(speech_seconds, abs=0.1)


def test_writer_error_in_the_with_block_removes_the_partial_file(
    tmp_path: Path, short_speech: Path
) -> None:
    out = tmp_path / "partial.mp4"

    def write_then_fail() -> None:
        with VideoWriter(out, width=32, height=32, fps=25, audio_path=short_speech) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        write_then_fail()
    assert not out.exists()


def test_cpu_rendering_uses_libx264() -> None:
    assert pick_video_codec(prefer_gpu=False) == "libx264"
