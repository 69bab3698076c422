"""Synthesizes the dev and prod stacks ONCE per test session (synth is slow on 2 cores), with the
cdk.json context and the cdk-nag checks exactly as `app.py` applies them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

import aws_cdk as cdk  # after the jsii switches above
from aws_cdk.assertions import Template

from infra.config import StageConfig, stage_config
from infra.stacks.musetalk_stack import add_checks, build_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")


@dataclass(frozen=True)
class Synthesized:
    config: StageConfig
    template: Template
    raw: dict[str, Any]
    assembly_dir: Path
    template_path: Path


@pytest.fixture(scope="session")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(context=context, outdir=str(outdir))
    stacks = {stage: build_stack(app, stage_config(stage)) for stage in STAGES}
    add_checks(app)
    # Raises if cdk-nag reports an unacknowledged finding. (No-credentials synth is proven by
    # the real-CLI test in test_quality_gates.py, which strips the environment.)
    cloud_assembly = app.synth()
    result = {}
    for stage, stack in stacks.items():
        artifact = cloud_assembly.get_stack_by_name(stack.stack_name)
        result[stage] = Synthesized(
            config=stage_config(stage),
            template=Template.from_json(artifact.template),
            raw=artifact.template,
            assembly_dir=outdir,
            template_path=Path(artifact.template_full_path),
        )
    return result


@pytest.fixture(params=STAGES)
def synthesized(request: pytest.FixtureRequest, assembly: dict[str, Synthesized]) -> Synthesized:
    return assembly[request.param]


@pytest.fixture
def dev(assembly: dict[str, Synthesized]) -> Synthesized:
    return assembly["dev"]


@pytest.fixture
def prod(assembly: dict[str, Synthesized]) -> Synthesized:
    return assembly["prod"]
