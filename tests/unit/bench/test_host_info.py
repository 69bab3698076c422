"""Every benchmark result names its host's CPU (host-bound figures move with it)."""

from __future__ import annotations

from pathlib import Path

from tests.support.bench_scripts import load_bench_script


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path: Path) -> None:
    # Given a Linux cpuinfo with two processors
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    )

    # When the host is described
    model = load_bench_script("host_info").cpu_model(cpuinfo)

    # Then the first processor's model name is reported, trimmed
    assert model == "Intel(R) Xeon(R) Platinum 8480+"


def test_without_cpuinfo_the_platform_names_the_cpu(tmp_path: Path) -> None:
    host_info = load_bench_script("host_info")

    model = host_info.cpu_model(tmp_path / "absent")

    assert model  # platform.processor() or the machine type, never empty
    assert host_info.host()["cpus"] >= 1
