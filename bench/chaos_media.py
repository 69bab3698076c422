"""The chaos run's media: distinct faces and tones for the kill jobs, a few speech contents for
the flood, and the poison inputs (each carrying a marker that must never reach a log)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2

from bench.chaos_config import ChaosConfig
from bench.poison_media import flat_png, huge_png, silent_wav, tone_wav

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"


@dataclass(frozen=True)
class Media:
    avatar: Path
    kill_avatars: list[Path]
    contents: list[Path]
    kill_audio: list[Path]
    poisons: dict[str, tuple[Path, Path]]  # name -> (avatar, audio)
    marker: str  # embedded in poison files: must never show up in a log


def make_media(config: ChaosConfig, folder: Path) -> Media:
    folder.mkdir(parents=True, exist_ok=True)
    marker = f"CHAOS-CONTENT-{uuid.uuid4().hex}"
    face = cv2.imread(str(MEDIA / "musk.png"))
    if face is None:
        raise FileNotFoundError(MEDIA / "musk.png")
    kill_avatars = []
    for index in range(config.kill_jobs):
        variant = face.copy()
        variant[0, 0] = (index, index, index)  # distinct bytes: each is prepared afresh
        path = folder / f"face-{index}.png"
        cv2.imwrite(str(path), variant)
        kill_avatars.append(path)
    contents = [
        tone_wav(folder / f"speech-{i}.wav", config.audio_seconds, 180.0 + 37 * i)
        for i in range(config.flood_contents)
    ]
    kill_audio = [
        tone_wav(folder / f"kill-speech-{i}.wav", config.audio_seconds, 900.0 + 41 * i)
        for i in range(config.kill_jobs)
    ]
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes((marker.encode() + os.urandom(61)) * 64)
    png_as_audio = folder / "not-audio.wav"
    png_as_audio.write_bytes((MEDIA / "musk.png").read_bytes() + marker.encode())
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    speech = contents[0]
    poisons = {
        "corrupt video": (corrupt, speech),
        "audio without speech": (MEDIA / "musk.png", silent_wav(folder / "silence.wav", 1.0)),
        "video without a face": (flat_png(folder / "flat.png"), speech),
        "huge dimensions": (huge_png(folder / "huge.png", 4500, 4500), speech),
        "PNG behind an audio upload": (MEDIA / "musk.png", png_as_audio),
        "zero-length audio": (MEDIA / "musk.png", empty),
    }
    return Media(
        avatar=MEDIA / "musk.png",
        kill_avatars=kill_avatars,
        contents=contents,
        kill_audio=kill_audio,
        poisons=poisons,
        marker=marker,
    )
