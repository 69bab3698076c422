"""Prepared avatars: an in-memory LRU bounded by bytes, backed by the avatar-cache bucket.

Preparing an avatar (face detection, parsing, VAE latents of every frame) costs far more than a
short render, so a worker keeps recent ones in memory, and persists each one to S3 keyed by
content + options (the avatar id) and model version, so another worker loads instead of preparing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from runtime.common.keys import avatar_cache_key
from runtime.common.metrics import Metric
from runtime.common.names import Lane
from runtime.engine.engine_contract import (
    LipSyncEngine,
    PreparedAvatarFormatError,
    PreparedAvatarLike,
)
from runtime.worker.telemetry import MetricsSink, logger


class AvatarSource(StrEnum):
    MEMORY = "memory"
    BUCKET = "bucket"
    PREPARED = "prepared"


class ByteBoundedLru:
    """Least-recently-used map whose values' `nbytes` sum stays within `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, PreparedAvatarLike] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> PreparedAvatarLike | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: PreparedAvatarLike) -> None:
        if value.nbytes > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything for nothing
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes


class AvatarCache:
    def __init__(
        self,
        *,
        engine: LipSyncEngine,
        s3: Any,
        bucket: str,
        memory: ByteBoundedLru,
        metrics: MetricsSink,
        refresh_after: timedelta,
    ) -> None:
        self._engine = engine
        self._refresh_after = refresh_after
        self._s3 = s3
        self._bucket = bucket
        self._memory = memory
        self._metrics = metrics

    def get_or_prepare(
        self, avatar_id: str, lane: Lane, prepare: Callable[[], PreparedAvatarLike]
    ) -> tuple[PreparedAvatarLike, AvatarSource]:
        key = avatar_cache_key(self._engine.model_version, avatar_id)
        prepared = self._memory.get(key)
        if prepared is not None:
            self._metrics.emit({Metric.AVATAR_CACHE_HITS: 1}, lane=lane)
            return prepared, AvatarSource.MEMORY
        started = time.monotonic()
        prepared = self._load(key)
        if prepared is not None:
            self._memory.put(key, prepared)
            load_ms = (time.monotonic() - started) * 1000
            self._metrics.emit(
                {Metric.AVATAR_CACHE_HITS: 1, Metric.AVATAR_CACHE_LOAD_MS: load_ms}, lane=lane
            )
            return prepared, AvatarSource.BUCKET
        self._metrics.emit({Metric.AVATAR_CACHE_MISSES: 1}, lane=lane)
        prepared = prepare()
        self._memory.put(key, prepared)
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=prepared.to_bytes())
        except ClientError:
            # The render can go on; the next worker prepares again.
            logger.exception("could not persist the prepared avatar")
        return prepared, AvatarSource.PREPARED

    def _load(self, key: str) -> PreparedAvatarLike | None:
        """The persisted avatar, or None to prepare it again: absent, or a blob this engine cannot
        read (another format version, truncated), which the new preparation then overwrites."""
        data = self._read(key)
        if data is None:
            return None
        try:
            return self._engine.load_prepared(data)
        except PreparedAvatarFormatError as error:
            logger.warning("cached avatar unusable, preparing again", extra={"reason": str(error)})
            return None

    def _read(self, key: str) -> bytes | None:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        data: bytes = response["Body"].read()
        if datetime.now(UTC) - response["LastModified"] >= self._refresh_after:
            self._refresh(key)
        return data

    def _refresh(self, key: str) -> None:
        """Copy the object onto itself: a new LastModified restarts the bucket's expiry clock."""
        try:
            self._s3.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={"refreshed-at": datetime.now(UTC).isoformat(timespec="seconds")},
            )
        except ClientError:
            logger.exception("could not refresh the prepared avatar's expiry")
