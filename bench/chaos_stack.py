"""The chaos run's local stack: the emulator with the stage's resources, several API gateway
processes (as Lambda runs concurrent instances), two tenants, and chaos workers that can be
killed and replaced (as ECS would)."""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.chaos_config import ChaosConfig
from infra.config import stage_config
from runtime.cli.client import ApiClient
from runtime.cli.upload_weights import upload_weights
from runtime.common.jobs import MODEL_VERSION
from runtime.common.names import BucketRole, EnvVar, ResourceNames
from runtime.local.emulator import local_session, moto_server
from runtime.local.processes import ManagedProcess, free_port, port_open, wait_until
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision
from runtime.local.stack import (
    ENV_LOCAL_API_KEYS,
    ENV_LOCAL_DEAD_LETTER_QUEUES,
    _child_env,
    _subscribe_completion_queue,
)
from runtime.local.stack import (
    worker_env as stage_worker_env,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TENANTS = {"key-a": "tenant-a", "key-b": "tenant-b"}


@dataclass
class Stack:
    resources: LocalResources
    session: Any
    gateway_urls: list[str]
    api_keys: dict[str, str]  # tenant -> key value
    completion_queue_url: str
    logs: Path
    spawn_worker: Callable[[dict[str, str]], ManagedProcess]
    workers: list[tuple[ManagedProcess, dict[str, str]]]
    webhook_secret: str

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.resources.endpoint_url)

    def api(self, tenant: str, index: int = 0) -> ApiClient:
        url = self.gateway_urls[index % len(self.gateway_urls)]
        return ApiClient(url, self.api_keys[tenant], timeout_seconds=60)


@contextmanager
def chaos_stack(config: ChaosConfig, work: Path) -> Iterator[Stack]:
    """The local stack with N gateways, two tenants and `config.workers` chaos workers."""
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    session = local_session(LOCAL_REGION)
    with ExitStack() as cleanup:
        endpoint = cleanup.enter_context(moto_server())
        stage = stage_config("dev")
        names = ResourceNames(stage=stage.stage, account=LOCAL_ACCOUNT, region=LOCAL_REGION)
        resources = provision(session, names=names, config=stage, endpoint_url=endpoint)
        completion_queue = _subscribe_completion_queue(session, resources)
        env = _child_env(resources)
        key_values = {tenant: secrets.token_urlsafe(24) for tenant in TENANTS.values()}
        gateway_urls = _start_gateways(cleanup, config, env, resources, key_values, logs)
        models = work / "models"
        models.mkdir(exist_ok=True)
        (models / "weights.bin").write_bytes(b"small engine")
        upload_weights(
            session.client("s3", endpoint_url=endpoint),
            directory=models,
            bucket=resources.buckets[BucketRole.WEIGHTS],
            model_version=MODEL_VERSION,
        )
        workers: list[tuple[ManagedProcess, dict[str, str]]] = []
        spawn = _worker_spawner(config, env, resources, models, logs, workers)
        cleanup.callback(lambda: [process.stop(10) for process, _ in workers])
        for index in range(config.workers):
            oom = {"SMALL_ENGINE_OOM_ABOVE": "2"} if index < config.oom_workers else {}
            spawn(oom)
        secret = session.client("secretsmanager", endpoint_url=endpoint).get_secret_value(
            SecretId=resources.webhook_secret_arn
        )["SecretString"]
        yield Stack(
            resources=resources,
            session=session,
            gateway_urls=gateway_urls,
            api_keys=key_values,
            completion_queue_url=completion_queue,
            logs=logs,
            spawn_worker=spawn,
            workers=workers,
            webhook_secret=str(secret),
        )


def _start_gateways(
    cleanup: ExitStack,
    config: ChaosConfig,
    env: dict[str, str],
    resources: LocalResources,
    key_values: dict[str, str],
    logs: Path,
) -> list[str]:
    """`config.gateways` API gateway processes knowing both tenants' keys; their URLs, each
    listening (stopped when `cleanup` closes)."""
    key_ids = {tenant: key_id for key_id, tenant in TENANTS.items()}
    gateway_env = {
        **env,
        EnvVar.API_KEY_TENANTS: json.dumps(TENANTS),
        ENV_LOCAL_API_KEYS: json.dumps({key_values[t]: key_ids[t] for t in key_values}),
        ENV_LOCAL_DEAD_LETTER_QUEUES: json.dumps(list(resources.dead_letter_queue_urls.values())),
        "POWERTOOLS_SERVICE_NAME": "musetalk-api",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MuseTalk",
    }
    gateway_urls = []
    for index in range(config.gateways):
        port = free_port()
        gateway = ManagedProcess(
            f"gateway-{index}",
            [sys.executable, "-m", "runtime.local", "gateway", "--port", str(port)],
            env={str(k): v for k, v in gateway_env.items()},
            log_path=logs / f"api-{index}.log",
            cwd=REPO_ROOT,
        )
        cleanup.callback(gateway.stop, 5)
        wait_until(
            lambda port=port: port_open(port),  # type: ignore[misc]
            timeout_seconds=60,
            what=f"gateway {index}",
            watch=[gateway],
        )
        gateway_urls.append(f"http://127.0.0.1:{port}")
    return gateway_urls


def _worker_spawner(
    config: ChaosConfig,
    env: dict[str, str],
    resources: LocalResources,
    models: Path,
    logs: Path,
    workers: list[tuple[ManagedProcess, dict[str, str]]],
) -> Callable[[dict[str, str]], ManagedProcess]:
    """Starts a chaos worker (the small engine, AWS faults injected, short leases) with `extra`
    environment, and records it in `workers`."""
    worker_base = {
        **env,
        EnvVar.ENGINE_FACTORY: "tests.support.small_engine:load",
        "SMALL_ENGINE_SECONDS_PER_FRAME": str(config.seconds_per_frame),
        "SMALL_ENGINE_PREPARE_SECONDS": str(config.prepare_seconds),
        "CHAOS_FAULT_RATE": str(config.fault_rate),
        "CHAOS_SLOW_PUT_SECONDS": str(config.slow_put_seconds),
    }
    counter = [0]

    def spawn(extra: dict[str, str]) -> ManagedProcess:
        counter[0] += 1
        worker_env = {
            **worker_base,
            **stage_worker_env(resources, models),
            # Short leases so a SIGKILLed worker's job is taken over within seconds.
            EnvVar.VISIBILITY_TIMEOUT_SECONDS: "4",
            EnvVar.HEARTBEAT_SECONDS: "1",
            EnvVar.STOP_TIMEOUT_SECONDS: "3",
            EnvVar.RETRY_BASE_SECONDS: "1",
            **extra,
        }
        process = ManagedProcess(
            f"worker-{counter[0]}",
            [sys.executable, "-m", "bench.chaos_worker"],
            env={str(k): v for k, v in worker_env.items()},
            log_path=logs / f"worker-{counter[0]}.log",
            cwd=REPO_ROOT,
        )
        workers.append((process, extra))
        return process

    return spawn
