"""Preparation in chunks with its stages overlapped on threads (`preparing.py`), on CPU with
tiny weights: the overlapped path must give exactly what the stage-after-stage path gives."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine import aot
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import Failure, MediaError
from runtime.engine.latents import LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions
from runtime.engine.preparing import Stages, prepare_frames
from tests.unit.engine.standins import Box, CentreLocator, LowerHalfParser, Mask
from tests.unit.engine.test_engine import with_parts


class RunningLocator(CentreLocator):
    """CentreLocator whose faceless frames are counted across calls (chunks), not per call."""

    def __init__(self, faceless: Sequence[int] = (), fail_after: int | None = None) -> None:
        super().__init__()
        self.faceless_frames = set(faceless)
        self.fail_after = fail_after
        self.seen = 0

    def locate(
        self,
        frames_bgr: Sequence[np.ndarray],
        *,
        bbox_shift: int,
        extra_margin: int,
        batch_size: int = 8,
    ) -> list[Box | None]:
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("detector broke")
        boxes = super().locate(
            frames_bgr, bbox_shift=bbox_shift, extra_margin=extra_margin, batch_size=batch_size
        )
        first, self.seen = self.seen, self.seen + len(frames_bgr)
        return [None if first + i in self.faceless_frames else b for i, b in enumerate(boxes)]


def assert_same_avatar(a: PreparedAvatar, b: PreparedAvatar) -> None:
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.boxes, b.boxes)
    assert np.array_equal(a.has_face, b.has_face)
    assert np.array_equal(a.latents, b.latents)
    assert len(a.masks) == len(b.masks)
    assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks, strict=True))
    assert (a.fps, a.source_sha256, a.options) == (b.fps, b.source_sha256, b.options)


def prepare_with_faceless_frames(
    engine: MuseTalkEngine, video: Path, **how: object
) -> PreparedAvatar:
    """`video` prepared as `how` says by `engine` with a locator that finds no face in frames
    2 and 9."""
    custom = with_parts(engine, locator=RunningLocator(faceless=(2, 9)))
    return custom.prepare(video, AvatarOptions(), **how)  # type: ignore[arg-type]


def test_overlapped_chunks_give_the_same_avatar_as_stage_after_stage(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given an engine whose locator finds no face in frames 2 and 9 of the 12-frame clip
    prepare = partial(prepare_with_faceless_frames, engine, short_video)

    # When it is prepared in chunks of 5 overlapped on threads, in the same chunks one stage
    # after another, and as the CPU default (one chunk, in order)
    overlapped = prepare(overlap=True, chunk_frames=5)
    in_order = prepare(overlap=False, chunk_frames=5)
    default = prepare()

    # Then the overlapped avatar is exactly the in-order one, faceless frames in their places
    assert_same_avatar(overlapped, in_order)
    assert overlapped.has_face.tolist() == [i not in (2, 9) for i in range(12)]
    assert not overlapped.latents[[2, 9]].any()
    assert overlapped.latents[[0, 11]].any()
    assert overlapped.masks[2].size == 0
    # and the one-chunk default differs from the chunked runs only by the VAE's batch size
    assert np.array_equal(default.boxes, overlapped.boxes)
    assert np.allclose(default.latents, overlapped.latents, atol=1e-4)
    # and every stage reported its time
    assert {"decode", "locate", "crop", "vae_encode", "parse", "total"} <= set(
        overlapped.timings_ms
    )


def test_a_failing_stage_fails_the_overlapped_preparation(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given a locator that breaks on the second chunk
    custom = with_parts(engine, locator=RunningLocator(fail_after=4), parser=LowerHalfParser())
    # When the clip is prepared in overlapped chunks of 4, Then its error reaches the caller
    with pytest.raises(RuntimeError, match="detector broke"):
        custom.prepare(short_video, AvatarOptions(), overlap=True, chunk_frames=4)


def test_no_face_in_any_chunk_is_refused(engine: MuseTalkEngine, short_video: Path) -> None:
    # Given a locator that finds no face anywhere
    custom = with_parts(engine, locator=RunningLocator(faceless=range(12)))
    # When it is prepared overlapped, Then NO_FACE
    with pytest.raises(MediaError) as raised:
        custom.prepare(short_video, AvatarOptions(), overlap=True, chunk_frames=5)
    assert raised.value.failure is Failure.NO_FACE


class FramesSeen(LowerHalfParser):
    """LowerHalfParser that records what frames each call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[object] = []

    def blend_masks(self, frames_bgr: object, *args: object, **kwargs: object) -> list[Mask]:
        self.frames.append(frames_bgr)
        return super().blend_masks(frames_bgr, *args, **kwargs)  # type: ignore[arg-type]


def test_device_ops_hand_each_chunk_over_once_as_a_tensor_and_give_the_same_avatar(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given an engine whose locator finds no face in frames 2 and 9 of the 12-frame clip, and a
    # parser that records what it is given
    def prepare(device_ops: bool) -> tuple[PreparedAvatar, list[object], list[object]]:
        locator, parser = RunningLocator(faceless=(2, 9)), FramesSeen()
        given: list[object] = []
        locate = locator.locate

        def locate_seen(frames_bgr: Sequence[np.ndarray], **kwargs: int) -> list[Box | None]:
            given.append(frames_bgr)
            return locate(frames_bgr, **kwargs)

        locator.locate = locate_seen  # type: ignore[method-assign,assignment]
        custom = with_parts(engine, locator=locator, parser=parser)
        prepared = custom.prepare(
            short_video, AvatarOptions(), overlap=True, chunk_frames=5, device_ops=device_ops
        )
        return prepared, given, parser.frames

    # When it is prepared in overlapped chunks of 5 with and without the device ops
    on_device, located, parsed = prepare(device_ops=True)
    on_host, located_on_host, _ = prepare(device_ops=False)

    # Then with them, locate got each chunk as one uint8 NHWC tensor, and the parser only the
    # frames with a face, taken from that tensor
    assert [tuple(t.shape[:1]) for t in located] == [(5,), (5,), (2,)]  # type: ignore[attr-defined]
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in located)
    assert [t.shape[0] for t in parsed] == [4, 4, 2]  # type: ignore[attr-defined]
    assert torch.equal(parsed[0][2], located[0][3])  # type: ignore[index]
    assert all(isinstance(frames, list) for frames in located_on_host)
    # and the avatar is exactly the host path's
    assert_same_avatar(on_device, on_host)


def test_decoding_ahead_gives_the_same_avatar_as_stage_after_stage(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given an engine whose locator finds no face in frames 2 and 9 of the 12-frame clip
    prepare = partial(prepare_with_faceless_frames, engine, short_video)

    # When it is prepared in chunks of 5 in order, with and without decoding ahead on a thread
    ahead = prepare(overlap=False, chunk_frames=5, decode_ahead=True)
    in_order = prepare(overlap=False, chunk_frames=5)

    # Then the avatars are the same, and the decoder's own time and the stages' wait for it
    # are both reported
    assert_same_avatar(ahead, in_order)
    assert ahead.has_face.tolist() == [i not in (2, 9) for i in range(12)]
    assert {"decode", "decode_wait", "locate", "vae_encode", "parse"} <= set(ahead.timings_ms)


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prepare-decode"]


def test_a_failing_stage_while_decoding_ahead_reaches_the_caller_and_stops_the_decoder(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given a locator that breaks on the second chunk
    custom = with_parts(engine, locator=RunningLocator(fail_after=4), parser=LowerHalfParser())
    # When the clip is prepared in chunks of 4, decoding ahead, Then its error reaches the
    # caller, and the decoding thread has ended
    with pytest.raises(RuntimeError, match="detector broke"):
        custom.prepare(
            short_video, AvatarOptions(), overlap=False, chunk_frames=4, decode_ahead=True
        )
    assert decoder_threads() == []


def test_a_decoding_error_while_decoding_ahead_reaches_the_caller() -> None:
    # Given frames whose decoding fails after five, and stages that find no face
    def frames() -> Iterator[np.ndarray]:
        for _ in range(5):
            yield np.zeros((8, 8, 3), np.uint8)
        raise ValueError("corrupt packet")

    def unused(*_: object) -> np.ndarray:
        raise AssertionError("no face, nothing to crop, encode or mask")

    stages = Stages(
        locate=lambda chunk: [None] * len(chunk), crop=unused, encode=unused, masks=unused
    )
    # When they are prepared in chunks of 2, decoding ahead, Then the decoder's error reaches
    # the caller, after the chunks decoded before it went through the stages
    with pytest.raises(ValueError, match="corrupt packet"):
        prepare_frames(
            frames(),
            stages,
            chunk_frames=2,
            overlap=False,
            device=torch.device("cpu"),
            decode_ahead=True,
        )
    assert decoder_threads() == []


def test_a_compiled_preparation_gives_the_same_avatar(
    engine: MuseTalkEngine, short_video: Path, tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given an engine with a codec of its own, its preparation compiled (Dynamo only on CPU)
    codec = LatentCodec(tiny_models.vae_dir, engine.device, engine.dtype)
    compiled = with_parts(engine, codec=codec, locator=RunningLocator(faceless=(2, 9)))
    assert compiled.compile_preparation(backend="eager", cache_dir=tmp_path)
    plain = with_parts(engine, locator=RunningLocator(faceless=(2, 9)))
    # When both prepare the clip
    ours = compiled.prepare(short_video, AvatarOptions(), chunk_frames=5)
    theirs = plain.prepare(short_video, AvatarOptions(), chunk_frames=5)
    # Then the compiled encoder ran in fixed batches and gave the same latents
    assert codec.encode_batch is not None
    assert codec.encoder_channels_last == (engine.device.type == "cuda")
    assert np.array_equal(ours.boxes, theirs.boxes)
    assert np.allclose(ours.latents, theirs.latents, atol=1e-5)
    assert all(np.array_equal(x, y) for x, y in zip(ours.masks, theirs.masks, strict=True))


def test_preparation_stays_eager_where_the_host_cannot_compile(
    engine: MuseTalkEngine, tiny_models: ModelsLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a host without a C++ compiler (as the worker image)
    monkeypatch.setattr(aot, "missing_toolchain", lambda device: "no C++ compiler")
    codec = LatentCodec(tiny_models.vae_dir, engine.device, engine.dtype)
    custom = with_parts(engine, codec=codec)
    # When preparation is to be compiled with Inductor, Then it is not, and the encoder is
    # left as it was
    assert custom.compile_preparation() is False
    assert codec.encode_batch is None
    assert not codec.encoder_channels_last
