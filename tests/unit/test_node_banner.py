"""The test suite's aws_cdk runs print no Node.js banner (raw bytes from jsii) on this machine's
Node, whatever its version."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.node import node_major_version, silence_jsii_node_banners


@pytest.mark.skipif(node_major_version() is None, reason="Node.js is not installed")
def test_aws_cdk_starts_without_a_node_banner() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JSII_SILENCE")}
    silence_jsii_node_banners(env)
    result = subprocess.run(
        [sys.executable, "-c", "import aws_cdk; aws_cdk.App()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "!!" not in result.stderr
    assert "node" not in result.stderr.lower()
