"""What `up` prints and what the docs say run from a plain shell: no activated virtual
environment, no PYTHONPATH, another directory."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from runtime.local.main import cli_command

REPO_ROOT = Path(__file__).resolve().parents[3]
PLAIN_SHELL = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def test_the_printed_cli_command_runs_outside_the_virtual_environment(tmp_path: Path) -> None:
    command = cli_command()
    assert Path(shlex.split(command)[0]).is_absolute()
    result = subprocess.run(
        [*shlex.split(command), "--help"],
        cwd=tmp_path,
        env=PLAIN_SHELL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: musetalk" in result.stdout


def test_the_up_script_needs_no_activated_environment() -> None:
    script = REPO_ROOT / "scripts" / "up.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "bootstrap.sh" in text  # installs .venv on first run and activates it itself
    assert "python -m runtime.local up" in text
    assert "scripts/up.sh" in (REPO_ROOT / "docs" / "local.md").read_text()
