"""The cold-lane figure (`bench/cold_lane.py`) is the sum of its named parts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.bench_scripts import load_bench_script


def test_the_first_segment_comes_from_a_speak_report_and_the_total_sums_every_part(
    tmp_path: Path,
) -> None:
    lane = load_bench_script("cold_lane")
    speak = tmp_path / "speak.json"
    speak.write_text(
        json.dumps(
            {
                "runs": [
                    {"writer": {"kind": "one"}, "stages_ms": {"first_segment": 1.0}},
                    {"writer": {"kind": "segments"}, "stages_ms": {"first_segment": 412.0}},
                ]
            }
        )
    )

    result = lane.main(["--boot-s", "60", "--speak", str(speak), "--avatar-cached"])

    parts = {part["part"]: part for part in result["parts"]}
    assert parts["instance boot"]["s"] == 60
    assert parts["first 125-frame segment"]["s"] == 0.41  # the segments row, not the other
    assert parts["avatar preparation (new avatar, 30 s)"]["s"] == 0
    assert result["total_s"] == round(sum(part["s"] for part in result["parts"]), 1)


def test_the_boot_and_the_scale_out_come_from_the_control_plane_simulation() -> None:
    from infra.simulation.alarms import METRIC_DELAY_SECONDS
    from infra.simulation.ecs import ColdStart

    lane = load_bench_script("cold_lane")

    result = lane.main([])

    parts = {part["part"]: part for part in result["parts"]}
    assert parts["instance boot"]["s"] == ColdStart().host_boot
    assert "ColdStart.host_boot" in parts["instance boot"]["source"]
    assert parts["scale-out decision"]["s"] == METRIC_DELAY_SECONDS + 120
    assert list(parts)[:2] == ["scale-out decision", "instance boot"]  # paid in this order
