"""Segmented rendering: segments as they finish, resume from a segment, the joined mp4."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.common.preview import playlist
from runtime.engine import segments as segments_module
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import Interrupted, Segment, SegmentPlan, segment_file_name
from runtime.engine.media import encode_audio, remux_segments
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.segments import SegmentedVideoWriter
from tests.unit.engine.conftest import MEDIA, count_frames, decode_frames

NO_SKIP = RenderOptions(skip_silence=False)
SEGMENT = 8  # frames: the 20-frame clip makes segments of 8, 8 and 4


def synthetic_frames(count: int) -> list[np.ndarray]:
    """Frames that differ from each other (a moving bar on a changing level); QCIF, a size at
    which x264's macroblock tree (off for segments) made the same input give other bytes."""
    frames = []
    for index in range(count):
        frame = np.full((144, 176, 3), (index * 9) % 200 + 20, np.uint8)
        frame[40:90, 2 * index : 2 * index + 40] = 230
        frames.append(frame)
    return frames


def qcif_writer(plan: SegmentPlan, out_path: Path, total_frames: int) -> SegmentedVideoWriter:
    """A writer of `synthetic_frames` with the sample speech as its audio."""
    return SegmentedVideoWriter(
        plan,
        out_path=out_path,
        total_frames=total_frames,
        width=176,
        height=144,
        fps=25,
        audio_path=MEDIA / "yongen.wav",
    )


def packets(path: Path) -> list[tuple[bytes, int | None, int | None]]:
    """The segment's coded video (payload and times), whatever the MPEG-TS packetization."""
    with av.open(str(path)) as container:
        return [(bytes(p), p.pts, p.dts) for p in container.demux(video=0) if p.size]


class Recorder:
    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.threads: set[str] = set()

    def __call__(self, segment: Segment) -> None:
        assert segment.path.is_file()  # complete and in place when reported
        self.segments.append(segment)
        self.threads.add(threading.current_thread().name)


@pytest.fixture(scope="module")
def avatar(engine: MuseTalkEngine, short_video: Path) -> PreparedAvatar:
    return engine.prepare(short_video, AvatarOptions())


@pytest.fixture(scope="module")
def uninterrupted(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Segment]]:
    """One segmented render without interruption: the reference output and its segments."""
    work = tmp_path_factory.mktemp("uninterrupted")
    recorder = Recorder()
    plan = SegmentPlan(directory=work / "segments", frames_per_segment=SEGMENT, on_segment=recorder)
    engine.speak(avatar, short_speech, work / "out.mp4", options=NO_SKIP, segments=plan)
    return work / "out.mp4", recorder.segments


def test_segments_are_reported_in_order_as_independent_parts_of_the_output(
    uninterrupted: tuple[Path, list[Segment]],
) -> None:
    # Given an uninterrupted segmented render of 20 frames in segments of 8
    output, segments = uninterrupted
    # Then each segment was reported once, in order, with its frame range
    assert [(s.index, s.first_frame, s.frames) for s in segments] == [
        (0, 0, 8),
        (1, 8, 8),
        (2, 16, 4),
    ]
    # And each decodes on its own (it starts with a key frame) to its own frame count
    for segment in segments:
        with av.open(str(segment.path)) as container:
            decoded = list(container.decode(video=0))
        with av.open(str(segment.path)) as container:
            sound = list(container.decode(audio=0))
        assert len(decoded) == segment.frames
        assert decoded[0].key_frame
        # And it carries the audio under its frames (the preview's sound), timed like them
        # (AAC adds up to one 1024-sample frame of priming before and padding after)
        heard = sum(frame.samples for frame in sound) / sound[0].sample_rate
        assert abs(float(sound[0].time) - float(decoded[0].time)) < 0.05
        assert segment.frames / 25 <= heard <= segment.frames / 25 + 0.09
    # And the mp4 holds exactly the segments' frames, with the audio
    frames, has_audio, fps = count_frames(output)
    assert (frames, has_audio, fps) == (20, True, 25.0)
    with av.open(str(output)) as container:  # the original audio, not the segments' preview
        assert [s.codec_context.sample_rate for s in container.streams.audio] == [16000]
    joined = [frame for s in segments for frame in decode_frames(s.path)]
    assert all(np.array_equal(a, b) for a, b in zip(decode_frames(output), joined, strict=True))


@pytest.mark.parametrize("stop_at_frames", [0, 8])
def test_a_render_resumed_at_a_segment_equals_the_uninterrupted_render(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    uninterrupted: tuple[Path, list[Segment]],
    tmp_path: Path,
    stop_at_frames: int,
) -> None:
    # Given a render stopped once `stop_at_frames` frames were composed
    first = Recorder()
    composed = [0]
    plan = SegmentPlan(directory=tmp_path / "first", frames_per_segment=SEGMENT, on_segment=first)
    with pytest.raises(Interrupted):
        engine.speak(
            avatar,
            short_speech,
            tmp_path / "first.mp4",
            options=NO_SKIP,
            segments=plan,
            progress=lambda done, total: composed.__setitem__(0, done),
            should_stop=lambda: composed[0] >= stop_at_frames,
        )
    # Then no output and no half-written segment are left, and the finished ones were reported
    assert not (tmp_path / "first.mp4").exists()
    assert not list((tmp_path / "first").glob("*.part.ts"))
    done = [s.index for s in first.segments]
    assert done == list(range(len(done)))
    assert len(done) < 3
    # When a second render (a fresh directory, as on another worker) starts at the first
    # missing segment with only the finished segments copied over
    resume_dir = tmp_path / "second"
    resume_dir.mkdir()
    for segment in first.segments:
        shutil.copy(segment.path, resume_dir / segment_file_name(segment.index))
    second = Recorder()
    start = len(done) * SEGMENT
    resumed = engine.speak(
        avatar,
        short_speech,
        tmp_path / "resumed.mp4",
        options=NO_SKIP,
        segments=SegmentPlan(
            directory=resume_dir, frames_per_segment=SEGMENT, start_frame=start, on_segment=second
        ),
    )
    # Then only the missing segments were rendered and reported
    assert resumed.resumed_from_frame == start
    assert [s.index for s in second.segments] == list(range(len(done), 3))
    # And the decoded frames equal the uninterrupted render's, exactly
    reference, _ = uninterrupted
    expected, actual = decode_frames(reference), decode_frames(tmp_path / "resumed.mp4")
    assert len(actual) == len(expected) == 20
    assert all(np.array_equal(a, b) for a, b in zip(actual, expected, strict=True))


def test_a_render_resumed_after_its_last_segment_only_joins(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    uninterrupted: tuple[Path, list[Segment]],
    tmp_path: Path,
) -> None:
    # Given every segment already done (the crash came before the final mp4)
    reference, segments = uninterrupted
    for segment in segments:
        shutil.copy(segment.path, tmp_path / segment_file_name(segment.index))
    recorder = Recorder()
    # When the render resumes at the end
    rendered = engine.speak(
        avatar,
        short_speech,
        tmp_path / "out.mp4",
        options=NO_SKIP,
        segments=SegmentPlan(
            directory=tmp_path, frames_per_segment=SEGMENT, start_frame=24, on_segment=recorder
        ),
    )
    # Then nothing is rendered again and the output equals the reference
    assert recorder.segments == []
    assert rendered.frames == 20
    expected, actual = decode_frames(reference), decode_frames(tmp_path / "out.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(actual, expected, strict=True))


def test_two_encoders_write_the_same_segments_reported_in_order(tmp_path: Path) -> None:
    # Given 50 frames written through one encoder and through two concurrent encoders
    frames = synthetic_frames(50)
    outputs = {}
    for encoders in (1, 2):
        recorder = Recorder()
        plan = SegmentPlan(
            directory=tmp_path / f"e{encoders}",
            frames_per_segment=7,
            encoders=encoders,
            on_segment=recorder,
        )
        with qcif_writer(plan, tmp_path / f"e{encoders}.mp4", 50) as writer:
            for frame in frames:
                writer.write(frame)
        outputs[encoders] = recorder
        # Then the segments are reported in index order, on the reporter thread
        assert [s.index for s in recorder.segments] == list(range(8))
        assert recorder.threads
        assert all(t.startswith("segment-report") for t in recorder.threads)
    # And both produce the same H.264 packets
    for one, two in zip(outputs[1].segments, outputs[2].segments, strict=True):
        assert packets(one.path) == packets(two.path)
    assert count_frames(tmp_path / "e2.mp4")[0] == 50


def test_a_failing_report_surfaces_on_the_writer_and_stops_later_reports(tmp_path: Path) -> None:
    # Given a consumer that fails on the second segment
    reported: list[int] = []

    def on_segment(segment: Segment) -> None:
        if segment.index == 1:
            raise OSError("upload failed")
        reported.append(segment.index)

    plan = SegmentPlan(directory=tmp_path / "s", frames_per_segment=5, on_segment=on_segment)
    writer = qcif_writer(plan, tmp_path / "out.mp4", 20)

    # When all frames are written and the writer closes
    def write_all() -> None:
        with writer:
            for frame in synthetic_frames(20):
                writer.write(frame)

    with pytest.raises(OSError, match="upload failed"):
        write_all()
    # Then only the unbroken run before the failure was reported, and no mp4 was written
    assert reported == [0]
    assert not (tmp_path / "out.mp4").exists()


def test_the_first_segment_opens_before_the_mp4s_audio_track_is_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an AAC encoding of the mp4's track that holds until it is let go (or 10 s pass)
    released = threading.Event()
    encoded = threading.Event()
    waited_for_encoding: list[bool] = []

    def held_encode(audio: Path, out_path: Path) -> bool:
        released.wait(timeout=10)
        done = encode_audio(audio, out_path)
        encoded.set()
        return done

    monkeypatch.setattr(segments_module, "encode_audio", held_encode)
    plan = SegmentPlan(directory=tmp_path / "s", frames_per_segment=5)
    with qcif_writer(plan, tmp_path / "out.mp4", 10) as writer:
        # When the first segment's frames are written (its preview audio is needed to open it)
        for frame in synthetic_frames(5):
            writer.write(frame)
        # Then that did not wait for the track's encoding
        waited_for_encoding.append(encoded.is_set())
        released.set()
        for frame in synthetic_frames(10)[5:]:
            writer.write(frame)
    assert waited_for_encoding == [False]
    assert count_frames(tmp_path / "out.mp4")[0] == 10


def test_a_start_frame_off_a_segment_boundary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="start_frame"):
        SegmentPlan(directory=tmp_path, frames_per_segment=8, start_frame=5)


@pytest.mark.parametrize("total", [7, 20, 125, 126, 250, 750, 874])
def test_a_tapered_plan_halves_its_last_segment_into_short_pieces(
    tmp_path: Path, total: int
) -> None:
    # Given the same clip planned in 125-frame segments, plain and tapered
    plain = SegmentPlan(directory=tmp_path).lengths(total)
    tapered = SegmentPlan(directory=tmp_path, taper=True).lengths(total)

    # Then both cover every frame, and the plain plan has whole segments and one remainder
    assert sum(plain) == sum(tapered) == total
    assert all(length == 125 for length in plain[:-1])
    # And the tapered plan keeps all but its last whole segment, then pieces that never grow,
    # none longer than half the tapered stretch and the last no longer than 16 frames
    kept = max(0, total // 125 - 1)
    assert tapered[:kept] == [125] * kept
    pieces = tapered[kept:]
    assert pieces == sorted(pieces, reverse=True)
    assert pieces[-1] <= 16
    if total > 32:
        assert len(pieces) > 1
        assert pieces[0] <= (total - 125 * kept + 1) // 2


def test_a_tapered_plan_writes_its_pieces_and_joins_every_frame(tmp_path: Path) -> None:
    # Given 40 frames planned in 30-frame segments with a tapered tail, two encoders
    recorder = Recorder()
    plan = SegmentPlan(
        directory=tmp_path / "s", frames_per_segment=30, encoders=2, on_segment=recorder, taper=True
    )
    # When they are written and the writer closes
    with qcif_writer(plan, tmp_path / "out.mp4", 40) as writer:
        for frame in synthetic_frames(40):
            writer.write(frame)

    # Then each piece is its own segment, reported in order, and the mp4 holds every frame
    assert [(s.first_frame, s.frames) for s in recorder.segments] == [(0, 20), (20, 10), (30, 10)]
    assert [count_frames(s.path)[0] for s in recorder.segments] == [20, 10, 10]
    assert count_frames(tmp_path / "out.mp4")[0] == 40


def test_a_tapered_plan_cannot_resume(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tapered"):
        SegmentPlan(directory=tmp_path, frames_per_segment=8, start_frame=8, taper=True)


def test_the_segments_play_as_the_preview_playlist(
    uninterrupted: tuple[Path, list[Segment]], tmp_path: Path
) -> None:
    # Given the preview playlist the API would write, over the finished segments
    reference, segments = uninterrupted
    text = playlist([str(s.path) for s in segments], SEGMENT, 25.0, frames_total=20)
    (tmp_path / "preview.m3u8").write_text(text)
    # When an HLS client (FFmpeg's HLS demuxer) plays it
    with av.open(str(tmp_path / "preview.m3u8"), options={"protocol_whitelist": "file"}) as hls:
        assert sorted(stream.type for stream in hls.streams) == ["audio", "video"]
        played = [(frame.pts, frame.to_ndarray(format="bgr24")) for frame in hls.decode(video=0)]
    # Then it shows every frame once, in order, as the final mp4 does
    assert len(played) == 20
    times = [pts for pts, _ in played]
    assert times == sorted(times)
    assert len(set(times)) == 20
    assert all(
        np.array_equal(a, b) for (_, a), b in zip(played, decode_frames(reference), strict=True)
    )


def test_silence_skipping_resumes_to_the_same_frames(
    engine: MuseTalkEngine, avatar: PreparedAvatar, silence_then_speech: Path, tmp_path: Path
) -> None:
    # Given an uninterrupted render with silence skipping (speech detected on the whole clip:
    # 30 silent frames, a fade, then speech) in segments of 8
    options = RenderOptions(skip_silence=True)
    reference = SegmentPlan(directory=tmp_path / "all", frames_per_segment=SEGMENT)
    whole = engine.speak(
        avatar, silence_then_speech, tmp_path / "all.mp4", options=options, segments=reference
    )
    # When a render resumes at frame 24 (the fade into speech is in the segment it starts with)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    for index in range(3):
        shutil.copy(reference.directory / segment_file_name(index), resumed_dir)
    resumed = engine.speak(
        avatar,
        silence_then_speech,
        tmp_path / "resumed.mp4",
        options=options,
        segments=SegmentPlan(directory=resumed_dir, frames_per_segment=SEGMENT, start_frame=24),
    )
    # Then it skipped the same silent frames and wrote the same 50 frames
    assert whole.frames_skipped == resumed.frames_skipped > 0
    expected, actual = decode_frames(tmp_path / "all.mp4"), decode_frames(tmp_path / "resumed.mp4")
    assert len(actual) == len(expected) == 50
    assert all(np.array_equal(a, b) for a, b in zip(actual, expected, strict=True))


def test_segments_joined_as_they_finish_make_the_mp4_a_remux_at_the_end_makes(
    uninterrupted: tuple[Path, list[Segment]], short_speech: Path, tmp_path: Path
) -> None:
    # Given a segmented render, whose mp4 was joined segment by segment while it rendered
    output, segments = uninterrupted
    # When its segments are joined again in one go at the end, with the same AAC track
    encoded = tmp_path / "audio.m4a"
    assert encode_audio(short_speech, encoded)
    again = tmp_path / "again.mp4"
    written = remux_segments([s.path for s in segments], short_speech, again, encoded_audio=encoded)
    # Then both hold every frame and are the same file, byte for byte
    assert written == 20
    assert again.read_bytes() == output.read_bytes()
