"""A small run of the chaos harness (`bench/chaos.py`): real worker processes on the emulator,
killed mid-job, flooded with duplicates, fed poison, with AWS faults and an OOM storm injected.
One run, several invariants; the full-size run is `python -m bench.chaos`."""

from __future__ import annotations

import pytest

from bench.chaos import ChaosConfig, ChaosReport, run
from bench.chaos_report import POISON_EXPECTED

SMALL = ChaosConfig(
    workers=2,
    gateways=2,
    kill_jobs=3,
    kills=(("SIGKILL", "speak"), ("SIGTERM", "prepare"), ("SIGTERM", "upload")),
    flood=24,
    flood_keys=8,
    flood_contents=2,
    flood_threads=8,
    fault_rate=0.1,
    oom_workers=1,
    seconds_per_frame=0.03,
    prepare_seconds=0.6,
    slow_put_seconds=0.6,
    final_timeout_seconds=120,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    # Given the local stack with 2 chaos workers (10 % of AWS calls fail, one worker OOMs above
    # batch 2), When jobs are submitted while workers are killed, flooded and poisoned
    return run(SMALL, tmp_path_factory.mktemp("chaos"), say=lambda _text: None)


def test_every_accepted_job_ends_final_exactly_once(report: ChaosReport) -> None:
    # Then nothing accepted is lost, nothing is rendered twice, and each final job was announced
    # exactly once, although workers were killed under it
    assert report.kills, "no worker was killed: the chaos did not happen"
    assert report.accepted > 0
    assert report.lost == []
    assert report.rendered_twice == []
    # And equal content was rendered once, however many jobs asked for it
    assert report.rendered_twice_content == []
    assert report.renders == report.contents_rendered
    assert report.events_missing == []
    assert report.events_duplicated == []
    assert report.succeeded + sum(report.failed.values()) + report.cancelled == report.accepted
    assert report.faults_injected > 0


def test_duplicates_create_one_job_per_idempotency_key(report: ChaosReport) -> None:
    # Then 24 parallel submissions over 8 keys made exactly 8 jobs, none refused
    assert report.flood_submissions == SMALL.flood
    assert report.flood_jobs == report.flood_keys == SMALL.flood_keys
    assert sum(report.rejected.values()) == 0


def test_each_poison_fails_with_its_own_code_and_is_not_retried(report: ChaosReport) -> None:
    # Then corrupt, silent, faceless, huge, mistyped and empty inputs each got their code
    assert report.poison == POISON_EXPECTED


def test_no_secret_or_personal_data_in_any_log_line(report: ChaosReport) -> None:
    # Then no API key, webhook secret or URL, presigned value or file content was logged
    assert report.log_lines > 100
    assert report.leaks == []


def test_another_tenant_gets_404_on_every_object(report: ChaosReport) -> None:
    # Then tenant B could neither read, cancel nor use any job, avatar or upload of tenant A
    assert report.isolation_checks > 2 * report.accepted
    assert report.isolation_breaches == []


def test_the_report_prints_the_figures(report: ChaosReport) -> None:
    table = report.table()
    for row in (
        "submitted",
        "accepted",
        "LOST",
        "RENDERED TWICE (content)",
        "max queue wait",
        "p50",
    ):
        assert row in table
