"""The idle cost per month is itemized from the synthesized templates, and the table in
docs/deploy.md is that table (regenerate with `python scripts/simulate.py --cost`)."""

from __future__ import annotations

from infra.simulation.cost import HOURS_PER_MONTH, PRICES, cost_table, idle_cost
from tests.infra.conftest import REPO_ROOT, Synthesized


def test_prod_pays_for_its_nat_gateways_endpoints_and_warm_on_demand_hosts(
    prod: Synthesized,
) -> None:
    items = dict(idle_cost(prod.raw))
    assert items["NAT gateways"] == round(2 * PRICES["nat_gateway_hour"] * HOURS_PER_MONTH, 2)
    # Nine interface endpoints in two AZs
    assert items["Interface endpoints"] == round(18 * 0.01 * HOURS_PER_MONTH, 2)
    warm = [item for item in items if "warm interactive host" in item]
    assert warm == ["2 warm interactive host(s), g6.xlarge (on-demand)"]


def test_dev_has_no_endpoints_and_one_warm_spot_host(dev: Synthesized) -> None:
    items = dict(idle_cost(dev.raw))
    assert "Interface endpoints" not in items
    assert "1 warm interactive host(s), g4dn.xlarge (spot, at most)" in items


def test_the_table_in_docs_deploy_md_is_the_current_one(
    dev: Synthesized, prod: Synthesized
) -> None:
    table = cost_table({"dev": dev.raw, "prod": prod.raw})
    assert table in (REPO_ROOT / "docs" / "deploy.md").read_text()
