#!/usr/bin/env python3
"""CDK entry point: the only place that reads context. stage -> StageConfig -> the stack."""

from __future__ import annotations

import aws_cdk as cdk

from infra.config import stage_config


def main() -> None:
    app = cdk.App()
    config = stage_config(str(app.node.try_get_context("stage") or "dev"))
    # The stack is composed in infra/stacks/ (issue: the whole AWS stack as a CDK app).
    cdk.Stack(app, f"MuseTalk-{config.stage}")
    app.synth()


if __name__ == "__main__":
    main()
