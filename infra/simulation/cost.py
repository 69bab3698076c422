"""What a stage costs per month while no job runs, itemized from its synthesized template.

Only what the template makes bill by the hour: NAT gateways and their public IPv4 addresses,
interface endpoints (per subnet), the warm GPU hosts the lanes' minimum tasks hold (instance and
root volume), alarms by the metrics they read, dashboards, KMS keys and secrets. Pay-per-request
services (API Gateway, Lambda, SQS, DynamoDB on demand, S3, logs) cost cents when idle and are
left out. Prices: us-east-1 list prices (`PRICES`, sources in docs/simulation.md); a warm host is
priced from the task definition's `MUSETALK_GPU_PRICES_JSON`: the first listed type for on-demand
hosts (their allocation is prioritized), the cheapest for spot hosts (priced at its on-demand
rate, an upper bound).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.simulation.template import read

HOURS_PER_MONTH = 730
PRICES = {
    "nat_gateway_hour": 0.045,
    "public_ipv4_hour": 0.005,
    "interface_endpoint_hour_per_az": 0.01,
    "gp3_gb_month": 0.08,
    "gp3_mibps_month_above_125": 0.04,
    "alarm_metric_month": 0.10,
    "dashboard_month": 3.00,
    "kms_key_month": 1.00,
    "secret_month": 0.40,
}


def idle_cost(template: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(item, USD per month) for everything that bills while the stage is idle."""
    resources = template["Resources"]

    def count(kind: str) -> int:
        return sum(1 for r in resources.values() if r["Type"] == kind)

    items = [
        (
            "NAT gateways",
            count("AWS::EC2::NatGateway") * PRICES["nat_gateway_hour"] * HOURS_PER_MONTH,
        ),
        (
            "NAT public IPv4 addresses",
            count("AWS::EC2::EIP") * PRICES["public_ipv4_hour"] * HOURS_PER_MONTH,
        ),
        ("Interface endpoints", _endpoints(resources)),
    ]
    items += _warm_hosts(template)
    alarm_metrics = sum(
        len([m for m in r["Properties"].get("Metrics", []) if "MetricStat" in m]) or 1
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )
    items += [
        (
            f"CloudWatch alarms ({alarm_metrics} metrics)",
            alarm_metrics * PRICES["alarm_metric_month"],
        ),
        ("CloudWatch dashboard", count("AWS::CloudWatch::Dashboard") * PRICES["dashboard_month"]),
        ("KMS key", count("AWS::KMS::Key") * PRICES["kms_key_month"]),
        ("Secrets Manager secret", count("AWS::SecretsManager::Secret") * PRICES["secret_month"]),
    ]
    return [(item, round(usd, 2)) for item, usd in items if usd]


def _endpoints(resources: Mapping[str, Any]) -> float:
    per_az = sum(
        len(r["Properties"].get("SubnetIds", []))
        for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
        and r["Properties"].get("VpcEndpointType") == "Interface"
    )
    return per_az * PRICES["interface_endpoint_hour_per_az"] * HOURS_PER_MONTH


def _warm_hosts(template: Mapping[str, Any]) -> list[tuple[str, float]]:
    model = read(template)
    volume = _root_volume_month(template["Resources"])
    items = []
    for lane in model.lanes.values():
        if not lane.min_tasks:
            continue
        provider = model.providers[lane.strategy[0][0]]
        priced = {t: lane.gpu_prices[t] for t in provider.instance_types if t in lane.gpu_prices}
        if provider.on_demand:  # on-demand allocation is `prioritized`: the first listed type
            cheapest, kind = next(iter(priced)), "on-demand"
        else:  # price-capacity-optimized spot: priced at the cheapest type's on-demand rate
            cheapest, kind = min(priced, key=lambda t: priced[t]), "spot, at most"
        hosts = lane.min_tasks
        items.append(
            (
                f"{hosts} warm {lane.name} host(s), {cheapest} ({kind})",
                hosts * priced[cheapest] * HOURS_PER_MONTH,
            )
        )
        items.append((f"{hosts} warm {lane.name} root volume(s)", hosts * volume))
    return items


def _root_volume_month(resources: Mapping[str, Any]) -> float:
    template = next(r for r in resources.values() if r["Type"] == "AWS::EC2::LaunchTemplate")
    (ebs,) = [m["Ebs"] for m in template["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"]]
    throughput = max(0, int(ebs.get("Throughput", 125)) - 125)
    return (
        ebs["VolumeSize"] * PRICES["gp3_gb_month"]
        + throughput * PRICES["gp3_mibps_month_above_125"]
    )


def cost_table(templates: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per item, one column per stage, and the totals."""
    costs = {stage: dict(idle_cost(t)) for stage, t in templates.items()}
    rows: list[str] = []
    for stage_items in costs.values():
        rows += [item for item in stage_items if item not in rows]
    stages = list(templates)
    lines = [
        "| Item | " + " | ".join(stages) + " |",
        "|---|" + "---:|" * len(stages),
    ]
    for item in rows:
        cells = [f"{costs[s][item]:,.2f}" if item in costs[s] else "-" for s in stages]
        lines.append(f"| {item} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(costs[s].values()):,.2f}**" for s in stages]
    lines.append("| **Total (USD per month)** | " + " | ".join(totals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m infra.simulation.cost t1.json ...`
    import sys
    from pathlib import Path

    loaded = {Path(p).stem: json.loads(Path(p).read_text()) for p in sys.argv[1:]}
    print(cost_table(loaded))
