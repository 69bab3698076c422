"""The encoding the engine reports (a worker resumes a render's segments only under the same one)
follows the encoder its writer picks: NVENC where it opens on a CUDA device, else libx264 with
the engine's preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime.engine import video_encoding
from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import SegmentPlan, segment_file_name
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.video_encoding import VideoEncoding, pick_video_encoding

NO_SKIP = RenderOptions(skip_silence=False)


def test_the_encoding_names_the_codec_and_only_libx264s_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a machine where NVENC opened (the process-wide probe's result)
    monkeypatch.setattr(video_encoding, "_nvenc_usable", True)
    # Then a GPU render encodes with it, whatever the preset (NVENC ignores x264's presets)
    assert pick_video_encoding(prefer_gpu=True, preset="veryfast").name == "h264_nvenc"
    # and a CPU render with libx264 and its preset
    assert pick_video_encoding(prefer_gpu=False, preset="veryfast") == VideoEncoding(
        "libx264", "veryfast"
    )
    assert pick_video_encoding(prefer_gpu=False, preset="veryfast").name == "libx264/veryfast"
    # Given one where it did not open
    monkeypatch.setattr(video_encoding, "_nvenc_usable", False)
    # Then a GPU render falls back to libx264 with the preset
    assert pick_video_encoding(prefer_gpu=True, preset="ultrafast").name == "libx264/ultrafast"


@pytest.mark.parametrize(
    ("device", "nvenc_opens", "expected"),
    [
        ("cuda", True, "h264_nvenc"),
        ("cuda", False, f"libx264/{DEFAULT_PRESET}"),
        ("cpu", True, f"libx264/{DEFAULT_PRESET}"),
    ],
)
def test_the_engine_reports_the_encoding_its_writer_uses(
    engine: MuseTalkEngine,
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    nvenc_opens: bool,
    expected: str,
) -> None:
    # Given the engine on a device (only its type matters to the choice; this host has no
    # CUDA) where NVENC opens or not
    monkeypatch.setattr(engine, "device", torch.device(device))
    monkeypatch.setattr(video_encoding, "_nvenc_usable", nvenc_opens)
    # Then it reports the encoding `speak` writes with
    assert engine.output_encoding == expected
    assert engine.video_encoding.name == expected


def test_the_reported_preset_is_the_engines(
    engine: MuseTalkEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the engine set to another libx264 preset, on a host without NVENC
    monkeypatch.setattr(engine, "encoder_preset", "ultrafast")
    monkeypatch.setattr(video_encoding, "_nvenc_usable", False)
    monkeypatch.setattr(engine, "device", torch.device("cuda"))
    # Then the encoding names that preset
    assert engine.output_encoding == "libx264/ultrafast"


def x264_cabac(path: Path) -> bytes:
    """The `cabac=` setting x264 wrote into its SEI of an H.264 file (0: ultrafast's CAVLC)."""
    data = path.read_bytes()
    start = data.index(b"cabac=") + len(b"cabac=")
    return data[start : start + 1]


def test_the_segments_are_written_with_the_reported_encoding(
    engine: MuseTalkEngine,
    short_video: Path,
    short_speech: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the engine reporting ultrafast, then the default preset
    avatar = engine.prepare(short_video, AvatarOptions())
    written = {}
    for preset in ("ultrafast", DEFAULT_PRESET):
        monkeypatch.setattr(engine, "encoder_preset", preset)
        assert engine.output_encoding == f"libx264/{preset}"
        # When it renders in segments
        plan = SegmentPlan(directory=tmp_path / preset, frames_per_segment=8)
        engine.speak(
            avatar, short_speech, tmp_path / f"{preset}.mp4", options=NO_SKIP, segments=plan
        )
        written[preset] = x264_cabac(tmp_path / preset / segment_file_name(0))
    # Then each segment carries its preset's stream parameters (ultrafast's without CABAC)
    assert written == {"ultrafast": b"0", DEFAULT_PRESET: b"1"}
