"""jsii (under aws_cdk) starts Node.js and prints a banner of raw bytes on every start when the
Node major version is past its end of life (Node 20: 2026-04-30). The README asks for Node 22 or
24; where a test machine still has an older one, the tests silence that banner for exactly the
installed major version (jsii's own switch), so test output stays readable."""

from __future__ import annotations

import os
import shutil
import subprocess

END_OF_LIFE_SWITCH = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


def node_major_version() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    answer = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    version = answer.stdout.strip().lstrip("v")
    return version.split(".")[0] if answer.returncode == 0 and version else None


def silence_jsii_node_banners(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Set jsii's switches in `environ` (before aws_cdk is imported)."""
    environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
    major = node_major_version()
    if major is not None:
        environ.setdefault(END_OF_LIFE_SWITCH, major)
