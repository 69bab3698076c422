"""Cost per job: GPU-seconds times the hourly price of the instance type that rendered it.

The worker cannot ask IMDS (containers are held to hop limit 1, on purpose), and the ECS task
metadata does not name the instance type. So each GPU host's user data writes its instance type,
read from IMDS by the host itself, to `HOST_INFO_HOST_DIR/HOST_INFO_FILE_NAME`; the task mounts that
directory read-only at `HOST_INFO_CONTAINER_DIR`. Prices come from the stage config (a table of
USD per instance-hour, passed as JSON); every fleet type has one GPU, so the instance price is the
GPU's price. The result is an estimate: list price, not the spot price actually paid.
"""

from __future__ import annotations

import json
from pathlib import Path

HOST_INFO_HOST_DIR = "/etc/musetalk"
HOST_INFO_CONTAINER_DIR = "/run/musetalk/host"
HOST_INFO_FILE_NAME = "host.json"


def read_instance_type(path: Path) -> str | None:
    """`{"instance_type": "g5.xlarge"}` from the host file; None when absent or unreadable."""
    try:
        value = json.loads(path.read_text()).get("instance_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def parse_prices(raw: str | None) -> dict[str, float]:
    if not raw:
        return {}
    prices = json.loads(raw)
    if not isinstance(prices, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and v >= 0 for k, v in prices.items()
    ):
        raise ValueError("GPU prices must map instance types to non-negative USD per hour")
    return {k: float(v) for k, v in prices.items()}


def estimated_cost_usd(
    gpu_seconds: float, instance_type: str | None, prices: dict[str, float]
) -> float | None:
    """None when the instance type or its price is unknown (never a made-up number)."""
    if instance_type is None or instance_type not in prices:
        return None
    return round(gpu_seconds / 3600 * prices[instance_type], 6)
