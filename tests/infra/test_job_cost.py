"""Cost per job infra: hosts write their instance type for the worker, the task mounts it
read-only, and the worker gets the stage's price table."""

from __future__ import annotations

import json

from runtime.common.cost import HOST_INFO_CONTAINER_DIR, HOST_INFO_FILE_NAME, HOST_INFO_HOST_DIR
from runtime.common.names import EnvVar
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import resources


def test_hosts_write_their_instance_type_and_workers_mount_it_read_only(
    synthesized: Synthesized,
) -> None:
    user_data = json.dumps(
        [
            lt["Properties"]["LaunchTemplateData"].get("UserData")
            for lt in resources(synthesized.raw, "AWS::EC2::LaunchTemplate").values()
        ]
    )
    assert "meta-data/instance-type" in user_data
    assert f"{HOST_INFO_HOST_DIR}/{HOST_INFO_FILE_NAME}" in user_data
    task_definitions = resources(synthesized.raw, "AWS::ECS::TaskDefinition").values()
    assert task_definitions
    for task_definition in task_definitions:
        props = task_definition["Properties"]
        (volume,) = [v for v in props["Volumes"] if v["Name"] == "host-info"]
        assert volume["Host"] == {"SourcePath": HOST_INFO_HOST_DIR}
        (container,) = props["ContainerDefinitions"]
        (mount,) = [m for m in container["MountPoints"] if m["SourceVolume"] == "host-info"]
        assert mount == {
            "ContainerPath": HOST_INFO_CONTAINER_DIR,
            "ReadOnly": True,
            "SourceVolume": "host-info",
        }
        env = {v["Name"]: v["Value"] for v in container["Environment"]}
        prices = json.loads(env[EnvVar.GPU_PRICES_JSON.value])
        assert prices == dict(synthesized.config.gpu_prices_usd_per_hour)
        assert set(synthesized.config.gpu_instance_types) <= set(prices)
