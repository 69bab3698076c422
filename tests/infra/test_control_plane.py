"""The control-plane simulation (infra/simulation, docs/simulation.md) replays each synthesized
stage through what users live through, and every demand of every scenario must hold. It reads the
templates this session synthesized, so it checks the stack as deployed, not a copy."""

from __future__ import annotations

import pytest

from infra.simulation.ecs import ColdStart
from infra.simulation.scenarios import SCENARIOS
from infra.simulation.template import read
from tests.infra.conftest import Synthesized


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
