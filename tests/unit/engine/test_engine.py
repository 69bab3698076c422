"""MuseTalkEngine end to end on tiny random weights, with stand-ins for the faces package."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.audio import load_audio_16k, positional_encoding
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.batch_sizes import TAIL_BATCH_SIZE, batch_size_for_memory
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import (
    Failure,
    Interrupted,
    MediaError,
    OutOfMemory,
    PreparedAvatarFormatError,
)
from runtime.engine.frame_compose import crop_face
from runtime.engine.media import VideoWriter
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.yuv import I420Frame
from tests.unit.engine.conftest import (
    MEDIA,
    assert_same_video,
    count_frames,
    decode_frames,
    write_video,
    write_wav,
)
from tests.unit.engine.standins import CentreLocator, LowerHalfParser

NO_SKIP = RenderOptions(skip_silence=False)
AVATAR_FRAMES = 5


def level(index: int) -> int:
    return 20 + 40 * index


@pytest.fixture(scope="module")
def levels_video(media_dir: Path) -> Path:
    """5 frames, each a flat grey of its own level with a gradient 'face' in the middle."""
    # smooth, so H.264 keeps it to within a level or two (noise would not survive encoding)
    yy, xx = np.mgrid[0:60, 0:60]
    face = np.stack([xx * 4, yy * 4, 255 - (xx + yy) * 2], axis=-1).astype(np.uint8)
    frames = []
    for index in range(AVATAR_FRAMES):
        frame = np.full((128, 96, 3), level(index), np.uint8)
        frame[34:94, 18:78] = face
        frames.append(frame)
    return write_video(media_dir / "levels.mp4", frames)


@pytest.fixture(scope="module")
def levels_avatar(engine: MuseTalkEngine, levels_video: Path) -> PreparedAvatar:
    return engine.prepare(levels_video, AvatarOptions())


def with_parts(engine: MuseTalkEngine, **parts: object) -> MuseTalkEngine:
    """The same loaded models with other face parts (or a wrapped generator)."""
    kwargs: dict = {
        "generator": engine.generator,
        "codec": engine.codec,
        "audio_encoder": engine.audio_encoder,
        "locator": engine.locator,
        "parser": engine.parser,
        "scorer": engine.scorer,
        "weights": engine.weights,
        "device": engine.device,
        "dtype": engine.dtype,
    }
    kwargs.update(parts)
    return MuseTalkEngine(**kwargs)


def test_prepare_crops_encodes_and_masks_every_frame(
    engine: MuseTalkEngine, short_video: Path
) -> None:
    # Given a locator and parser that record their options
    locator, parser = CentreLocator(), LowerHalfParser()
    custom = with_parts(engine, locator=locator, parser=parser)
    options = AvatarOptions(bbox_shift=-7, extra_margin=15, blend_mode="neck", mask_blur="realtime")
    # When the 12-frame clip is prepared
    avatar = custom.prepare(short_video, options)
    # Then the face options reach the faces package and every frame has a latent and a mask
    assert locator.calls == [{"bbox_shift": -7, "extra_margin": 15}]
    assert parser.calls == [{"mode": "neck", "blur": "realtime"}]
    assert avatar.frame_count == 12
    assert avatar.latents.shape == (12, 8, 32, 32)
    assert avatar.has_face.all()
    for box, mask in zip(avatar.boxes, avatar.masks, strict=True):
        assert mask.shape == (box[3] - box[1], box[2] - box[0])
    # and the latent is the VAE encoding of the LANCZOS4 256x256 crop of that frame's box
    crop = crop_face(avatar.frames[3], avatar.boxes[3])
    expected = engine.codec.encode_crops(crop[None]).numpy()
    assert np.allclose(avatar.latents[3], expected[0], atol=1e-5)
    assert avatar.fps == 25.0
    assert len(avatar.source_sha256) == 64


def test_render_length_follows_the_audio_and_cycles_the_avatar(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    # Given a 5-frame avatar and 0.8 s of speech (20 frames: four times the video)
    out = tmp_path / "out.mp4"
    reported: list[tuple[int, int]] = []
    # When it speaks
    rendered = engine.speak(
        levels_avatar,
        short_speech,
        out,
        options=NO_SKIP,
        progress=lambda done, total: reported.append((done, total)),
    )
    # Then the mp4 has floor(0.8 * 25) = 20 frames, the audio, and the avatar's fps
    assert count_frames(out) == (20, True, 25.0)
    assert (rendered.frames, rendered.fps, rendered.duration_s) == (20, 25.0, 0.8)
    assert rendered.weights == "random"
    assert rendered.frames_skipped == 0
    # and the frames play ping-pong: 0 1 2 3 4 4 3 2 1 0 0 1 ...
    corners = [int(frame[2, 2].mean()) for frame in decode_frames(out)]
    expected = [level(levels_avatar.cycle_index(i)) for i in range(20)]
    assert expected[:10] == [level(i) for i in (0, 1, 2, 3, 4, 4, 3, 2, 1, 0)]
    assert np.abs(np.array(corners) - np.array(expected)).max() <= 2
    # and progress went up to the total
    assert reported[-1] == (20, 20)
    assert [done for done, _ in reported] == sorted(done for done, _ in reported)
    assert {"audio", "unet", "vae_decode", "blend"} <= set(rendered.timings_ms)


def test_still_image_avatar_renders_from_its_one_frame(
    engine: MuseTalkEngine, short_speech: Path, tmp_path: Path
) -> None:
    # Given the still portrait, prepared and sent through the avatar cache as bytes
    prepared = engine.prepare(MEDIA / "musk.png", AvatarOptions(fps=20))
    restored = engine.load_prepared(prepared.to_bytes())
    out = tmp_path / "still.mp4"
    # When it speaks 0.8 s
    rendered = engine.speak(restored, short_speech, out, options=NO_SKIP)
    # Then 16 frames at the requested 20 fps
    assert rendered.frames == 16
    assert count_frames(out) == (16, True, 20.0)
    # and the mouth region changes (the UNet output is pasted), the top of the frame does not
    source = prepared.frames[0]
    frame = decode_frames(out)[5]
    x1, y1, x2, y2 = prepared.boxes[0]
    mouth = (slice((y1 + y2) // 2 + 4, y2 - 2), slice(x1 + 2, x2 - 2))
    assert np.abs(frame[mouth].astype(int) - source[mouth]).mean() > 10
    assert np.abs(frame[: y1 - 2].astype(int) - source[: y1 - 2, : frame.shape[1]]).mean() < 3


def test_silence_reuses_avatar_frames_and_speech_is_generated(
    engine: MuseTalkEngine,
    levels_avatar: PreparedAvatar,
    silence_then_speech: Path,
    tmp_path: Path,
) -> None:
    # Given 1.2 s of silence then 0.8 s of speech (50 frames)
    out = tmp_path / "vad.mp4"
    # When it speaks with silence skipping
    rendered = engine.speak(
        levels_avatar, silence_then_speech, out, options=RenderOptions(skip_silence=True)
    )
    # Then the frames of deep silence were not generated
    assert rendered.frames == 50
    assert 15 <= rendered.frames_skipped <= 30
    frames = decode_frames(out)
    x1, y1, x2, y2 = levels_avatar.boxes[0]
    lower = (slice((y1 + y2) // 2, y2), slice(x1, x2))

    def changed(i: int) -> float:
        source = levels_avatar.frames[levels_avatar.cycle_index(i)]
        return float(np.abs(frames[i][lower].astype(int) - source[lower]).mean())

    assert changed(0) < 3  # silent: the avatar's own frame
    assert changed(45) > 10  # speech: the generated mouth


def test_frames_without_a_face_pass_through_and_keep_their_place(
    engine: MuseTalkEngine, levels_video: Path, short_speech: Path, tmp_path: Path
) -> None:
    # Given an avatar whose frame 1 has no face
    custom = with_parts(engine, locator=CentreLocator(faceless=[1]))
    avatar = custom.prepare(levels_video, AvatarOptions())
    assert avatar.has_face.tolist() == [True, False, True, True, True]
    out = tmp_path / "faceless.mp4"
    # When it speaks
    rendered = custom.speak(avatar, short_speech, out, options=NO_SKIP)
    # Then every output frame showing source frame 1 is that frame, unchanged
    frames = decode_frames(out)
    assert rendered.frames == len(frames) == 20
    for i, frame in enumerate(frames):
        source_index = avatar.cycle_index(i)
        difference = np.abs(frame.astype(int) - avatar.frames[source_index]).mean()
        if source_index == 1:
            assert difference < 2, i
        else:
            assert abs(int(frame[2, 2].mean()) - level(source_index)) <= 2, i


def test_no_face_in_any_frame_is_a_no_face_error(
    engine: MuseTalkEngine, levels_video: Path
) -> None:
    custom = with_parts(engine, locator=CentreLocator(faceless=range(AVATAR_FRAMES)))
    with pytest.raises(MediaError) as raised:
        custom.prepare(levels_video, AvatarOptions())
    assert raised.value.failure == Failure.NO_FACE


def test_audio_shorter_than_a_frame_is_no_speech(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, tmp_path: Path
) -> None:
    audio = write_wav(tmp_path / "blip.wav", np.zeros(300, np.float32), 16000)
    with pytest.raises(MediaError) as raised:
        engine.speak(levels_avatar, audio, tmp_path / "x.mp4", options=NO_SKIP)
    assert raised.value.failure == Failure.NO_SPEECH


def test_should_stop_interrupts_and_leaves_no_file(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stopped.mp4"
    with pytest.raises(Interrupted):
        engine.speak(levels_avatar, short_speech, out, options=NO_SKIP, should_stop=lambda: True)
    assert not out.exists()


class OomAbove:
    """Wraps the generator: batches larger than `limit` raise CUDA out-of-memory."""

    def __init__(self, generator: object, limit: int) -> None:
        self.generator = generator
        self.limit = limit
        self.sizes: list[int] = []

    def step(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(latents))
        if len(latents) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.generator.step(latents, audio)  # type: ignore[attr-defined]


def test_out_of_memory_halves_the_batch_and_keeps_the_size_that_fits(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    # Given a generator that runs out of memory above 3 frames per batch
    oom = OomAbove(engine.generator, limit=3)
    custom = with_parts(engine, generator=oom)
    halvings: list[int] = []
    # When it speaks with batch size 8
    rendered = custom.speak(
        levels_avatar,
        short_speech,
        tmp_path / "oom.mp4",
        options=NO_SKIP,
        batch_size=8,
        on_oom_halving=halvings.append,
    )
    # Then it halved twice, kept 2 for the rest, and still rendered every frame
    assert halvings == [4, 2]
    assert rendered.batch_size == 2
    assert set(oom.sizes[3:]) == {2}
    assert count_frames(tmp_path / "oom.mp4")[0] == 20


def test_out_of_memory_at_the_minimum_batch_is_reported(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    custom = with_parts(engine, generator=OomAbove(engine.generator, limit=1))
    with pytest.raises(OutOfMemory) as raised:
        custom.speak(
            levels_avatar,
            short_speech,
            tmp_path / "oom.mp4",
            options=NO_SKIP,
            batch_size=8,
            min_batch_size=4,
        )
    assert raised.value.batch_size == 4
    assert not (tmp_path / "oom.mp4").exists()


@dataclass(frozen=True)
class Score:
    confidence: float
    offset_frames: int


class RecordingScorer:
    def __init__(self, confidence: float) -> None:
        self.confidence = confidence
        self.seen: list[tuple[tuple[int, ...], int, float]] = []

    def score(self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float) -> Score:
        self.seen.append((faces_rgb.shape, len(audio_16k), fps))
        return Score(self.confidence, offset_frames=-1)


def test_sync_score_below_the_threshold_marks_low_sync(
    engine: MuseTalkEngine,
    levels_avatar: PreparedAvatar,
    silence_then_speech: Path,
    tmp_path: Path,
) -> None:
    # Given a scorer that reports confidence 0.2
    scorer = RecordingScorer(0.2)
    custom = with_parts(engine, scorer=scorer)
    # When a clip with skipped silence is rendered with threshold 0.3
    rendered = custom.speak(
        levels_avatar,
        silence_then_speech,
        tmp_path / "sync.mp4",
        options=RenderOptions(sync_threshold=0.3),
    )
    # Then every output frame's 256x256 RGB crop was scored, with the 16 kHz audio
    assert scorer.seen == [((50, 256, 256, 3), 32000, 25.0)]
    assert (rendered.sync_confidence, rendered.sync_offset_frames) == (0.2, -1)
    assert rendered.low_sync is True


def test_clips_shorter_than_one_syncnet_window_get_no_score(
    engine: MuseTalkEngine,
    levels_avatar: PreparedAvatar,
    speech_16k: np.ndarray,
    tmp_path: Path,
) -> None:
    # Given 0.6 s of speech: 15 frames, one fewer than SyncNet's 16-frame window
    audio = write_wav(tmp_path / "short.wav", speech_16k[6400 : 6400 + 9600], 16000)
    scorer = RecordingScorer(0.9)
    rendered = with_parts(engine, scorer=scorer).speak(
        levels_avatar, audio, tmp_path / "short.mp4", options=NO_SKIP
    )
    # Then the render succeeds without a score
    assert rendered.frames == 15
    assert scorer.seen == []
    assert (rendered.sync_confidence, rendered.low_sync) == (None, None)


class FailingScorer:
    def score(self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float) -> Score:
        raise ValueError("scorer broke")


def test_a_failing_sync_scorer_does_not_fail_the_render(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored.mp4"
    rendered = with_parts(engine, scorer=FailingScorer()).speak(
        levels_avatar, short_speech, out, options=NO_SKIP
    )
    assert rendered.sync_confidence is None
    assert count_frames(out)[0] == 20


def test_cpu_batch_size_is_the_official_default(engine: MuseTalkEngine) -> None:
    assert engine.pick_batch_size() == 8


def test_gpu_batch_size_grows_with_free_memory_within_bounds() -> None:
    gib = 1024**3
    # fp16 needs half the bytes per frame of fp32
    # 6 GiB free, 1 GiB kept back: 5 GiB / 160 MiB per fp16 frame, / 320 MiB per fp32 frame
    assert batch_size_for_memory(6 * gib, torch.float16) == 32
    assert batch_size_for_memory(6 * gib, torch.float32) == 16
    # never below 1 (OOM halving takes over) and never above 64
    assert batch_size_for_memory(gib // 2, torch.float16) == 1
    assert batch_size_for_memory(140 * gib, torch.float16) == 64


class RecordingGenerator:
    """Passes through to the real generator and keeps what each output frame was given."""

    def __init__(self, generator: object) -> None:
        self.generator = generator
        self.latents: list[torch.Tensor] = []
        self.audio: list[torch.Tensor] = []
        self.batches: list[int] = []  # rows per call

    def step(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(latents))
        self.latents.extend(latents.clone())
        self.audio.extend(audio.clone())
        return self.generator.step(latents, audio)  # type: ignore[attr-defined]


def marked_compiled(engine: MuseTalkEngine) -> tuple[MuseTalkEngine, RecordingGenerator]:
    """The engine's models behind an engine marked compiled, its generator recording its
    inputs (compiling for real is more than CPU CI can afford)."""
    recorder = RecordingGenerator(engine.generator)
    compiled = with_parts(engine, generator=recorder)
    compiled.compiled = True
    return compiled, recorder


def test_each_frame_gets_its_cycle_latent_and_its_audio_window_plus_pe(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    # Given a generator that records its inputs
    recorder = RecordingGenerator(engine.generator)
    custom = with_parts(engine, generator=recorder)
    # When 20 frames are rendered in batches of 3
    custom.speak(levels_avatar, short_speech, tmp_path / "rec.mp4", options=NO_SKIP, batch_size=3)
    # Then frame i used the latent of source frame cycle(i) and audio window i + the PE table
    tokens = engine.audio_encoder.frame_tokens(load_audio_16k(short_speech), 25.0)
    assert len(recorder.latents) == len(recorder.audio) == 20
    for i in (0, 4, 5, 9, 10, 19):
        source = levels_avatar.cycle_index(i)
        assert torch.equal(recorder.latents[i], torch.from_numpy(levels_avatar.latents[source]))
        assert torch.allclose(recorder.audio[i], tokens[i] + positional_encoding(), atol=1e-6)


def test_an_avatar_prepared_by_another_model_version_is_refused(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar
) -> None:
    other = dataclasses.replace(levels_avatar, model_version="musetalk-v1.0")
    with pytest.raises(PreparedAvatarFormatError, match=r"v1\.0"):
        engine.load_prepared(other.to_bytes())


def test_load_takes_device_and_dtype_as_the_worker_settings_spell_them(
    engine: MuseTalkEngine, tiny_models: object
) -> None:
    # Given the session engine, loaded with device "cpu" and dtype "float32" (strings)
    # Then it holds the torch objects
    assert engine.device == torch.device("cpu")
    assert engine.dtype is torch.float32
    # And an unknown dtype is refused by name before any model is read
    with pytest.raises(ValueError, match="dtype 'float99'"):
        MuseTalkEngine.load(Path("/nonexistent"), "cpu", "float99")


def test_a_compiled_engine_pads_the_last_batch_and_renders_the_same_frames(
    engine: MuseTalkEngine, levels_avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    # Given an engine marked compiled (one graph per shape, so short batches are padded)
    padded, recorder = marked_compiled(engine)
    # When 20 frames are rendered in batches of 3, padded and plain
    padded.speak(levels_avatar, short_speech, tmp_path / "pad.mp4", options=NO_SKIP, batch_size=3)
    engine.speak(levels_avatar, short_speech, tmp_path / "plain.mp4", options=NO_SKIP, batch_size=3)
    # Then every UNet call saw a full batch of 3 (7 calls: 21 rows for 20 frames)
    assert len(recorder.latents) == 21
    # and the padding row repeats the first frame of the last batch, never a frame beyond the end
    assert torch.equal(recorder.latents[20], recorder.latents[18])
    # and the video is the same as without padding, frame for frame
    assert len(decode_frames(tmp_path / "pad.mp4")) == 20
    assert_same_video(tmp_path / "pad.mp4", tmp_path / "plain.mp4")


def test_a_compiled_engine_ends_a_job_with_tail_batches_instead_of_one_padded_full_batch(
    engine: MuseTalkEngine,
    levels_avatar: PreparedAvatar,
    short_speech: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an engine marked compiled, rendering at batch 48: the 20 frames of the clip would
    # be one batch padded with 28 copies; the frames handed to the encoder are recorded
    compiled, recorder = marked_compiled(engine)
    written: list[np.ndarray] = []
    write = VideoWriter.write

    def record(self: VideoWriter, frame: I420Frame) -> None:
        written.append(frame.data.copy())
        write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", record)
    # When the clip is rendered
    compiled.speak(
        levels_avatar, short_speech, tmp_path / "tail.mp4", options=NO_SKIP, batch_size=48
    )
    # Then it went through the tail graphs' size: two batches of 16, 12 padded rows, not 28
    assert recorder.batches == [TAIL_BATCH_SIZE, TAIL_BATCH_SIZE]
    # and the frames are the ones an uncompiled engine renders, up to fp32 batch-size rounding
    # (compared before H.264, which turns a pixel one level apart into blocks of differences)
    tail = written[:]
    engine.speak(levels_avatar, short_speech, tmp_path / "plain.mp4", options=NO_SKIP)
    assert len(decode_frames(tmp_path / "tail.mp4")) == len(tail) == 20
    for index, (ours, plain) in enumerate(zip(tail, written[20:], strict=True)):
        difference = np.abs(ours.astype(int) - plain.astype(int))
        assert difference.max() <= 1, f"frame {index}"
        assert (difference > 0).mean() <= 0.001, f"frame {index}"


def test_a_compiled_engine_warms_up_its_tail_graphs_with_the_full_batch(
    engine: MuseTalkEngine,
) -> None:
    # Given a compiled engine (recording generator) and an uncompiled one
    compiled, recorder = marked_compiled(engine)
    plain_recorder = RecordingGenerator(engine.generator)
    plain = with_parts(engine, generator=plain_recorder)
    # When each warms up for batch 24
    compiled.warm_up(24)
    plain.warm_up(24)
    # Then the compiled one ran both graph sizes it will use, the plain one only the batch
    assert recorder.batches == [24, TAIL_BATCH_SIZE]
    assert plain_recorder.batches == [24]
