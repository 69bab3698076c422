"""Local mode gives the worker the stage's settings the way the stack gives them to the task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.config import stage_config
from runtime.api.settings import Settings
from runtime.common.names import BucketRole, Lane, ResourceNames
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources
from runtime.local.stack import gateway_env, worker_env
from runtime.worker.config import WorkerSettings


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{resource}"


def local_resources(*, share_renders: bool) -> LocalResources:
    config = dataclasses.replace(
        stage_config("dev"), share_render_cache_across_tenants=share_renders
    )
    names = ResourceNames(stage=config.stage, account=LOCAL_ACCOUNT, region=LOCAL_REGION)
    lanes = {lane: f"http://127.0.0.1:9/{lane.value}" for lane in Lane}
    return LocalResources(
        names=names,
        config=config,
        endpoint_url="http://127.0.0.1:9",
        buckets={role: f"bucket-{role.value}" for role in BucketRole},
        queue_urls=lanes,
        dead_letter_queue_urls=lanes,
        completion_topic_arn=arn("sns", "completion"),
        alarm_topic_arn=arn("sns", "alarms"),
        webhook_secret_arn=arn("secretsmanager", "secret:hook"),
        webhook_queue_url="http://127.0.0.1:9/webhooks",
        webhook_dead_letter_queue_url="http://127.0.0.1:9/webhooks-dlq",
    )


@pytest.mark.parametrize("share_renders", [False, True])
def test_the_worker_shares_renders_across_tenants_exactly_when_the_stage_config_says(
    share_renders: bool, tmp_path: Path
) -> None:
    # Given a stage whose config shares renders across tenants, or not
    resources = local_resources(share_renders=share_renders)

    # When local mode builds the worker's environment and the worker reads it
    env = {
        str(k): v for k, v in {**resources.runtime_env(), **worker_env(resources, tmp_path)}.items()
    }
    settings = WorkerSettings.from_env(env)

    # Then the worker follows the stage's switch
    assert settings.share_render_cache_across_tenants is share_renders


def test_the_api_and_the_worker_send_webhooks_to_the_same_local_receivers(tmp_path: Path) -> None:
    # Given local mode's environments for the API process (admission and redelivery) and worker
    resources = local_resources(share_renders=False)
    base = {str(k): v for k, v in resources.runtime_env().items()}
    gateway = {**base, **{str(k): v for k, v in gateway_env(resources, "key").items()}}
    worker = {**base, **{str(k): v for k, v in worker_env(resources, tmp_path).items()}}

    # When each reads its settings
    api_allows = Settings.from_env(gateway).webhook_allow_private
    worker_allows = WorkerSettings.from_env(worker).webhook_allow_private

    # Then both may reach a receiver on this machine (the redelivery path too)
    assert api_allows is worker_allows is True
