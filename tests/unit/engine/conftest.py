"""Session fixtures for the engine tests: tiny random weights and short clips of the samples.

Weights are generated once per session; the media are the repository's samples trimmed and
scaled down so every render stays at a few dozen frames on a 2-core machine.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from runtime.engine.audio import SAMPLE_RATE, load_audio_16k
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.layout import ModelsLayout
from runtime.engine.random_weights import make_weights
from tests.unit.engine.standins import CentreLocator, LowerHalfParser

# On a 2-core machine the encoder thread, the VAD and other test processes compete with torch's
# OpenMP pool; spin-waiting threads then make each op several times slower (measured: a 32-channel
# conv 4 ms with one thread, 23 ms with two under load). One intra-op thread is faster here.
torch.set_num_threads(1)

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"
SMALL_SIZE = (176, 304)  # yongen.mp4 is 704x1216 portrait; a quarter keeps the shape


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> ModelsLayout:
    return make_weights(tmp_path_factory.mktemp("models"), tiny=True, seed=0)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def write_video(path: Path, frames: list[np.ndarray], fps: int | Fraction = 25) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # exact levels, as the engine
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
        container.mux(stream.encode(None))
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Mono or [channels, n] float samples in [-1, 1] as 16-bit PCM WAV."""
    planar = np.atleast_2d(samples)
    pcm = np.clip(planar * 32767, -32768, 32767).astype(np.int16)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout=layout)
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def short_video(media_dir: Path) -> Path:
    """The first 12 frames of yongen.mp4 at a quarter size (25 fps)."""
    frames = []
    with av.open(str(MEDIA / "yongen.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(cv2.resize(frame.to_ndarray(format="bgr24"), SMALL_SIZE))
            if len(frames) == 12:
                break
    return write_video(media_dir / "yongen-12.mp4", frames)


@pytest.fixture(scope="session")
def three_frame_video(media_dir: Path, short_video: Path) -> Path:
    """The first 3 frames of `short_video`: full-size face models on CPU cost seconds a frame."""
    with av.open(str(short_video)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return write_video(media_dir / "yongen-3.mp4", frames[:3])


@pytest.fixture(scope="session")
def speech_16k() -> np.ndarray:
    return load_audio_16k(MEDIA / "yongen.wav")


@pytest.fixture(scope="session")
def short_speech(media_dir: Path, speech_16k: np.ndarray) -> Path:
    """0.8 s of speech (20 frames at 25 fps), 16 kHz mono."""
    start = int(0.4 * SAMPLE_RATE)
    return write_wav(media_dir / "speech-0.8s.wav", speech_16k[start : start + 12800], SAMPLE_RATE)


@pytest.fixture(scope="session")
def silence_then_speech(media_dir: Path, speech_16k: np.ndarray) -> Path:
    """1.2 s of digital silence, then 0.8 s of speech (50 frames at 25 fps)."""
    start = int(0.4 * SAMPLE_RATE)
    samples = np.concatenate(
        [np.zeros(int(1.2 * SAMPLE_RATE), np.float32), speech_16k[start : start + 12800]]
    )
    return write_wav(media_dir / "silence-speech.wav", samples, SAMPLE_RATE)


@pytest.fixture(scope="session")
def engine(tiny_models: ModelsLayout) -> MuseTalkEngine:
    """The real engine on tiny random weights, with stand-ins for the faces package; device and
    dtype as the strings the worker's settings hold."""
    return MuseTalkEngine.load(
        tiny_models.root,
        "cpu",
        "float32",
        locator=CentreLocator(),
        parser=LowerHalfParser(),
    )


def count_frames(path: Path) -> tuple[int, bool, float]:
    """(decoded video frames, has an audio stream, video fps) of an output file."""
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        fps = float(container.streams.video[0].average_rate or 0)
        frames = sum(1 for _ in container.decode(video=0))
    return frames, has_audio, fps


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def assert_same_video(ours: Path, reference: Path) -> None:
    """Two renders of the same frames: equal frame counts, every frame equal up to H.264 noise.

    A pixel one level apart changes x264's decisions around it, so a few pixels of a frame may
    move by more: at most 0.5% of a frame's values by more than 2 levels, and 0.05 on average.
    Two renders of the same frames (AOT parts against eager) moved 0.05-0.11% of a frame's values
    by more than 2 levels; the frames one step off moved 10-80%: a wrong frame, window or blend
    moves far more.
    """
    assert_same_frames(decode_frames(ours), decode_frames(reference))


def assert_same_frames(ours: list[np.ndarray], reference: list[np.ndarray]) -> None:
    """`assert_same_video` for decoded frames."""
    assert len(ours) == len(reference)
    for index, (a, b) in enumerate(zip(ours, reference, strict=True)):
        difference = np.abs(a.astype(int) - b.astype(int))
        assert (difference > 2).mean() <= 0.005, f"frame {index}"
        assert difference.mean() <= 0.05, f"frame {index}"
