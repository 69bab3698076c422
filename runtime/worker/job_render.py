"""The render of one leased job: inputs in, output object out.

Downloads and checks the inputs, answers from the output cache when it can (or waits for another
job's render of the same content), otherwise prepares the avatar, renders in resumable segments
and uploads the video to the job's output key and the cache. It ends no job: every failure is
raised for `job_endings` to settle.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from runtime.common.jobs import JobMessage
from runtime.common.keys import output_key, rendered_cache_key
from runtime.common.metrics import Metric
from runtime.common.records import JobRecord
from runtime.engine.engine_contract import LipSyncEngine, PreparedAvatarLike, ProgressFn, Rendered
from runtime.worker.avatar_cache import AvatarCache, AvatarSource
from runtime.worker.config import WorkerSettings
from runtime.worker.deadlines import check_deadline, deadline_passed
from runtime.worker.engine_options import (
    avatar_options,
    decode_limits,
    engine_failures,
    render_options,
)
from runtime.worker.inputs import (
    FetchedInput,
    check_audio,
    check_avatar,
    check_output,
    fetch_input,
)
from runtime.worker.isolated import shared_checks
from runtime.worker.job_store import JobStore, Lease, LeaseLost
from runtime.worker.render_cache import RenderCache, cache_metadata, render_cache_hash
from runtime.worker.segment_resume import RenderSegments
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import MetricsSink, logger

PROGRESS_WRITE_SECONDS = 2.0


class JobRender:
    def __init__(
        self,
        *,
        settings: WorkerSettings,
        engine: LipSyncEngine,
        s3: Any,
        store: JobStore,
        avatars: AvatarCache,
        metrics: MetricsSink,
        stop: StopPolicy,
        cache: RenderCache,
        segments: RenderSegments,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._store = store
        self._avatars = avatars
        self._metrics = metrics
        self._stop = stop
        self._cache = cache
        self._segments = segments

    def render(
        self,
        message: JobMessage,
        lease: Lease,
        record: JobRecord,
        work: Path,
        timings: dict[str, float],
    ) -> tuple[dict[str, str], bool, str]:
        """Inputs to output object; the output's metadata, whether the cache supplied it, and
        the cache key (recorded on the job so a purge can delete the cached render too)."""
        check_deadline(message, "before downloading")
        started = time.monotonic()
        audio, avatar = self._fetch_inputs(message, work)
        timings["download_ms"] = _ms_since(started)
        content_hash = render_cache_hash(
            engine=self._engine,
            avatar_sha256=avatar.sha256,
            audio_sha256=audio.sha256,
            message=message,
            shared_across_tenants=self._settings.share_render_cache_across_tenants,
        )
        cache_key = rendered_cache_key(self._engine.model_version, content_hash)
        destination = output_key(message.tenant, message.job_id)
        cached = self._cache.cached_or_claimed(content_hash, cache_key, destination, message)
        if cached is not None:
            self._metrics.emit({Metric.OUTPUT_CACHE_HITS: 1}, lane=message.lane)
            if record.segments_done:  # an interrupted attempt's (and its unrecorded last)
                self._segments.delete(message, record.segments_done + 1)
            return cached, True, cache_key

        check_deadline(message, "before preparing")
        started = time.monotonic()
        prepared, source = self._prepare(message, avatar)
        timings["prepare_ms"] = _ms_since(started)
        out_path = work / "output.mp4"
        rendered = self._speak(message, lease, record, prepared, audio, content_hash, work, timings)
        check_output(out_path, frames=rendered.frames)
        self._segments.drop_past(message, record, rendered.frames)
        started = time.monotonic()
        metadata = cache_metadata(rendered)
        self._upload(out_path, destination, cache_key, metadata)
        timings["upload_ms"] = _ms_since(started)
        logger.info("rendered", extra={"avatar_source": source.value, "frames": rendered.frames})
        return metadata, False, cache_key

    def _prepare(
        self, message: JobMessage, avatar: FetchedInput
    ) -> tuple[PreparedAvatarLike, AvatarSource]:
        with engine_failures():
            prepared, source = self._avatars.get_or_prepare(
                message.avatar_id,
                message.lane,
                lambda: self._engine.prepare(
                    avatar.path,
                    avatar_options(message.avatar_options),
                    limits=decode_limits(self._settings.limits),
                    should_stop=lambda: self._should_stop(message),
                ),
            )
        return prepared, source

    def _speak(
        self,
        message: JobMessage,
        lease: Lease,
        record: JobRecord,
        prepared: PreparedAvatarLike,
        audio: FetchedInput,
        content_hash: str,
        work: Path,
        timings: dict[str, float],
    ) -> Rendered:
        """The engine's render to `work/output.mp4`, in segments resumed after an earlier
        attempt's; records the speak and encode times."""
        plan = self._segments.plan(
            message,
            lease,
            record,
            content_hash,
            work / "segments",
            encoding=self._engine.output_encoding,
        )
        self._store.start_rendering(lease, resumed_from_frame=plan.start_frame)
        if plan.start_frame:
            logger.info("resuming from a segment", extra={"frame": plan.start_frame})
        hint = record.batch_size_hint or message.batch_size_hint
        started = time.monotonic()
        self._stop.render_started(plan.start_frame)
        with engine_failures():
            rendered = self._engine.speak(
                prepared,
                audio.path,
                work / "output.mp4",
                options=render_options(message.options),
                batch_size=hint,
                # A hinted retry may go all the way down; a first attempt hands back at the floor.
                min_batch_size=1 if hint else self._settings.min_batch_size,
                progress=self._progress_writer(lease),
                on_oom_halving=lambda size: self._metrics.emit(
                    {Metric.OOM_HALVINGS: 1}, lane=message.lane
                ),
                should_stop=lambda: self._should_stop(message),
                segments=plan,
            )
        speak_ms = _ms_since(started)
        # Engines may split encoding ("encode", "encode_flush" for a background encoder).
        encode_ms = sum(v for k, v in rendered.timings_ms.items() if k.startswith("encode")) or None
        timings["speak_ms"] = speak_ms - (encode_ms or 0.0)
        if encode_ms is not None:
            timings["encode_ms"] = encode_ms
        self._metrics.emit(
            {Metric.FRAMES_PER_SECOND: rendered.frames / max(speak_ms / 1000, 1e-6)},
            lane=message.lane,
        )
        return rendered

    def _upload(
        self, out_path: Path, destination: str, cache_key: str, metadata: dict[str, str]
    ) -> None:
        """The video to the job's output key, then copied to the cache under its content."""
        self._s3.upload_file(
            str(out_path),
            self._settings.outputs_bucket,
            destination,
            ExtraArgs={"ContentType": "video/mp4", "Metadata": metadata},
        )
        self._s3.copy_object(
            Bucket=self._settings.outputs_bucket,
            Key=cache_key,
            CopySource={"Bucket": self._settings.outputs_bucket, "Key": destination},
        )

    def _should_stop(self, message: JobMessage) -> bool:
        return self._stop.should_interrupt() or deadline_passed(message.deadline_at)

    def _fetch_inputs(self, message: JobMessage, work: Path) -> tuple[FetchedInput, FetchedInput]:
        """Audio first: its duration check is cheap and fails long jobs before the big download."""
        limits = self._settings.limits.for_lane(message.lane)
        audio = fetch_input(
            self._s3,
            message.audio,
            tenant=message.tenant,
            allowed_bucket=self._settings.uploads_bucket,
            max_bytes=limits.max_audio_bytes,
            dest=work / "audio",
            what="audio",
        )
        # In a child process: a decoder crash or a runaway allocation costs this job only.
        shared_checks().run(check_audio, audio.path, self._settings.limits, limits)
        avatar = fetch_input(
            self._s3,
            message.avatar,
            tenant=message.tenant,
            allowed_bucket=self._settings.uploads_bucket,
            max_bytes=max(limits.max_video_bytes, limits.max_image_bytes),
            dest=work / "avatar",
            what="avatar",
        )
        shared_checks().run(check_avatar, avatar.path, self._settings.limits.max_video_pixels)
        return audio, avatar

    def _progress_writer(self, lease: Lease) -> ProgressFn:
        last_write = [0.0]
        lock = threading.Lock()

        def progress(frames_done: int, frames_total: int) -> None:
            self._stop.progress(frames_done, frames_total)
            now = time.monotonic()
            with lock:
                if now - last_write[0] < PROGRESS_WRITE_SECONDS and frames_done < frames_total:
                    return
                last_write[0] = now
            try:
                self._store.progress(lease, frames_done, frames_total)
            except LeaseLost:
                self._stop.lease_lost()  # the engine stops at its next should_stop check
            except ClientError:
                logger.warning("progress write failed")

        return progress


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000
