"""The control-plane simulation (infra/simulation, docs/simulation.md) replays each synthesized
stage through what users live through, and every demand of every scenario must hold. It reads the
templates this session synthesized, so it checks the stack as deployed, not a copy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from infra.simulation.ecs import ColdStart
from infra.simulation.scenarios import SCENARIOS, cold_start_budget
from infra.simulation.sqs import WAKE_DELAY_SECONDS
from infra.simulation.template import read
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import logical_id, resources


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_demand_of_the_scenario_holds(synthesized: Synthesized, scenario: str) -> None:
    outcome = SCENARIOS[scenario](read(synthesized.raw), ColdStart())
    timeline = "\n".join(outcome.world.timeline())
    assert outcome.unmet() == [], f"{outcome.name} ({synthesized.config.stage}):\n{timeline}"


def test_a_slower_cold_start_still_starts_one_task_for_one_message(prod: Synthesized) -> None:
    # Twice the image pull and weight sync (a bigger image, a slow region): still one task
    slow = ColdStart(image_pull=360, weight_sync=240)
    outcome = SCENARIOS["one-batch-message"](read(prod.raw), slow)
    assert outcome.unmet() == []


def _without_schedule(raw: dict[str, Any]) -> dict[str, Any]:
    """The template less the sweeper's schedule."""
    stripped = copy.deepcopy(raw)
    rule = logical_id(raw, "AWS::Events::Rule", "ApiSweepSchedule")
    del stripped["Resources"][rule]
    return stripped


def _without_touch_grant(raw: dict[str, Any]) -> dict[str, Any]:
    """The template less the sweeper role's `sqs:GetQueueAttributes`."""
    stripped = copy.deepcopy(raw)
    role = logical_id(raw, "AWS::IAM::Role", "ApiSweeperServiceRole")
    for policy in resources(stripped, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"].get("Roles", []):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                granted = statement["Action"]
                granted = [granted] if isinstance(granted, str) else granted
                statement["Action"] = [a for a in granted if a != "sqs:GetQueueAttributes"]
    return stripped


@pytest.mark.parametrize("strip", [_without_schedule, _without_touch_grant])
def test_without_the_keep_awake_the_first_batch_job_after_a_quiet_night_starts_late(
    prod: Synthesized, strip: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    # With the sweeper's touch the queue stays awake: the job starts as on a lane used minutes ago
    ours = SCENARIOS["batch-after-quiet-night"](read(prod.raw), ColdStart())
    fresh = SCENARIOS["one-batch-message"](read(prod.raw), ColdStart())
    assert ours.unmet() == []
    started = ours.world.seconds(ours.world.jobs["b1"].started_at)
    assert started is not None
    assert started == fresh.world.seconds(fresh.world.jobs["b1"].started_at)
    # Without it the queue sleeps through the night, and its metrics come back only after the
    # wake delay: the scaling alarm sees the message that much later
    asleep = SCENARIOS["batch-after-quiet-night"](read(strip(prod.raw)), ColdStart())
    budget = cold_start_budget(ColdStart())
    assert asleep.unmet() == [f"the job starts within the cold start ({budget} s)"]
    late = asleep.world.seconds(asleep.world.jobs["b1"].started_at)
    assert late is not None
    assert late - started == WAKE_DELAY_SECONDS
