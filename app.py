#!/usr/bin/env python3
"""CDK entry point: the only place that reads context. stage -> StageConfig -> the stack."""

from __future__ import annotations

import aws_cdk as cdk

from infra.config import stage_config
from infra.stacks.musetalk_stack import add_checks, build_stack


def main() -> None:
    app = cdk.App()
    config = stage_config(str(app.node.try_get_context("stage") or "dev"))
    build_stack(app, config)
    add_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
