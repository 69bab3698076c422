"""The image's lock file, against the public index: every pin has a wheel CPython 3.12 on
manylinux x86_64 installs, and the pins resolve complete and consistent; all from index pages and
wheel metadata, without downloading the GBs of CUDA wheels."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.lock_tool import lock_tool

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "docker" / "requirements.lock"
NETWORK_FAILURES = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name")


def pins() -> list[str]:
    return [line for line in LOCK.read_text().splitlines() if line and line[0] != "#"]


@pytest.fixture(scope="module")
def index() -> None:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("PyPI (pypi.org:443) is unreachable from here; cannot check the lock")


@pytest.mark.usefixtures("index")
def test_every_pin_of_the_lock_has_a_wheel_for_the_image_platform() -> None:
    # When every pin is looked up on the index
    missing = lock_tool().missing_wheels(pins())
    # Then each has a wheel the image's interpreter and platform install
    assert missing == []


@pytest.mark.usefixtures("index")
def test_the_check_fails_for_pins_the_image_could_not_install() -> None:
    # Given the lock plus pins that exist nowhere or not for CPython 3.12 manylinux x86_64
    bogus = ["addict==9.9.9", "numpy==1.24.0", "pywin32==306", "no-such-project-mt-zz==1.0"]

    # When the checker looks them up on the real index
    missing = lock_tool().missing_wheels([*pins()[:3], *bogus])

    # Then exactly the bogus pins are named
    assert [problem.split(" ")[0] for problem in missing] == bogus


@pytest.mark.slow
@pytest.mark.usefixtures("index")
def test_the_lock_resolves_for_the_image_platform_and_pins_everything(tmp_path: Path) -> None:
    tool = lock_tool()
    report = tmp_path / "report.json"

    # When pip resolves the lock (dependencies on) for the image, reading only wheel metadata
    result = subprocess.run(
        tool.resolve_command(LOCK, report, tmp_path / "target", metadata_only=True),
        env=tool.isolated_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    if result.returncode != 0 and any(word in result.stderr for word in NETWORK_FAILURES):
        pytest.skip("PyPI stopped answering mid-resolution: " + result.stderr[-300:])

    # Then it resolves, and needs exactly the pinned packages and those the lock leaves out on
    # purpose (the image installs with --no-deps): nothing else outside the lock
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {
        f"{tool.normalized(item['metadata']['name'])}=={item['metadata']['version']}"
        for item in json.loads(report.read_text())["install"]
    }
    left_out = {pin for pin in resolved if pin.split("==")[0] in tool.LEFT_OUT}
    assert {pin.split("==")[0] for pin in left_out} == set(tool.LEFT_OUT)
    assert resolved - left_out == set(pins())
