"""Replay the synthesized stack through the control-plane scenarios and print their timelines,
and print each stage's idle cost per month (docs/simulation.md, docs/deploy.md).

    python scripts/simulate.py                      # every scenario on prod, then the cost table
    python scripts/simulate.py --stage dev --scenario poison-job
    python scripts/simulate.py --cost               # only the cost table (dev and prod)

It synthesizes the stages itself (no credentials, no Docker), exactly as `app.py` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("dev", "prod")


def synthesize(stages: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    sys.path.insert(0, str(ROOT))
    import aws_cdk as cdk

    from infra.config import stage_config
    from infra.stacks.musetalk_stack import build_stack

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    with tempfile.TemporaryDirectory(prefix="musetalk-synth-") as outdir:
        app = cdk.App(context=context, outdir=outdir)
        stacks = {stage: build_stack(app, stage_config(stage)) for stage in stages}
        assembly = app.synth()
        return {
            stage: assembly.get_stack_by_name(stack.stack_name).template
            for stage, stack in stacks.items()
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="prod")
    parser.add_argument("--scenario", help="one scenario (default: all)")
    parser.add_argument("--cost", action="store_true", help="only the idle cost table")
    args = parser.parse_args()
    templates = synthesize(STAGES)

    from infra.simulation.cost import cost_table
    from infra.simulation.ecs import ColdStart
    from infra.simulation.scenarios import SCENARIOS
    from infra.simulation.template import read

    unmet = 0
    if not args.cost:
        names = [args.scenario] if args.scenario else sorted(SCENARIOS)
        for name in names:
            outcome = SCENARIOS[name](read(templates[args.stage]), ColdStart())
            print(f"\n## {outcome.name} ({args.stage})\n")
            print("\n".join(outcome.world.timeline()))
            print()
            for demand, held in outcome.checks.items():
                print(f"  [{'ok' if held else 'UNMET'}] {demand}")
            unmet += len(outcome.unmet())
    print("\n## Idle cost per month (USD, us-east-1 list prices)\n")
    print(cost_table(templates))
    return 1 if unmet else 0


if __name__ == "__main__":
    raise SystemExit(main())
