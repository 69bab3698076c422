"""Trimmed copies of the sample media, so a CPU-only demo finishes in minutes.

Made with PyAV from examples/media at run time (the repository ships only the originals, with
their MIT notice, which is copied next to the trimmed files).
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "media"
NOTICE = "NOTICE.md"


def trim_video(source: Path, destination: Path, seconds: float, max_side: int = 0) -> Path:
    """The first `seconds` of a video as H.264 at the source frame rate, without audio, scaled
    down so neither side exceeds `max_side` (0: keep the size): face detection on CPU costs in
    proportion to the pixels."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        width, height = _fit(stream.codec_context.width, stream.codec_context.height, max_side)
        with av.open(str(destination), "w") as output:
            encoded = output.add_stream("libx264", rate=rate)
            encoded.width, encoded.height = width, height
            encoded.pix_fmt = "yuv420p"
            limit = round(seconds * rate)
            for index, frame in enumerate(container.decode(stream)):
                if index >= limit:
                    break
                picture = frame.reformat(width=width, height=height, format="yuv420p")
                picture.pts = index
                picture.time_base = 1 / Fraction(rate)
                output.mux(encoded.encode(picture))
            output.mux(encoded.encode(None))
    return destination


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return 2 * round(width * scale / 2), 2 * round(height * scale / 2)  # H.264 wants even sides


def trim_audio(
    source: Path,
    destination: Path,
    seconds: float,
    sample_rate: int = 16_000,
    *,
    start_seconds: float = 0.0,
) -> Path:
    """`seconds` of an audio file from `start_seconds` on, as 16-bit mono WAV at `sample_rate`."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    skip = round(start_seconds * sample_rate)
    limit = round(seconds * sample_rate)
    seen = written = 0
    with av.open(str(source)) as container, av.open(str(destination), "w") as output:
        encoded = output.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        for frame in container.decode(audio=0):
            for chunk in resampler.resample(frame):
                array = chunk.to_ndarray()[:, max(0, skip - seen) :]
                seen += chunk.samples
                array = array[:, : max(0, limit - written)]
                if array.shape[1] == 0:
                    continue
                piece = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(array, dtype=np.int16), format="s16", layout="mono"
                )
                piece.sample_rate = sample_rate
                output.mux(encoded.encode(piece))
                written += array.shape[1]
            if written >= limit:
                break
        output.mux(encoded.encode(None))
    return destination


SPEECH_LEAD_SECONDS = 0.2  # keep a breath before the first word


def speech_start_seconds(source: Path) -> float:
    """Where speech begins in `source`, by the engine's voice activity detector (silero-vad),
    less a short lead; 0 when it finds none. The demo trims from here: the samples open with
    seconds of near-silence, which silence skipping renders as the avatar's own frames."""
    from runtime.engine.audio import load_audio_16k
    from runtime.engine.vad import SpeechDetector

    spans = SpeechDetector().speech_spans(load_audio_16k(source))
    return max(0.0, spans[0][0] - SPEECH_LEAD_SECONDS) if spans else 0.0


def copy_notice(destination_dir: Path) -> None:
    shutil.copyfile(EXAMPLES_DIR / NOTICE, destination_dir / NOTICE)
