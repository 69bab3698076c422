"""The faces and shapes `official_compare.py` runs: real media and variants generated from it.

Each case is a media file written to a scratch folder (a still, an odd-sized still, a short
clip) plus where its face is, as fractions of the frame. With random face-model weights the
detectors find nothing meaningful, so the end-to-end runs feed both implementations the same
face-like DWPose landmarks and S3FD box at that place (`injected_faces`); the landmark box rule,
`bbox_shift` and everything after run for real on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"
CLIP_FRAMES = 3  # source frames of the video case (the avatar cycles them: 6 per cycle)


@dataclass(frozen=True)
class Face:
    """Where the face is: centre between the eyes and the nose, and a radius (fractions of the
    frame's width, height and width)."""

    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class Case:
    name: str
    media: Path  # a still (png) or a clip (mp4)
    frames: list[np.ndarray]  # BGR, as both sides read them
    face: Face
    bbox_shift: int = 0
    # The boxes of the (random) face models instead of the injected face: small boxes on
    # smooth background, upscaled to 256, the flattest crops (where precision shows first).
    detector: bool = False

    @property
    def is_video(self) -> bool:
        return self.media.suffix == ".mp4"


MUSK_FACE = Face(cx=0.45, cy=0.43, r=0.12)
YONGEN_FACE = Face(cx=0.52, cy=0.35, r=0.12)


def build_cases(root: Path, names: list[str] | None = None) -> list[Case]:
    """Write each case's media under `root`; `names` selects (default: all)."""
    root.mkdir(parents=True, exist_ok=True)
    musk = _read_image(MEDIA / "musk.png")
    odd = cv2.resize(musk, (365, 205), interpolation=cv2.INTER_AREA)  # odd width and height
    dim = cv2.convertScaleAbs(musk, alpha=0.4, beta=0)  # a dim portrait
    # The odd-sized still between flat white bars (an export padded to a wider frame)
    bars = cv2.copyMakeBorder(odd, 0, 0, 60, 61, cv2.BORDER_CONSTANT, value=(240, 240, 240))
    clip = _clip_frames(CLIP_FRAMES, scale=0.5)
    cases = {
        "still": lambda: _still(root, "still", musk, MUSK_FACE),
        "still-odd": lambda: _still(root, "still-odd", odd, MUSK_FACE),
        "still-det": lambda: replace(_still(root, "still-det", musk, MUSK_FACE), detector=True),
        "pillarbox-det": lambda: replace(
            _still(root, "pillarbox-det", bars, MUSK_FACE), detector=True
        ),
        "video-det": lambda: replace(_video(root, "video-det", clip, YONGEN_FACE), detector=True),
        "still-dim": lambda: _still(root, "still-dim", dim, MUSK_FACE),
        "video": lambda: _video(root, "video", clip, YONGEN_FACE),
        "video-shift-40": lambda: _video(root, "video-shift-40", clip, YONGEN_FACE, -40),
        "still-shift+40": lambda: _still(root, "still-shift+40", musk, MUSK_FACE, 40),
    }
    unknown = set(names or []) - set(cases)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)} (of {sorted(cases)})")
    return [cases[name]() for name in (names or list(cases))]


def _still(root: Path, name: str, image: np.ndarray, face: Face, shift: int = 0) -> Case:
    # The official realtime flow takes a still as a folder of PNGs; ours takes the file.
    folder = root / name
    folder.mkdir(exist_ok=True)
    path = folder / "00000000.png"
    cv2.imwrite(str(path), image)
    return Case(name, path, [_read_image(path)], face, shift)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:  # OpenCV returns None for a missing or unreadable file
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def _video(root: Path, name: str, frames: list[np.ndarray], face: Face, shift: int = 0) -> Case:
    path = root / f"{name}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    capture = cv2.VideoCapture(str(path))  # what the official video2imgs reads
    decoded = []
    while (read := capture.read())[0]:
        decoded.append(read[1])
    return Case(name, path, decoded, face, shift)


def _clip_frames(count: int, scale: float) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(MEDIA / "yongen.mp4"))
    frames: list[np.ndarray] = []
    while len(frames) < count and (read := capture.read())[0]:
        frames.append(cv2.resize(read[1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return frames


def face_landmarks(width: int, height: int, face: Face) -> np.ndarray:
    """68 iBUG-ordered points of a plausible frontal face at `face` (float32 pixels)."""
    cx, cy, r = width * face.cx, height * face.cy, width * face.r
    jaw = [(cx + r * math.cos(a), cy + 1.2 * r * math.sin(a)) for a in np.linspace(0, math.pi, 17)]
    brows = [(cx - r * 0.8 + i * r * 0.18, cy - r * 0.55) for i in range(10)]
    bridge = [(cx, cy - r * 0.45 + i * r * 0.17) for i in range(4)]  # 27..30
    nostrils = [(cx - r * 0.2 + i * r * 0.1, cy + r * 0.2) for i in range(5)]
    eyes = [(cx + s * r * (0.25 + 0.05 * i), cy - r * 0.35) for s in (-1, 1) for i in range(6)]
    lips = [
        (cx + r * 0.4 * math.cos(a), cy + r * 0.6 + r * 0.15 * math.sin(a))
        for a in np.linspace(0, 2 * math.pi, 20, endpoint=False)
    ]
    points = np.array(jaw[::-1] + brows + bridge + nostrils + eyes + lips, dtype=np.float32)
    assert points.shape == (68, 2)
    return points


def detected_box(width: int, height: int, face: Face) -> tuple[int, int, int, int]:
    """The S3FD box to inject: the face with some forehead and chin, clipped to the frame."""
    cx, cy, r = width * face.cx, height * face.cy, width * face.r
    return (
        max(0, int(cx - 1.3 * r)),
        max(0, int(cy - 1.3 * r)),
        min(width, int(cx + 1.3 * r)),
        min(height, int(cy + 1.5 * r)),
    )


def int_box(values: Sequence[int] | np.ndarray) -> tuple[int, int, int, int]:
    """A box (x1, y1, x2, y2) as plain ints, from upstream's list or our array row."""
    x1, y1, x2, y2 = (int(v) for v in values)
    return x1, y1, x2, y2


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
