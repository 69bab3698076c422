"""Starts the whole service locally and tears it down again, in order, whatever happens.

emulator (thread) -> resources -> API gateway (subprocess) -> weights -> worker (subprocess),
plus an SQS queue subscribed to the completion topic so local mode receives the events a user's
own subscriber would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess  # nosec B404 (children are our own argv, no shell)
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import stage_config
from runtime.cli.upload_weights import upload_weights
from runtime.common.jobs import MODEL_VERSION
from runtime.common.names import BucketRole, EnvVar, ResourceNames
from runtime.local.emulator import LOCAL_CREDENTIALS, local_session, moto_server
from runtime.local.processes import (
    LocalModeError,
    ManagedProcess,
    free_port,
    port_open,
    wait_until,
)
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision
from runtime.local.workers import save_worker_env

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_TENANT = "local"
LOCAL_API_KEY_ID = "local-key"
ENV_LOCAL_API_KEYS = "MUSETALK_LOCAL_API_KEYS"  # gateway only: {key value: key id}
ENV_LOCAL_DEAD_LETTER_QUEUES = "MUSETALK_LOCAL_DEAD_LETTER_QUEUES"  # gateway only: [queue url]
STARTUP_TIMEOUT_SECONDS = 60
WORKER_STOP_GRACE_SECONDS = 30
# Host credentials and profiles must never reach children that talk to the emulator.
_HOST_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)

Say = Callable[[str], None]
# Webhooks to a receiver on this machine (http://127.0.0.1) are allowed only locally, and alike
# for the API's admission, the worker's delivery and the gateway's redelivery.
LOCAL_WEBHOOK_ENV = {EnvVar.WEBHOOK_ALLOW_PRIVATE.value: "true"}


@dataclass(frozen=True)
class StackOptions:
    work_dir: Path
    models_dir: Path | None = None  # None: generate tiny random weights
    stage: str = "dev"
    # Browser origins allowed on top of the stage's (`up --allow-origin`): a page served elsewhere.
    extra_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunningStack:
    api_url: str
    api_key: str
    tenant: str
    resources: LocalResources
    session: Any  # boto3.Session bound to the emulator's dummy credentials
    completion_queue_url: str
    logs_dir: Path
    worker: ManagedProcess

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.resources.endpoint_url)


@contextmanager
def running_stack(options: StackOptions, say: Say) -> Iterator[RunningStack]:
    """Everything local mode runs, stopped again (worker, gateway, emulator) on exit."""
    work = options.work_dir
    logs = work / "logs"
    for stale in (logs, work / "models-tiny"):
        shutil.rmtree(stale, ignore_errors=True)
    logs.mkdir(parents=True)
    session = local_session(LOCAL_REGION)
    with ExitStack() as cleanup:
        say("starting the local AWS emulator (moto server)")
        endpoint = cleanup.enter_context(moto_server())
        resources = _provision(session, endpoint, options, say)
        completion_queue = _subscribe_completion_queue(session, resources)
        env = _child_env(resources)
        api_key = secrets.token_urlsafe(24)
        api_url = _start_gateway(cleanup, resources, env, api_key=api_key, logs=logs, say=say)
        models = _weights(options, env, logs, say)
        _upload_weights(session, resources, models, say)
        worker = _start_worker(
            cleanup, resources, env, models=models, work=work, logs=logs, say=say
        )
        # Runs first on the way out, whatever the way (success, error, Ctrl-C, SIGTERM).
        cleanup.callback(
            say, "stopping the worker (it hands back any job it holds), the API and the emulator"
        )

        yield RunningStack(
            api_url=api_url,
            api_key=api_key,
            tenant=LOCAL_TENANT,
            resources=resources,
            session=session,
            completion_queue_url=completion_queue,
            worker=worker,
            logs_dir=logs,
        )


def _provision(session: Any, endpoint: str, options: StackOptions, say: Say) -> LocalResources:
    """The stage's buckets, tables, queues and topics on the emulator, with `--allow-origin`s."""
    config = stage_config(options.stage)
    if options.extra_origins:
        origins = (*config.cors_allowed_origins, *options.extra_origins)
        config = dataclasses.replace(config, cors_allowed_origins=origins)
    names = ResourceNames(stage=config.stage, account=LOCAL_ACCOUNT, region=LOCAL_REGION)
    resources = provision(session, names=names, config=config, endpoint_url=endpoint)
    say(
        f"created the {config.stage} stage's buckets, tables, queues (+ DLQs) and topics "
        f"at {endpoint}"
    )
    return resources


def _start_gateway(
    cleanup: ExitStack,
    resources: LocalResources,
    env: dict[str, str],
    *,
    api_key: str,
    logs: Path,
    say: Say,
) -> str:
    """The API gateway subprocess, once it listens; its URL."""
    gateway_port = free_port()
    gateway = _start(
        cleanup,
        "API gateway",
        [sys.executable, "-m", "runtime.local", "gateway", "--port", str(gateway_port)],
        env={**env, **gateway_env(resources, api_key)},
        log_path=logs / "api.log",
        grace_seconds=5,
    )
    wait_until(
        lambda: port_open(gateway_port),
        timeout_seconds=STARTUP_TIMEOUT_SECONDS,
        what=f"the API gateway on port {gateway_port} (log: {gateway.log_path})",
        watch=[gateway],
    )
    api_url = f"http://127.0.0.1:{gateway_port}"
    say(f"API listening on {api_url} (log: {gateway.log_path})")
    # The key rides in the fragment, which the browser keeps to itself (docs/playground.md).
    say(f"playground page: {api_url}/playground/#key={api_key}")
    return api_url


def _upload_weights(session: Any, resources: LocalResources, models: Path, say: Say) -> None:
    uploaded = upload_weights(
        session.client("s3", endpoint_url=resources.endpoint_url),
        directory=models,
        bucket=resources.buckets[BucketRole.WEIGHTS],
        model_version=MODEL_VERSION,
    )
    say(
        f"uploaded {len(uploaded.manifest.files)} weight files with their checksum "
        f"manifest to s3://{resources.buckets[BucketRole.WEIGHTS]}/"
        f"{uploaded.manifest.manifest_key}"
    )


def _start_worker(
    cleanup: ExitStack,
    resources: LocalResources,
    env: dict[str, str],
    *,
    models: Path,
    work: Path,
    logs: Path,
    say: Say,
) -> ManagedProcess:
    # The weights directory is also the worker's cache: it verifies every file against
    # the manifest in the bucket, as on AWS, without copying hundreds of MB back.
    own_worker_env = {**_stack_env(resources), **worker_env(resources, models)}
    worker = _start(
        cleanup,
        "worker",
        [sys.executable, "-m", "runtime.worker"],
        env={**env, **own_worker_env},
        log_path=logs / "worker.log",
        grace_seconds=resources.config.task_stop_timeout_seconds,
    )
    # For `python -m runtime.local worker` (more workers, or one after this one died).
    cleanup.callback(save_worker_env(work, own_worker_env).unlink, missing_ok=True)
    say(f"worker started, pid {worker.pid} (log: {worker.log_path})")
    return worker


def _start(
    cleanup: ExitStack,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    grace_seconds: float,
) -> ManagedProcess:
    process = ManagedProcess(name, argv, env=env, log_path=log_path, cwd=REPO_ROOT)
    cleanup.callback(process.stop, grace_seconds)
    return process


def _weights(options: StackOptions, env: dict[str, str], logs: Path, say: Say) -> Path:
    if options.models_dir is not None:
        if not options.models_dir.is_dir():
            raise LocalModeError(f"--models {options.models_dir}: no such directory")
        say(f"weights: {options.models_dir} (--models)")
        return options.models_dir
    target = options.work_dir / "models-tiny"
    say(
        "weights: none given (--models DIR), so generating tiny RANDOM weights. The pipeline runs "
        "for real, but the video will not show speech-like lip movement."
    )
    with (logs / "make-weights.log").open("wb") as log:
        result = subprocess.run(  # noqa: S603  # nosec B603 (argv is ours, no shell)
            [sys.executable, "-m", "runtime.engine", "make-weights", str(target), "--tiny"],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise LocalModeError(
            f"generating tiny weights failed (status {result.returncode}); "
            f"see {logs / 'make-weights.log'}"
        )
    return target


def _subscribe_completion_queue(session: Any, resources: LocalResources) -> str:
    """An SQS queue subscribed to the completion topic: how local mode hears about jobs."""
    sqs = session.client("sqs", endpoint_url=resources.endpoint_url)
    url = sqs.create_queue(QueueName=f"{resources.names.prefix}-local-completion-listener")[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    session.client("sns", endpoint_url=resources.endpoint_url).subscribe(
        TopicArn=resources.completion_topic_arn, Protocol="sqs", Endpoint=arn
    )
    return str(url)


def _child_env(resources: LocalResources) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _HOST_AWS_VARIABLES}
    return {**env, **_stack_env(resources)}


def _stack_env(resources: LocalResources) -> dict[str, str]:
    """What every child gets from the stack, whatever the host's environment holds."""
    env = dict(LOCAL_CREDENTIALS)
    env.update({"AWS_DEFAULT_REGION": LOCAL_REGION, "AWS_REGION": LOCAL_REGION})
    env.update({str(name): value for name, value in resources.runtime_env().items()})
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_env(resources: LocalResources, models_cache: Path) -> dict[str, str]:
    """The worker's own variables on top of `runtime_env`: the stage's settings as the stack
    passes them to the worker task, plus local-only knobs (CPU, short polls)."""
    config = resources.config
    return {
        EnvVar.MODELS_DIR: str(models_cache),
        EnvVar.LANES: ",".join(lane.value for lane in resources.queue_urls),
        EnvVar.HEARTBEAT_SECONDS: str(config.heartbeat_seconds),
        EnvVar.VISIBILITY_TIMEOUT_SECONDS: str(config.visibility_timeout_seconds),
        EnvVar.STOP_TIMEOUT_SECONDS: str(config.task_stop_timeout_seconds),
        EnvVar.MAX_RECEIVE_COUNT: str(config.interactive.max_receive_count),
        EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS: (
            "true" if config.share_render_cache_across_tenants else "false"
        ),
        EnvVar.AVATAR_CACHE_MEMORY_BYTES: str(1024**3),
        EnvVar.HEALTH_PORT: str(free_port()),
        EnvVar.DEVICE: "cpu",
        EnvVar.DTYPE: "float32",
        # Short polls and retries: one user watching, no fleet to spare requests for.
        EnvVar.POLL_WAIT_SECONDS: "1",
        EnvVar.RETRY_BASE_SECONDS: "2",
        **LOCAL_WEBHOOK_ENV,
    }


def gateway_env(resources: LocalResources, api_key: str) -> dict[str, str]:
    """The API process's own variables on top of `runtime_env`: the local key, the queues its
    trigger loop drains, and the same webhook targets as the worker."""
    return {
        EnvVar.API_KEY_TENANTS: json.dumps({LOCAL_API_KEY_ID: LOCAL_TENANT}),
        ENV_LOCAL_API_KEYS: json.dumps({api_key: LOCAL_API_KEY_ID}),
        ENV_LOCAL_DEAD_LETTER_QUEUES: json.dumps(list(resources.dead_letter_queue_urls.values())),
        "POWERTOOLS_SERVICE_NAME": "musetalk-api",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MuseTalk",
        **LOCAL_WEBHOOK_ENV,
    }
