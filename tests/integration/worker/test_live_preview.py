"""The live preview stays current without status reads: the worker rewrites the HLS playlist
object after each segment upload, with presigned segment URLs (players poll the playlist, not
the API)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from runtime.common.keys import preview_playlist_key, segment_key
from runtime.common.names import BucketRole, EnvVar
from runtime.engine.engine_contract import Segment, SegmentPlan
from runtime.worker.job_runner import Outcome
from runtime.worker.telemetry import logger as worker_logger
from tests.integration.worker.conftest import MakeWorker
from tests.support.log_lines import captured_log_lines
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld

SEGMENT_FRAMES = 50  # yongen.wav is 200 frames at 25 fps: 4 segments
WORKER_SERVICE = worker_logger.service


@pytest.fixture
def worker_log_lines() -> Iterator[io.StringIO]:
    """Every line the worker's logger writes, formatted as in the task's log stream (JSON)."""
    with captured_log_lines(WORKER_SERVICE) as sink:
        yield sink


@dataclass(frozen=True)
class PlaylistSeen:
    """What a player polling the playlist object saw right after segment `index` uploaded."""

    index: int
    lines: list[str]
    entry_bodies: list[bytes]
    segment_bodies: list[bytes]


class PlaylistWatcher(SmallEngine):
    """Reads the playlist object (as a player would, through no API) as each segment's upload
    returns to the engine."""

    def __init__(self, world: WorkerWorld) -> None:
        super().__init__()
        self._world = world
        self.job: tuple[str, str] | None = None  # (tenant, job id)
        self.seen: list[PlaylistSeen] = []

    def speak(self, prepared: Any, audio: Path, out_path: Path, **kwargs: Any) -> Any:
        plan: SegmentPlan = kwargs.pop("segments")
        forward = plan.on_segment
        assert forward is not None
        assert self.job is not None
        tenant, job_id = self.job
        bucket = self._world.bucket(BucketRole.OUTPUTS)

        def on_segment(segment: Segment) -> None:
            forward(segment)
            body = self._world.s3.get_object(
                Bucket=bucket, Key=preview_playlist_key(tenant, job_id)
            )["Body"].read()
            lines = body.decode().splitlines()
            entries = [line for line in lines if not line.startswith("#")]
            segments = [
                self._world.s3.get_object(Bucket=bucket, Key=segment_key(tenant, job_id, i))[
                    "Body"
                ].read()
                for i in range(segment.index + 1)
            ]
            self.seen.append(
                PlaylistSeen(
                    segment.index, lines, [httpx.get(url).content for url in entries], segments
                )
            )

        segments = replace(plan, on_segment=on_segment)
        return super().speak(prepared, audio, out_path, segments=segments, **kwargs)


def test_the_playlist_lists_each_segment_as_soon_as_it_uploads(
    world: WorkerWorld, make_worker: MakeWorker, worker_log_lines: io.StringIO
) -> None:
    # Given a job rendered in four segments, and nobody reading its status
    message = world.submit()
    engine = PlaylistWatcher(world)
    engine.job = (message.tenant, message.job_id)
    worker = make_worker(engine, **{EnvVar.SEGMENT_FRAMES: str(SEGMENT_FRAMES)})

    # When the worker renders it
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then right after segment k uploaded, the playlist object listed segments 0..k, each entry
    # a presigned URL that plays that segment's bytes
    assert [seen.index for seen in engine.seen] == [0, 1, 2, 3]
    for seen in engine.seen:
        assert seen.lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT"]
        assert [line for line in seen.lines if line.startswith("#EXTINF")] == ["#EXTINF:2.000,"] * (
            seen.index + 1
        )
        assert seen.entry_bodies == seen.segment_bodies
    # And only the last one ends the playlist (every segment of the 200 frames exists)
    assert ["#EXT-X-ENDLIST" in seen.lines for seen in engine.seen] == [False] * 3 + [True]

    # And once the mp4 exists, a player still at the preview plays it to the last frame
    # (FFmpeg's HLS demuxer over the playlist's presigned URL, as a player would)
    url = world.s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": world.bucket(BucketRole.OUTPUTS),
            "Key": preview_playlist_key(message.tenant, message.job_id),
        },
        ExpiresIn=60,
    )
    with av.open(url, format="hls") as hls:
        assert sum(1 for _ in hls.decode(video=0)) == 200
    # And no signature reached the worker's log
    logged = worker_log_lines.getvalue()
    assert message.job_id in logged  # the capture works
    assert "X-Amz-Signature" not in logged
