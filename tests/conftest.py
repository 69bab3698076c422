"""Fixtures every suite shares (pytest accepts `pytest_plugins` only in the top-level conftest)."""

from tests.support.node import silence_jsii_node_banners

pytest_plugins = ["tests.support.moto_server"]

# Before any suite imports aws_cdk (jsii reads these when it starts Node.js).
silence_jsii_node_banners()
