"""Issue 3's quality gates: cdk-nag clean with reasons, cfn-lint without errors, small assets,
and `npx cdk synth` with no credentials and no Docker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra.stacks.musetalk_stack import add_checks
from tests.infra.conftest import REPO_ROOT, Synthesized
from tests.infra.template_queries import one

_MIN_REASON = 20


def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    # Given the session synth (which raises on any unacknowledged finding)
    report = json.loads((synthesized.assembly_dir / "validation-report.json").read_text())
    # Then the report lists no violation at all
    violations = [v for p in report["pluginReports"] for v in p.get("violations", [])]
    assert violations == []


def test_every_acknowledgement_carries_its_reason(synthesized: Synthesized) -> None:
    # Given the acknowledgements cdk-nag wrote into the template as an audit trail
    acknowledged = [
        rule
        for resource in synthesized.raw["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        if rule["id"].startswith("AwsSolutions")
    ]
    # Then there are some (the checks ran) and each explains itself
    assert acknowledged
    for rule in acknowledged:
        assert len(rule["reason"]) >= _MIN_REASON, rule


def test_an_unacknowledged_finding_fails_the_synth(tmp_path: Path) -> None:
    # Given an app checked like ours, with a queue that has no dead-letter queue
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    sqs.Queue(stack, "NoDlq", enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED)
    add_checks(app)
    # When it synthesizes / Then the synth fails naming the rule
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS3"):
        app.synth()


def test_cfn_lint_reports_no_errors(synthesized: Synthesized) -> None:
    # When cfn-lint checks the synthesized template
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "parseable", str(synthesized.template_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Then it finds no error (exit bit 2); warnings and infos are allowed
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert errors == []
    assert result.returncode & 2 == 0, result.stdout + result.stderr


def _asset_dir(s: Synthesized, code_or_image: dict) -> Path:
    text = json.dumps(code_or_image)
    (asset,) = [p for p in s.assembly_dir.glob("asset.*") if p.name.removeprefix("asset.") in text]
    return asset


def _files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def test_lambda_asset_is_only_our_api_and_common_packages(dev: Synthesized) -> None:
    _, function = one(dev.raw, "AWS::Lambda::Function", "ApiHandler")
    files = _files(_asset_dir(dev, function["Properties"]["Code"]))
    assert "runtime/__init__.py" in files
    assert "runtime/common/names.py" in files
    assert all(f.startswith(("runtime/api/", "runtime/common/", "runtime/__init__")) for f in files)
    assert not any("__pycache__" in f for f in files)


def test_worker_image_context_is_the_dockerignore_whitelist(dev: Synthesized) -> None:
    _, task = one(dev.raw, "AWS::ECS::TaskDefinition", "InteractiveWorkerTask")
    files = _files(_asset_dir(dev, task["Properties"]["ContainerDefinitions"][0]["Image"]))
    assert "docker/Dockerfile" in files
    assert "runtime/common/names.py" in files
    allowed = ("docker/", "runtime/common/", "runtime/engine/", "runtime/worker/")
    extra = {f for f in files if not f.startswith(allowed)} - {
        "runtime/__init__.py",
        ".dockerignore",
    }
    assert extra == set()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npx") is None, reason="Node.js (npx) is not installed")
def test_cdk_cli_synth_needs_no_credentials_and_no_docker(tmp_path: Path) -> None:
    # Given an environment with no AWS credentials or profile, and the venv's python first
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    out = tmp_path / "cdk.out"
    context_file = REPO_ROOT / "cdk.context.json"
    had_context_file = context_file.exists()
    # When the real CLI synthesizes the prod stage
    result = subprocess.run(
        [
            "npx",
            "--no-install",
            "cdk",
            "synth",
            "--quiet",
            "--no-notices",
            "-c",
            "stage=prod",
            "-o",
            str(out),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it succeeds and writes the template and the (clean) cdk-nag report
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    template = json.loads((out / "MuseTalk-prod.template.json").read_text())
    assert "AWS::ECS::Service" in json.dumps(template)
    report = json.loads((out / "validation-report.json").read_text())
    assert all(not p.get("violations") for p in report["pluginReports"])
    # And no context lookup happened (it would have cached its result in cdk.context.json)
    assert context_file.exists() == had_context_file
