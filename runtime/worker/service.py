"""The resident worker: start once (weights, model), then take jobs one at a time until stopped.

Until the weights manifest is published the worker waits for it, healthy but not ready: the
queues are not polled before the model is loaded, so nothing it would consume is taken.

Start-up and the serve loop live here; what happens to one job is `job_runner`. SIGTERM only sets
a flag (`StopPolicy.request`): the loop takes no new message, and the job in progress either
finishes within the stop timeout or is interrupted and handed back by the runner.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

import boto3
from botocore.config import Config

from runtime.common.jobs import MODEL_VERSION
from runtime.common.metrics import Metric
from runtime.engine.engine_contract import LipSyncEngine
from runtime.worker.avatar_cache import AvatarCache, ByteBoundedLru
from runtime.worker.config import SettingsError, WorkerSettings
from runtime.worker.engine_loader import load_engine, start_preload
from runtime.worker.gpu import GpuProbe
from runtime.worker.health import HealthServer, create_app
from runtime.worker.job_runner import JobRunner, Outcome
from runtime.worker.job_store import JobStore
from runtime.worker.lanes import LanePoller
from runtime.worker.notifications import Notifier
from runtime.worker.protection import TaskProtection
from runtime.worker.shutdown import StopPolicy
from runtime.worker.spot import SpotNoticePoller
from runtime.worker.telemetry import MetricsSink, logger
from runtime.worker.webhooks import SecretSource, WebhookSender, hand_on_webhook
from runtime.worker.weights_sync import sync_when_published

_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
POLL_ERROR_PAUSE_SECONDS = 5.0


@dataclass
class AwsClients:
    s3: Any
    sqs: Any
    sns: Any
    dynamodb: Any
    secrets: Any

    @classmethod
    def create(cls, session: boto3.session.Session | None = None) -> AwsClients:
        """Clients of a new session (or of `session`: building a session's first clients loads
        the service models, which in-process tests share instead of paying per worker);
        `AWS_ENDPOINT_URL` (local mode) is honoured by boto3."""
        session = session or boto3.session.Session()
        return cls(
            s3=session.client("s3", config=_AWS_CONFIG),
            sqs=session.client("sqs", config=_AWS_CONFIG),
            sns=session.client("sns", config=_AWS_CONFIG),
            dynamodb=session.resource("dynamodb", config=_AWS_CONFIG),
            secrets=session.client("secretsmanager", config=_AWS_CONFIG),
        )


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Worker:
    """Owns the long-lived parts and the loop. `main()` builds one after start-up; tests build
    them directly with a small engine and the emulator's clients."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        engine: LipSyncEngine,
        clients: AwsClients,
        metrics: MetricsSink,
        stop: StopPolicy | None = None,
        gpu: GpuProbe | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.stop = stop or StopPolicy(settings.stop_timeout_seconds)
        self.protection = TaskProtection(
            settings.ecs_agent_uri, expires_minutes=settings.task_protection_minutes
        )
        self.poller = LanePoller(
            clients.sqs,
            settings.lanes,
            wait_seconds=settings.poll_wait_seconds,
            visibility_timeout_seconds=settings.visibility_timeout_seconds,
        )
        store = JobStore(clients.dynamodb.Table(settings.jobs_table))
        self.webhooks = (
            WebhookSender(
                SecretSource(clients.secrets, settings.webhook_secret_arn).key,
                allow_private=settings.webhook_allow_private,
                on_attempt=lambda event, attempt: store.record_event(event.job_id, attempt),
                on_gave_up=(
                    functools.partial(hand_on_webhook, clients.sqs, settings.webhook_queue_url)
                    if settings.webhook_queue_url
                    else None
                ),
            )
            if settings.webhook_secret_arn
            else None
        )
        self.runner = JobRunner(
            settings=settings,
            engine=engine,
            s3=clients.s3,
            store=store,
            poller=self.poller,
            avatars=AvatarCache(
                engine=engine,
                s3=clients.s3,
                bucket=settings.avatar_cache_bucket,
                memory=ByteBoundedLru(settings.avatar_cache_memory_bytes),
                metrics=metrics,
                refresh_after=timedelta(days=settings.avatar_cache_refresh_days),
            ),
            notifier=Notifier(
                sns=clients.sns,
                topic_arn=settings.completion_topic_arn,
                store=store,
                webhooks=self.webhooks,
            ),
            metrics=metrics,
            protection=self.protection,
            stop=self.stop,
            gpu=gpu or GpuProbe(),
            owner=worker_id(),
        )

    def readiness(self) -> dict[str, bool]:
        return {
            "model_loaded": True,
            "queues_reachable": self.poller.reachable,
            "accepting_jobs": not self.stop.requested,
        }

    def run(self) -> None:
        """Take jobs until a stop is requested; returns once the current job is settled."""
        while not self.stop.requested:
            self.run_once()
        self.protection.release()

    def run_once(self) -> Outcome | None:
        """One poll and, if a message came, one job. None when idle or on a poll error."""
        try:
            delivery = self.poller.next()
        except Exception:
            logger.exception("polling the lanes failed")
            self.stop.wait(POLL_ERROR_PAUSE_SECONDS)
            return None
        if delivery is None:
            self.protection.release()  # idle: let scale-in pick this task
            return None
        if self.stop.requested:
            self.poller.resend(delivery, 0)  # received during shutdown: give it back, unused
            return None
        try:
            return self.runner.handle(delivery)
        except Exception:
            # The message's visibility lapses and it comes back; the lease fences the rest.
            logger.exception("job delivery failed")
            return None

    def close(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close(timeout_seconds=min(10.0, self.settings.stop_timeout_seconds / 4))


def main() -> None:
    """Container entry point: `python -m runtime.worker`."""
    try:
        settings = WorkerSettings.from_env()
    except SettingsError as error:
        logger.error("invalid worker configuration", extra={"reason": str(error)})
        raise SystemExit(2) from None
    metrics = MetricsSink()
    stop = StopPolicy(settings.stop_timeout_seconds)
    signal.signal(signal.SIGTERM, _on_signal(stop))
    signal.signal(signal.SIGINT, _on_signal(stop))
    state: dict[str, Worker] = {}

    waiting_for_weights: list[bool] = []  # one entry once the manifest was found missing

    def readiness() -> dict[str, bool]:
        worker = state.get("worker")
        if worker is None:
            return {"weights_published": not waiting_for_weights, "model_loaded": False}
        return worker.readiness()

    health = HealthServer(create_app(readiness, metrics), port=settings.health_port)
    health.start()
    try:
        started = _start(settings, metrics, stop, waiting_for_weights)
    except Exception:
        logger.exception("worker start-up failed")
        health.stop()
        raise SystemExit(1) from None
    if started is None:  # stopped while waiting for the weights
        health.stop()
        logger.info("worker stopped before the weights were published")
        return
    worker = state["worker"] = started
    spot = (
        SpotNoticePoller(settings.spot_notice_endpoint, stop.request)
        if settings.spot_notice_endpoint
        else None
    )
    if spot is not None:
        spot.start()
    try:
        worker.run()
    finally:
        if spot is not None:
            spot.stop()
        worker.close()
        health.stop()
        logger.info("worker stopped")


def _start(
    settings: WorkerSettings, metrics: MetricsSink, stop: StopPolicy, waiting: list[bool]
) -> Worker | None:
    """Weights, then the engine: timed separately, because they fail and scale differently.
    The model libraries import on a thread meanwhile (most of a cold start otherwise). None when
    a stop came while the weights manifest was still missing."""
    preloading = start_preload(settings.engine_factory)
    clients = AwsClients.create()
    started = time.monotonic()
    if settings.weights_bucket:
        lane = settings.lanes[0][0]

        def missing() -> None:
            nonlocal started
            started = time.monotonic()  # the download time excludes the wait
            if not waiting:
                waiting.append(True)
                logger.warning(
                    "waiting for the weights manifest; upload the weights (docs/deploy.md)",
                    extra={"bucket": settings.weights_bucket, "model_version": MODEL_VERSION},
                )
            metrics.emit({Metric.WEIGHTS_MISSING: 1}, lane=lane)

        synced = sync_when_published(
            clients.s3,
            bucket=settings.weights_bucket,
            model_version=MODEL_VERSION,
            models_dir=settings.models_dir,
            wait=stop.wait,
            poll_seconds=settings.poll_wait_seconds,
            on_missing=missing,
        )
        if synced is None:
            return None
        waiting.clear()
        logger.info(
            "weights synced",
            extra={"downloaded": len(synced.downloaded), "kept": len(synced.kept)},
        )
    download_ms = (time.monotonic() - started) * 1000
    started = time.monotonic()
    if preloading is not None:
        preloading.join()  # the factory needs these imports anyway
    engine = load_engine(
        settings.engine_factory,
        models_dir=settings.models_dir,
        device=settings.device,
        dtype=settings.dtype,
    )
    load_ms = (time.monotonic() - started) * 1000
    metrics.emit(
        {Metric.STARTUP_DOWNLOAD_MS: download_ms, Metric.STARTUP_LOAD_MS: load_ms},
        lane=settings.lanes[0][0],  # the service's lane: one dimension set for every metric
    )
    logger.info(
        "worker ready",
        extra={
            "startup_download_ms": round(download_ms),
            "startup_load_ms": round(load_ms),
            "weights": engine.weights,
            "model_version": engine.model_version,
        },
    )
    return Worker(settings=settings, engine=engine, clients=clients, metrics=metrics, stop=stop)


def _on_signal(stop: StopPolicy) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.request()

    return handler
