"""Scale-in protection follows the job: held while one runs, released when idle."""

from __future__ import annotations

import json

from runtime.worker.protection import TaskProtection
from tests.support.recorder import recorder


def test_protection_is_enabled_with_an_expiry_and_released_through_the_agent() -> None:
    # Given the ECS agent endpoint
    with recorder() as agent:
        protection = TaskProtection(agent.url, expires_minutes=30)

        # When a job starts, beats (renewal not yet due) and the worker goes idle
        protection.hold()
        protection.hold()
        protection.release()
        protection.release()

    # Then exactly one enable and one disable reached the task-protection endpoint
    assert [(r.method, r.path) for r in agent.requests] == [
        ("PUT", "/task-protection/v1/state"),
        ("PUT", "/task-protection/v1/state"),
    ]
    assert json.loads(agent.requests[0].body) == {
        "ProtectionEnabled": True,
        "ExpiresInMinutes": 30,
    }
    assert json.loads(agent.requests[1].body) == {"ProtectionEnabled": False}
    assert not protection.held


def test_a_refused_enable_is_retried_at_the_next_hold() -> None:
    # Given an agent that refuses the first request
    with recorder(statuses=[500]) as agent:
        protection = TaskProtection(agent.url, expires_minutes=5)

        # When the worker holds twice
        protection.hold()
        assert not protection.held
        protection.hold()

    # Then the second attempt enabled it
    assert protection.held
    assert len(agent.requests) == 2


def test_without_an_agent_protection_is_a_no_op() -> None:
    protection = TaskProtection(None, expires_minutes=5)
    protection.hold()
    assert protection.held
    protection.release()
    assert not protection.held
