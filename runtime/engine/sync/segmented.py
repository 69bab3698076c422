"""The sync score of a segmented render, kept segment by segment.

A render resumed at segment k never sees the crops of segments 0..k-1 (an earlier attempt made
them), so scoring the crops of one attempt scores only part of the clip. Instead each segment
is scored on its own (SyncNet windows inside the segment) as its last frame is composed; the
segment reports its sums (`Segment.sync_sums`) for the caller to keep with it, and the final
score adds the kept sums of the earlier segments (`SegmentPlan.sync_sums_before`) to this
attempt's. Equal segments give equal sums, so a resumed render scores like an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from runtime.engine.engine_contract import Segment, SegmentFn, SegmentPlan, SyncSums
from runtime.engine.sync.scorer import CLIP_FRAMES, SyncScore, SyncScorer, score_of_sums

log = logging.getLogger(__name__)


class SegmentScores:
    """Collects one attempt's crops per segment and scores each segment once it is complete.

    `add` runs on the composer thread before the frame is written, so a segment's sums exist
    before the writer can finish that segment and report it (`reporting`).
    """

    def __init__(
        self,
        scorer: SyncScorer,
        audio_16k: np.ndarray,
        fps: float,
        plan: SegmentPlan,
        *,
        total_frames: int,
        max_frames: int,
    ) -> None:
        self._scorer = scorer
        self._audio = audio_16k
        self._fps = fps
        self._plan = plan
        self._last_scored = min(total_frames, max_frames) - 1  # frames past it are not scored
        self._faces: list[np.ndarray] = []
        self._sums: dict[int, SyncSums | None] = {}
        self._failed = False

    def add(self, frame: int, face_rgb: np.ndarray) -> None:
        """The crop of output frame `frame` (frames arrive in order from the attempt's first)."""
        if frame > self._last_scored:
            return
        self._faces.append(face_rgb)
        size = self._plan.frames_per_segment
        if frame % size == size - 1 or frame == self._last_scored:
            self._sums[frame // size] = self._score_segment(frame - len(self._faces) + 1)
            self._faces = []

    def reporting(self, on_segment: SegmentFn | None) -> SegmentFn | None:
        """`on_segment` with each segment's sums attached."""
        if on_segment is None:
            return None
        forward = on_segment

        def report(segment: Segment) -> None:
            sums = self._sums.get(segment.index)
            forward(dataclasses.replace(segment, sync_sums=sums))

        return report

    def score(self) -> SyncScore | None:
        """The whole clip's score: the earlier segments' sums plus this attempt's, in order."""
        if self._failed:
            return None
        total = self._plan.sync_sums_before
        for index in sorted(self._sums):
            sums = self._sums[index]
            if sums is not None:
                total = sums if total is None else total.plus(sums)
        return None if total is None else score_of_sums(total)

    def _score_segment(self, first_frame: int) -> SyncSums | None:
        if len(self._faces) < CLIP_FRAMES or self._failed:
            return None
        try:
            return self._scorer.window_sums(
                np.stack(self._faces), self._audio, self._fps, first_frame
            )
        except (ValueError, RuntimeError) as error:
            # The render goes on; a missing quality score must not fail the job.
            log.warning("sync scoring failed, no score for this render: %s", error)
            self._failed = True
            return None


def segment_scores(
    scorer: object,
    audio_16k: np.ndarray,
    fps: float,
    plan: SegmentPlan,
    *,
    total_frames: int,
    max_frames: int,
) -> SegmentScores | None:
    """Per-segment scoring for the SyncNet scorer; None for scorers that score whole clips only
    (their render is scored as before, from its own crops)."""
    if not isinstance(scorer, SyncScorer):
        return None
    return SegmentScores(
        scorer, audio_16k, fps, plan, total_frames=total_frames, max_frames=max_frames
    )
