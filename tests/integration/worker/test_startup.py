"""Start-up of a real worker process: weights synced before the engine loads, bad config named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime.common.jobs import MODEL_VERSION, JobStatus
from runtime.common.names import BucketRole, EnvVar, Lane
from runtime.common.weights_manifest import WeightsManifest
from tests.integration.worker.test_sigterm import worker_process
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld, free_port

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_a_missing_variable_stops_the_worker_naming_it(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "runtime.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert line["reason"] == f"{EnvVar.LANES} is required"


def test_the_worker_syncs_weights_then_loads_and_reports_both_times(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given weights published to the weights bucket
    source = tmp_path / "published"
    source.mkdir()
    (source / "unet.bin").write_bytes(b"\x01" * 4096)
    manifest = WeightsManifest.of_directory(source, MODEL_VERSION)
    bucket = world.bucket(BucketRole.WEIGHTS)
    world.s3.upload_file(str(source / "unet.bin"), bucket, manifest.object_key("unet.bin"))
    world.s3.put_object(Bucket=bucket, Key=manifest.manifest_key, Body=manifest.model_dump_json())

    # When a worker process starts with the weights bucket configured, and is then stopped
    with worker_process(
        world,
        tmp_path,
        seconds_per_frame=0,
        stop_timeout=5,
        extra_env={EnvVar.WEIGHTS_BUCKET: bucket},
    ) as (process, _):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    # Then the weights are in the models directory and start-up was reported in two parts
    assert (tmp_path / "models" / "unet.bin").read_bytes() == b"\x01" * 4096
    log_file = next(tmp_path.glob("worker-*.log"))
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    ready = next(entry for entry in log if entry.get("message") == "worker ready")
    assert ready["startup_download_ms"] >= 0
    assert ready["startup_load_ms"] >= 0
    emf = next(entry for entry in log if "StartupDownloadMs" in entry)
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MuseTalk"
    synced = next(entry for entry in log if entry.get("message") == "weights synced")
    assert synced["downloaded"] == 1


def test_a_worker_deployed_before_the_weights_waits_healthy_and_takes_no_job(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given a deployed stack whose weights were never uploaded, and a job already queued
    bucket = world.bucket(BucketRole.WEIGHTS)
    message = world.submit()
    port = free_port()
    env = {
        **os.environ,
        **world.env(
            tmp_path / "models",
            **{
                EnvVar.HEALTH_PORT: str(port),
                EnvVar.POLL_WAIT_SECONDS: "1",
                EnvVar.WEIGHTS_BUCKET: bucket,
            },
        ),
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.worker"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            # When it starts, it stays up: healthy (the container health check) but not ready
            base = f"http://127.0.0.1:{port}"

            def waiting() -> bool:
                assert process.poll() is None, f"worker exited with {process.returncode}"
                return "WeightsMissing" in log_path.read_text()

            eventually(waiting, timeout=60, what="the worker to report the missing weights")
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            ready = httpx.get(f"{base}/readyz", timeout=5)
            assert ready.status_code == 503
            assert ready.json()["checks"]["weights_published"] is False

            # And it has taken nothing from the queue (the message was never received)
            received = world.sqs.receive_message(
                QueueUrl=world.queue_urls[Lane.INTERACTIVE],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                VisibilityTimeout=0,
            )["Messages"]
            assert received[0]["Attributes"]["ApproximateReceiveCount"] == "1"
            assert world.record(message.job_id).status is JobStatus.QUEUED

            # When the weights are published, it syncs them and becomes ready
            source = tmp_path / "published"
            source.mkdir()
            (source / "unet.bin").write_bytes(b"\x02" * 1024)
            manifest = WeightsManifest.of_directory(source, MODEL_VERSION)
            world.s3.upload_file(str(source / "unet.bin"), bucket, manifest.object_key("unet.bin"))
            world.s3.put_object(
                Bucket=bucket, Key=manifest.manifest_key, Body=manifest.model_dump_json()
            )
            eventually(
                lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200,
                timeout=60,
                what="the worker to become ready",
            )
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    assert any(line.get("message", "").startswith("waiting for the weights") for line in lines)
