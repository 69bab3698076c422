#!/usr/bin/env python3
"""CDK entry point: the only place that reads context. stage -> StageConfig -> the stack.

`-c alarm_emails=a@example.com,b@example.com` subscribes alarm recipients at deploy time (added to
the stage's `alarm_emails`), so nobody edits code to get paged."""

from __future__ import annotations

import aws_cdk as cdk

from infra.config import stage_config, with_alarm_emails
from infra.stacks.musetalk_stack import add_checks, build_stack


def main() -> None:
    app = cdk.App()
    config = with_alarm_emails(
        stage_config(str(app.node.try_get_context("stage") or "dev")),
        app.node.try_get_context("alarm_emails"),
    )
    build_stack(app, config)
    add_checks(app)
    app.synth()


if __name__ == "__main__":
    main()
