"""Worker services: one per lane, one GPU per task, stop timeout to hand work back, logs with
retention, runtime config only through EnvVar; scaling on backlog per task incl. from zero."""

from __future__ import annotations

import json

import pytest

from infra.config import LaneConfig
from runtime.common.names import EnvVar, Lane
from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.worker.engine_loader import x264_preset
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import logical_id, one, resources

_WORKER_ENV = {
    EnvVar.STAGE,
    EnvVar.LANES,
    EnvVar.UPLOADS_BUCKET,
    EnvVar.OUTPUTS_BUCKET,
    EnvVar.WEIGHTS_BUCKET,
    EnvVar.AVATAR_CACHE_BUCKET,
    EnvVar.JOBS_TABLE,
    EnvVar.INTERACTIVE_QUEUE_URL,
    EnvVar.BATCH_QUEUE_URL,
    EnvVar.COMPLETION_TOPIC_ARN,
    EnvVar.WEBHOOK_SECRET_ARN,
    EnvVar.LIMITS_JSON,
    EnvVar.MODELS_DIR,
    EnvVar.HEARTBEAT_SECONDS,
    EnvVar.VISIBILITY_TIMEOUT_SECONDS,
    EnvVar.STOP_TIMEOUT_SECONDS,
    EnvVar.MAX_RECEIVE_COUNT,
    EnvVar.HEALTH_PORT,
    EnvVar.DEVICE,
    EnvVar.DTYPE,
}


def _lane_config(s: Synthesized, lane: Lane) -> LaneConfig:
    return s.config.interactive if lane is Lane.INTERACTIVE else s.config.batch


def _container(s: Synthesized, lane: Lane) -> dict:
    _, task = one(s.raw, "AWS::ECS::TaskDefinition", f"{lane.value.title()}WorkerTask")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return container


def _env(container: dict) -> dict[str, object]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_task_holds_one_gpu_and_stops_gracefully(
    synthesized: Synthesized, lane: Lane
) -> None:
    container = _container(synthesized, lane)
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert container["StopTimeout"] == synthesized.config.task_stop_timeout_seconds
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    health = container["HealthCheck"]["Command"]
    assert "/healthz" in " ".join(health)
    # Image is built from docker/ as a CDK asset
    assert "container-assets" in json.dumps(container["Image"])


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_logs_go_to_a_log_group_with_retention(synthesized: Synthesized, lane: Lane) -> None:
    options = _container(synthesized, lane)["LogConfiguration"]["Options"]
    group_id = options["awslogs-group"]["Ref"]
    group = synthesized.raw["Resources"][group_id]
    assert group["Properties"]["RetentionInDays"] == synthesized.config.log_retention_days


@pytest.mark.parametrize("lane", list(Lane))
def test_worker_gets_its_runtime_config_through_envvar_names(
    synthesized: Synthesized, lane: Lane
) -> None:
    env = _env(_container(synthesized, lane))
    assert set(env) >= {str(v) for v in _WORKER_ENV}
    unknown = {k for k in env if k not in {str(v) for v in EnvVar}}
    assert unknown <= {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert env[EnvVar.LANES] == lane.value
    assert env[EnvVar.DEVICE] == "cuda"
    assert env[EnvVar.DTYPE] == "float16"
    # Workers run the AOT packages published for their card (eager until there are any), so a
    # deployed fleet renders at the benchmark's compiled speed, not the eager default's
    assert synthesized.config.worker_compile == "aot"
    assert env[EnvVar.COMPILE] == "aot"
    # The engine's encoder preset (the benchmark's), as the worker reads and accepts it
    assert env[EnvVar.X264_PRESET] == synthesized.config.worker_x264_preset == DEFAULT_PRESET
    assert x264_preset({EnvVar.X264_PRESET: str(env[EnvVar.X264_PRESET])}) == DEFAULT_PRESET
    assert env[EnvVar.MAX_RECEIVE_COUNT] == str(_lane_config(synthesized, lane).max_receive_count)
    assert env[EnvVar.STOP_TIMEOUT_SECONDS] == str(synthesized.config.task_stop_timeout_seconds)
    assert env[EnvVar.WEBHOOK_SECRET_ARN] == {
        "Ref": logical_id(synthesized.raw, "AWS::SecretsManager::Secret", "NotificationsWebhook")
    }
    # Renders (output cache, claim, media-error verdict) are per tenant unless the stage shares them
    assert synthesized.config.share_render_cache_across_tenants is False
    assert env[EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS] == "false"


def test_one_service_per_lane_with_the_configured_capacity_strategy(
    synthesized: Synthesized,
) -> None:
    services = resources(synthesized.raw, "AWS::ECS::Service")
    assert len(services) == len(Lane)
    spot = logical_id(synthesized.raw, "AWS::ECS::CapacityProvider", "GpuCapacitySpot")
    for lane in Lane:
        _, service = one(synthesized.raw, "AWS::ECS::Service", f"{lane.value.title()}WorkerService")
        strategy = service["Properties"]["CapacityProviderStrategy"]
        assert {"CapacityProvider": {"Ref": spot}, "Weight": 1} in strategy
        if lane is Lane.INTERACTIVE and synthesized.config.on_demand_fallback_for_interactive:
            on_demand = logical_id(
                synthesized.raw, "AWS::ECS::CapacityProvider", "GpuCapacityOnDemand"
            )
            assert {
                "CapacityProvider": {"Ref": on_demand},
                "Base": synthesized.config.interactive.min_tasks,
                "Weight": 0,
            } in strategy
        else:
            assert len(strategy) == 1


@pytest.mark.parametrize("lane", list(Lane))
def test_task_count_bounds_follow_the_lane_config(synthesized: Synthesized, lane: Lane) -> None:
    lane_config = _lane_config(synthesized, lane)
    _, target = one(
        synthesized.raw,
        "AWS::ApplicationAutoScaling::ScalableTarget",
        f"{lane.value.title()}WorkerTaskCount",
    )
    assert target["Properties"]["MinCapacity"] == lane_config.min_tasks
    assert target["Properties"]["MaxCapacity"] == lane_config.max_tasks
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    # Scaling acts through the ECS service-linked role, not a role without permissions
    assert "AWSServiceRoleForApplicationAutoScaling_ECSService" in json.dumps(
        target["Properties"]["RoleARN"]
    )


def test_interactive_stays_warm_and_batch_scales_to_zero(synthesized: Synthesized) -> None:
    assert synthesized.config.interactive.min_tasks >= 1
    assert synthesized.config.batch.min_tasks == 0


@pytest.mark.parametrize("lane", list(Lane))
def test_the_task_count_is_exactly_what_the_backlog_needs(
    synthesized: Synthesized, lane: Lane
) -> None:
    # Given the lane's scaling policies
    title = lane.value.title()
    config = _lane_config(synthesized, lane)
    target = logical_id(
        synthesized.raw, "AWS::ApplicationAutoScaling::ScalableTarget", f"{title}WorkerTaskCount"
    )
    policies = {
        k: p["Properties"]
        for k, p in resources(synthesized.raw, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if p["Properties"]["ScalingTargetId"] == {"Ref": target}
    }
    # Then no policy multiplies the current count (target tracking) or adds to it
    assert {p["PolicyType"] for p in policies.values()} == {"StepScaling"}
    configs = [p["StepScalingPolicyConfiguration"] for p in policies.values()]
    assert {c["AdjustmentType"] for c in configs} == {"ExactCapacity"}
    # And with the alarm at 1 job, k tasks serve up to k * backlog_per_task jobs
    per_task = config.backlog_per_task_target
    (backlog,) = [c for c in configs if len(c["StepAdjustments"]) == config.max_tasks]
    for step in backlog["StepAdjustments"]:
        tasks = step["ScalingAdjustment"]
        jobs_from = 1 + step["MetricIntervalLowerBound"]
        assert tasks == -(-jobs_from // per_task)
    # And the count is driven by the lane queue's jobs, waiting and in flight
    alarms = [
        a["Properties"]
        for a in resources(synthesized.raw, "AWS::CloudWatch::Alarm").values()
        if any(action.get("Ref") in policies for action in a["Properties"].get("AlarmActions", []))
    ]
    assert len(alarms) == 2
    queue = next(
        k
        for k in resources(synthesized.raw, "AWS::SQS::Queue")
        if k.startswith(f"Queues{title}") and "DeadLetters" not in k
    )
    for alarm in alarms:
        metrics = {m["Id"]: m for m in alarm["Metrics"]}
        assert metrics["expr_1"]["Expression"] == "FILL(visible, 0) + FILL(inflight, 0)"
        for query_id in ("visible", "inflight"):
            dims = metrics[query_id]["MetricStat"]["Metric"]["Dimensions"]
            assert dims[0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}


def test_services_wait_for_the_capacity_providers_to_join_the_cluster(
    synthesized: Synthesized,
) -> None:
    association = logical_id(
        synthesized.raw, "AWS::ECS::ClusterCapacityProviderAssociations", "GpuCapacityCluster"
    )
    for service in resources(synthesized.raw, "AWS::ECS::Service").values():
        assert association in service["DependsOn"]


def test_weights_cache_survives_task_restarts_on_a_host(synthesized: Synthesized) -> None:
    for lane in Lane:
        _, task = one(
            synthesized.raw, "AWS::ECS::TaskDefinition", f"{lane.value.title()}WorkerTask"
        )
        (volume,) = [v for v in task["Properties"]["Volumes"] if v["Name"] == "models"]
        assert volume["DockerVolumeConfiguration"]["Scope"] == "shared"
        (mount,) = [
            m
            for m in task["Properties"]["ContainerDefinitions"][0]["MountPoints"]
            if m["SourceVolume"] == "models"
        ]
        env = _env(task["Properties"]["ContainerDefinitions"][0])
        assert mount["ContainerPath"] == env[EnvVar.MODELS_DIR]
        # and so does the engine's fp16 weight cache, where the engine looks for it first
        # (`<models>.cache` beside the models dir: runtime.engine.weight_cache.default_cache_dir)
        (cache,) = [v for v in task["Properties"]["Volumes"] if v["Name"] == "models-cache"]
        assert cache["DockerVolumeConfiguration"]["Scope"] == "shared"
        (cache_mount,) = [
            m
            for m in task["Properties"]["ContainerDefinitions"][0]["MountPoints"]
            if m["SourceVolume"] == "models-cache"
        ]
        assert cache_mount["ContainerPath"] == env[EnvVar.MODELS_DIR] + ".cache"
        assert cache_mount["ReadOnly"] is False
