"""Static security checks that run with the tests: bandit over runtime/ and a secret scan over
every tracked file. (The Dockerfile is linted by hadolint in tests/unit/worker/test_image.py; the
synthesized template is checked by cdk-nag and cfn-lint in tests/infra/test_quality_gates.py.)

Bandit findings are fixed or justified inline (`# nosec BXXX (reason)`); secret-scanner hits that
are not secrets (variable names, the emulator's dummy credentials, test keys) are listed, audited
as `is_secret: false`, in `.secrets.baseline`. Anything new fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = REPO_ROOT / ".secrets.baseline"
# Media, lock files and the baseline itself carry hashes and bytes, not code with secrets.
NOT_SCANNED = (".mp4", ".wav", ".png", ".jpg", ".lock", "package-lock.json", ".secrets.baseline")


def test_bandit_reports_nothing_in_runtime() -> None:
    # When bandit scans every runtime package (API, worker, engine, CLI, local mode)
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-q", "-r", "runtime", "-f", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    # Then it ran and found nothing that is not fixed or justified inline
    report = json.loads(result.stdout)
    assert report["errors"] == []
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert findings == []
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the code


def test_no_secret_in_tracked_files_beyond_the_audited_baseline() -> None:
    # Given every tracked file (media and lock files aside)
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [name for name in listed if not name.endswith(NOT_SCANNED)]

    # When detect-secrets scans them
    scan = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--no-verify", *files],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    # Then every hit is one the baseline lists and audited as not a secret
    audited = {
        (name, hit["hashed_secret"])
        for name, hits in json.loads(BASELINE.read_text())["results"].items()
        for hit in hits
        if hit.get("is_secret") is False
    }
    found = {
        (name, hit["hashed_secret"], hit["type"], hit["line_number"])
        for name, hits in json.loads(scan.stdout)["results"].items()
        for hit in hits
    }
    new = sorted(f"{n}:{line} {kind}" for n, h, kind, line in found if (n, h) not in audited)
    assert new == []


def test_the_secret_scanner_would_catch_a_real_key(tmp_path: Path) -> None:
    # Given a file with an AWS access key in it (AWS's documented example key)
    leaked = tmp_path / "config.py"
    example_key = "AKIA" + "IOSFODNN7EXAMPLE"  # split, so this file itself stays clean
    leaked.write_text(f'AWS_ACCESS_KEY_ID = "{example_key}"\n')

    # When it is scanned, Then the key is found
    scan = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan", "--no-verify", str(leaked)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(scan.stdout)["results"]
