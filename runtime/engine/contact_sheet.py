"""A contact sheet of a render: what the engine saw and made for a few frames, in one PNG.

Rows: the source crop (the face box the model works on), the blend mask (how much of the
generated face is pasted, after silence fading), the generated face (the VAE's decode of the
UNet's output) and the blended result (what the output frame shows in that box). Columns: a few
frames spread over the frames that carry generated pixels (over all frames when none do).

It is the first thing to look at when a render looks wrong, and `findings` says in one sentence
why the lips move or not: no speech, no face, an empty mask (the face parser found no face
pixels, as with random weights), or how many frames carry the generated mouth. It reuses the
engine's own stages (`speak`'s generation and `ResidentAvatar.blend`), on the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from runtime.engine.audio import frame_count, load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.options import RenderOptions

TILE = 160
LABEL_WIDTH = 150
HEADER = 34
ROWS = ("source crop", "blend mask", "generated face", "blended result")


@dataclass(frozen=True)
class Findings:
    frames: int  # output frames of the render
    speech_frames: int  # frames whose audio window touches speech (all, without skipping)
    face_frames: int  # output frames whose source frame has a face box
    blended_frames: int  # frames that carry generated pixels (speech, a face, a non-empty mask)
    mask_coverage: float  # mean share of the face box the blend mask covers, over faced frames
    weights: str
    lips_move: bool
    verdict: str
    columns: list[int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_contact_sheet(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    audio: Path,
    out_png: Path,
    *,
    skip_silence: bool = True,
    columns: int = 4,
) -> Findings:
    """Render the sheet for `audio` on `avatar` to `out_png` (`skip_silence` as the render had
    it); returns what it found."""
    audio_16k = load_audio_16k(audio)
    total = frame_count(len(audio_16k), avatar.fps)
    tokens = engine.audio_encoder.frame_tokens(audio_16k, avatar.fps)
    weights = engine.frame_weights(
        audio_16k, total, avatar.fps, RenderOptions(skip_silence=skip_silence)
    )
    sources = np.array([avatar.cycle_index(i) for i in range(total)], dtype=np.int64)
    covered = np.array([float((mask > 0).mean()) if mask.size else 0.0 for mask in avatar.masks])
    faced = avatar.has_face[sources]
    blended = (weights > 0) & faced & (covered[sources] > 0)
    pool = np.flatnonzero(blended)
    if not len(pool):
        pool = np.flatnonzero(faced) if faced.any() else np.arange(total)
    picks = np.unique(
        pool[np.linspace(0, len(pool) - 1, min(columns, len(pool))).round().astype(int)]
    )
    tiles = _tiles(engine, avatar, tokens, weights, picks)
    cv2.imwrite(str(out_png), _sheet(tiles, picks, avatar.fps))
    coverage = float(covered[avatar.has_face].mean()) if avatar.has_face.any() else 0.0
    findings = Findings(
        frames=total,
        speech_frames=int((weights > 0).sum()),
        face_frames=int(faced.sum()),
        blended_frames=int(blended.sum()),
        mask_coverage=round(coverage, 4),
        weights=engine.weights,
        lips_move=bool(blended.any()) and engine.weights != "random",
        verdict="",
        columns=[int(i) for i in picks],
    )
    return Findings(**{**asdict(findings), "verdict": verdict(findings)})


def verdict(found: Findings) -> str:
    """Why the lips move or not, in one sentence a user can act on."""
    if found.speech_frames == 0:
        return (
            "the lips do not move: the voice activity detector found no speech in the audio, so "
            "every frame is the avatar's own (skip silence is on)"
        )
    if found.face_frames == 0:
        return (
            "the lips do not move: no face was found in the avatar, so every frame passes through"
        )
    if found.blended_frames == 0:
        why = (
            " (random weights: their face parser's output is noise)"
            if found.weights == "random"
            else ""
        )
        return (
            "the lips do not move: the face parser found no face pixels, so the blend mask is "
            f"empty and the output equals the input{why}"
        )
    share = f"{found.blended_frames} of {found.frames} frames carry the generated mouth"
    if found.weights == "random":
        return (
            f"{share}, but the weights are random: the face box, the mask and the mouth are "
            "noise, not a face speaking (fetch the official weights: musetalk fetch-weights)"
        )
    return f"the lips follow the speech: {share} (mask covers {found.mask_coverage:.0%} of the box)"


@torch.inference_mode()
def _tiles(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    tokens: torch.Tensor,
    weights: np.ndarray,
    picks: np.ndarray,
) -> list[list[np.ndarray]]:
    """Per picked frame, the four BGR tiles (the same generation and blend as `speak`)."""
    resident = engine.resident_avatar(avatar)
    cycle = np.array([avatar.cycle_index(int(i)) for i in picks], dtype=np.int64)
    sources = torch.from_numpy(cycle).to(engine.device)
    audio = tokens[torch.from_numpy(picks).to(tokens.device)].to(engine.device, engine.dtype)
    predicted = engine.generator.step(
        resident.latents[sources],
        audio + engine._positional,
    )
    faces_rgb = engine.codec.decode(predicted)[: len(picks)]
    fade = torch.from_numpy(weights[picks].astype(np.float32)).to(engine.device)
    regions = resident.blend(faces_rgb.flip(1), sources, fade).cpu().numpy()
    masks = resident.masks[sources].cpu().numpy()
    faces_bgr = faces_rgb.flip(1).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for k, source in enumerate(cycle):
        height, width = (int(v) for v in resident.sizes[source])
        if not avatar.has_face[source]:
            frame = avatar.frames[source]
            blank = np.zeros_like(frame)
            out.append([_fit(frame), _fit(blank), _fit(blank), _fit(frame)])
            continue
        source_region = resident.regions[source, :height, :width].cpu().numpy()
        mask = (masks[k, :height, :width].astype(np.float32) * float(weights[picks[k]])).astype(
            np.uint8
        )
        out.append(
            [
                _fit(source_region),
                _fit(cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR)),
                _fit(faces_bgr[k]),
                _fit(regions[k, :height, :width]),
            ]
        )
    return out


def _fit(image: np.ndarray) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(image), (TILE, TILE), interpolation=cv2.INTER_AREA)


def _sheet(tiles: list[list[np.ndarray]], picks: np.ndarray, fps: float) -> np.ndarray:
    width = LABEL_WIDTH + TILE * len(tiles)
    sheet = np.full((HEADER + TILE * len(ROWS), width, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for column, frame in enumerate(picks):
        x = LABEL_WIDTH + column * TILE
        label = f"frame {int(frame)} ({int(frame) / fps:.2f} s)"
        cv2.putText(sheet, label, (x + 6, 22), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for row, tile in enumerate(tiles[column]):
            sheet[HEADER + row * TILE : HEADER + (row + 1) * TILE, x : x + TILE] = tile
    for row, name in enumerate(ROWS):
        y = HEADER + row * TILE + TILE // 2
        cv2.putText(sheet, name, (8, y), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
