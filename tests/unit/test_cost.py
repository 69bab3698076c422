"""Cost per job: the host's instance type and the stage's price table, or no number at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.common.cost import estimated_cost_usd, parse_prices, read_instance_type


def test_an_hour_on_a_priced_instance_costs_its_hourly_price(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text('{"instance_type": "g5.xlarge"}')
    instance_type = read_instance_type(host)
    assert instance_type == "g5.xlarge"
    prices = parse_prices('{"g5.xlarge": 1.006}')
    assert estimated_cost_usd(3600, instance_type, prices) == pytest.approx(1.006)
    assert estimated_cost_usd(90, instance_type, prices) == pytest.approx(0.02515)


def test_unknown_type_or_price_gives_no_cost(tmp_path: Path) -> None:
    assert read_instance_type(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("not json")
    assert read_instance_type(tmp_path / "bad.json") is None
    assert estimated_cost_usd(60, None, {"g5.xlarge": 1.0}) is None
    assert estimated_cost_usd(60, "p5.48xlarge", {"g5.xlarge": 1.0}) is None


@pytest.mark.parametrize("raw", ['["g5.xlarge"]', '{"g5.xlarge": -1}', '{"g5.xlarge": "1"}'])
def test_a_malformed_price_table_is_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="prices"):
        parse_prices(raw)
