"""Resolve docker/requirements.in for the image's platform and write docker/requirements.lock.

Runs pip's resolver for CPython 3.12 on manylinux x86_64 (the image), binary wheels only, with no
local pip configuration (so only the public index is used), and pins every package it would
install. Run it after changing requirements.in: `python docker/lock.py`.

`missing_wheels` re-checks a lock cheaply: per pin, the index's file list (the JSON Simple API pip
itself reads; no wheel is downloaded) must hold a wheel of that version whose tags and
Requires-Python fit the image. A pin without one would fail the image build; the tests catch it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

HERE = Path(__file__).resolve().parent
PYTHON_VERSION = "3.12"
SIMPLE_INDEX = "https://pypi.org/simple"  # the public index `isolated_env` leaves pip with
# Ubuntu 24.04 has glibc 2.39: every manylinux tag up to 2_39 installs there.
PLATFORMS = [
    "linux_x86_64",
    "manylinux1_x86_64",
    "manylinux2010_x86_64",
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in range(5, 40)),
]
# Installed separately with --no-deps (its declared deps cannot install; see the Dockerfile).
SEPARATE = ("mmpose==1.2.0", "xtcocotools==1.14.3")
# Resolved (torch requires them) but not pinned, so the image (`pip install --no-deps`) leaves
# them out. Triton compiles kernels for torch.compile and needs a C compiler at run time, which
# the image has not; the worker runs AOT packages built ahead, and those load and render with
# `triton` absent (bench/aot_without_triton.py, H100, bench/results/2026-12-07-h100-*): 198 MB
# of wheel less for every new host to pull.
LEFT_OUT = {"triton": "torch.compile's kernel compiler: needs a C compiler, never used here"}


def resolve_command(
    requirements: Path, report: Path, target: Path, *, metadata_only: bool = False
) -> list[str]:
    """pip's dry-run resolution for the image. `metadata_only` reads each wheel's metadata with
    HTTP range requests (pip's `fast-deps`) instead of downloading it: tens of MB instead of
    GBs of CUDA wheels, for an index without PEP 658 metadata files."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    if metadata_only:
        command.append("--use-feature=fast-deps")
    command += ["--target", str(target), "--report", str(report), "-r", str(requirements)]
    return command + target_options()


def target_options() -> list[str]:
    """pip options that describe the image's interpreter and platform, wheels only."""
    options = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        options += ["--platform", platform]
    return options


def image_tags() -> frozenset[Tag]:
    """Wheel tags pip accepts for the image's interpreter and platforms (what `target_options`
    tells pip), most specific first as pip orders them; order does not matter here."""
    version = tuple(int(part) for part in PYTHON_VERSION.split("."))
    return frozenset(
        [
            *cpython_tags(version, abis=[f"cp{version[0]}{version[1]}"], platforms=PLATFORMS),
            *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=PLATFORMS),
        ]
    )


FetchProject = Callable[[str], "dict[str, Any] | None"]


def fetch_project(name: str) -> dict[str, Any] | None:
    """The index's file list of a project (PEP 691 JSON Simple API, as pip reads it; no wheel is
    downloaded), or None when the index has no such project."""
    request = urllib.request.Request(  # noqa: S310 (a fixed https index URL)
        f"{SIMPLE_INDEX}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            project: dict[str, Any] = json.load(response)
            return project
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def missing_wheels(
    pins: list[str], *, fetch: FetchProject = fetch_project, workers: int = 8
) -> list[str]:
    """The pins (`name==version`) with no wheel the image can install, each with the reason.
    Raises `OSError` when the index cannot be reached."""
    tags = image_tags()

    def installable(file: dict[str, Any], version: Version) -> bool:
        if not file["filename"].endswith(".whl"):
            return False
        try:
            _, file_version, _, file_tags = parse_wheel_filename(file["filename"])
        except (InvalidWheelFilename, InvalidVersion):
            return False  # ancient uploads with names pip skips as well
        requires_python = file.get("requires-python")
        return (
            file_version == version
            and not tags.isdisjoint(file_tags)
            and (not requires_python or SpecifierSet(requires_python).contains(PYTHON_VERSION))
        )

    def check(pin: str) -> str | None:
        name, _, pinned = pin.partition("==")
        project = fetch(name)
        if project is None:
            return f"{pin} (no such project on the index)"
        version = Version(pinned)
        if not any(installable(file, version) for file in project["files"]):
            return f"{pin} (no wheel of {pinned} for CPython {PYTHON_VERSION} manylinux x86_64)"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [problem for problem in pool.map(check, pins) if problem is not None]


def normalized(name: str) -> str:
    """PEP 503 name normalization, so pins compare equal however a project spells its name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def isolated_env() -> dict[str, str]:
    """No pip configuration from this machine (local indexes, wheel dirs, constraints); only the
    certificate bundle is kept, for networks that inspect TLS."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    if "PIP_CERT" in os.environ:
        kept["PIP_CERT"] = os.environ["PIP_CERT"]
    return {**kept, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        subprocess.run(  # noqa: S603 (a fixed pip command line, no outside input)
            resolve_command(HERE / "requirements.in", report, Path(work) / "target"),
            check=True,
            env=isolated_env(),
        )
        installs = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{normalized(item['metadata']['name'])}=={item['metadata']['version']}"
        for item in installs
        if normalized(item["metadata"]["name"]) not in LEFT_OUT
    )
    header = (
        "# Generated by `python docker/lock.py` from docker/requirements.in; do not edit.\n"
        f"# CPython {PYTHON_VERSION}, manylinux x86_64, binary wheels only.\n"
        + "".join(f"# Left out: {name} ({why}).\n" for name, why in sorted(LEFT_OUT.items()))
    )
    (HERE / "requirements.lock").write_text(header + "\n".join(pins) + "\n")


if __name__ == "__main__":
    main()
