"""Preparation with whole chunks in lanes (`preparing.prepare_frames(lanes=...)`): the same
avatar as one chunk after another, with chunks really on several threads, and a failing chunk
reaching the caller."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.engine import MuseTalkEngine
from runtime.engine.options import AvatarOptions
from runtime.engine.preparing import PreparedFrames, Stages, prepare_frames
from tests.unit.engine.standins import Box
from tests.unit.engine.test_preparing import assert_same_avatar

FACELESS = (2, 9)  # frames whose value says "no face"


def frames(count: int = 11) -> list[np.ndarray]:
    return [np.full((16, 24, 3), i, np.uint8) for i in range(count)]


class Recorded:
    """Stages that depend only on each frame's content (so any chunk order gives the same
    answer) and record which thread ran each chunk's locate."""

    def __init__(self, fail_on: int | None = None, hold: threading.Barrier | None = None):
        self.threads: list[str] = []
        self.fail_on = fail_on
        self.hold = hold

    def locate(self, chunk: Sequence[np.ndarray]) -> list[Box | None]:
        self.threads.append(threading.current_thread().name)
        if self.hold is not None:  # two chunks must be in their lanes at once to pass
            self.hold.wait(timeout=10)
        values = [int(frame[0, 0, 0]) for frame in chunk]
        if self.fail_on in values:
            raise RuntimeError("detector broke")
        return [None if v in FACELESS else Box(v, 1, v + 4, 9) for v in values]

    def stages(self) -> Stages:
        def crop(frame: np.ndarray, row: np.ndarray) -> np.ndarray:
            return np.full((256, 256, 3), frame[0, 0, 0] + row[0], np.uint8)

        def encode(crops: np.ndarray) -> np.ndarray:
            return np.broadcast_to(
                crops[:, :1, :1, :1].astype(np.float32).reshape(-1, 1, 1, 1),
                (len(crops), 8, 32, 32),
            ).copy()

        def masks(chunk: Sequence[np.ndarray], boxes: Sequence[Box], rows: np.ndarray) -> list:
            return [np.full((2, 3), row[0], np.uint8) for row in rows]

        return Stages(locate=self.locate, crop=crop, encode=encode, masks=masks)


def prepared(recorded: Recorded, **how: object) -> PreparedFrames:
    return prepare_frames(
        iter(frames()),
        recorded.stages(),
        chunk_frames=3,
        overlap=False,
        device=torch.device("cpu"),
        **how,  # type: ignore[arg-type]
    )


def test_chunks_in_two_lanes_give_the_same_avatar_as_one_after_another() -> None:
    # Given stages that answer per frame, and two chunks that must be in flight at once
    in_lanes = Recorded(hold=threading.Barrier(2))
    # When the 11 frames are prepared in chunks of 3 in two lanes, and in order on one thread
    two = prepared(in_lanes, lanes=2)
    one = prepared(Recorded())

    # Then the results are the same, faceless frames in their places
    for field in ("frames", "boxes", "has_face", "latents"):
        assert np.array_equal(getattr(two, field), getattr(one, field)), field
    assert all(np.array_equal(a, b) for a, b in zip(two.masks, one.masks, strict=True))
    assert two.has_face.tolist() == [i not in FACELESS for i in range(11)]
    assert two.latents[5, 0, 0, 0] == 10  # frame 5's crop: its value + its box's x1
    # and the chunks alternated between two lane threads (the barrier held both at once)
    assert sorted(set(in_lanes.threads)) == ["prepare-lane0_0", "prepare-lane1_0"]
    assert len(in_lanes.threads) == 4
    assert {"decode", "decode_wait", "locate", "crop", "vae_encode", "parse"} <= set(two.timings_ms)


def test_a_failing_chunk_in_a_lane_reaches_the_caller_and_the_threads_end() -> None:
    # Given a detector that breaks on frame 7 (the third chunk)
    # When the frames are prepared in two lanes, Then its error reaches the caller
    with pytest.raises(RuntimeError, match="detector broke"):
        prepared(Recorded(fail_on=7), lanes=2)
    # and no lane or decoding thread is left running
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("prepare-lane", "prepare-decode"))]


def test_lanes_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        prepared(Recorded(), lanes=0)


def test_the_engine_prepares_in_lanes_what_it_prepares_in_order(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # When the 12-frame clip is prepared in chunks of 5 in two lanes and in order
    two = engine.prepare(short_video, AvatarOptions(), chunk_frames=5, lanes=2)
    one = engine.prepare(short_video, AvatarOptions(), chunk_frames=5, lanes=1)
    # Then the avatars are the same
    assert_same_avatar(two, one)
