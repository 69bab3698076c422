"""The preparation benchmark's upstream baseline (`bench/official_prepare.py`).

The upstream checkout is not part of this repository: the end-to-end check runs only where
`MUSETALK_OFFICIAL` names one; the accounting of upstream's stages, the ratios and the box
comparison run everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.support.bench_scripts import load_bench_script


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stage_called_inside_another_pauses_the_outer_one() -> None:
    # Given a stage clock on a fake time source, and upstream-like nesting: the decoding writes
    # PNGs from inside video2imgs
    official = load_bench_script("official_prepare")
    now, syncs = FakeClock(), []
    clock = official.StageClock(lambda: syncs.append(now.now), now)

    def write(seconds: float) -> None:
        now.now += seconds

    timed_write = clock.wrap("png_write", write)

    def video2imgs() -> str:
        now.now += 0.010  # a frame decoded
        timed_write(0.030)
        now.now += 0.005  # another
        timed_write(0.020)
        return "done"

    # When the decoding runs, then one write outside it
    assert clock.wrap("decode", video2imgs)() == "done"
    timed_write(0.100)

    # Then each stage holds its own time only, and the device was synchronized at every switch
    assert clock.ms == pytest.approx({"decode": 15.0, "png_write": 150.0})
    assert len(syncs) == 8


def test_a_failing_stage_still_hands_the_time_back_to_its_caller() -> None:
    official = load_bench_script("official_prepare")
    now = FakeClock()
    clock = official.StageClock(clock=now)

    def broken() -> None:
        now.now += 0.002
        raise OSError("disk full")

    def outer() -> None:
        with pytest.raises(OSError, match="disk full"):
            clock.wrap("save", broken)()
        now.now += 0.001

    clock.wrap("parse", outer)()

    assert clock.ms == pytest.approx({"save": 2.0, "parse": 1.0})


def test_upstreams_compute_is_its_total_less_its_disk_stages() -> None:
    # Given two timed runs of upstream's preparation of 4 frames (exclusive ms per stage)
    official = load_bench_script("official_prepare")
    samples = [
        (10.0, {"decode": 400.0, "png_write": 3000.0, "png_read": 500.0, "dwpose": 4000.0}),
        (12.0, {"png_write": 4000.0, "png_read": 700.0, "save": 300.0, "s3fd_rest": 2000.0}),
    ]

    # When they are summarized
    figures = official.summarize(samples, frames=4)

    # Then the totals, disk I/O and compute are medians of the runs, the compute of each run
    # being its total less its PNG writes, PNG reads and saves
    assert figures["total_s"] == 11.0
    assert figures["total_s_samples"] == [10.0, 12.0]
    assert figures["io_s"] == pytest.approx((3.5 + 5.0) / 2)
    assert figures["compute_s"] == pytest.approx((6.5 + 7.0) / 2)
    # and the compute less S3FD's candidate loop, which random weights inflate
    assert figures["compute_less_s3fd_loop_s"] == pytest.approx((6.5 + 5.0) / 2)
    # and each stage is a median per source frame, `other` what no wrapped stage took
    per_frame = figures["ms_per_frame"]
    assert per_frame["png_write"] == 3500.0 / 4
    assert per_frame["dwpose"] == 2000.0 / 4  # 4000 in one run, absent (0) in the other
    assert per_frame["other"] == pytest.approx((2100.0 + 5000.0) / 2 / 4)
    assert set(per_frame) == {*official.STAGES, "other"}


def test_a_path_is_rated_per_frame_against_upstreams_preparation_and_its_compute() -> None:
    # Given upstream's figures for the clip's first 25 frames, and a path that prepared all 750
    official = load_bench_script("official_prepare")
    upstream = {"frames": 25, "total_s": 100.0, "compute_s": 60.0, "compute_less_s3fd_loop_s": 20.0}

    # When the path is rated against it
    rated = official.ratios(30.0, 750, upstream)

    # Then per frame: upstream 4 s (2.4 s of compute, 0.8 s without S3FD's loop) against 40 ms
    assert rated == {
        "vs_official": 100.0,
        "vs_official_compute": 60.0,
        "vs_official_compute_less_s3fd_loop": 20.0,
    }


def test_boxes_are_identical_only_where_both_sides_agree_on_face_and_coordinates() -> None:
    # Given upstream's cycle boxes (placeholder = no face) and a path's
    official = load_bench_script("official_prepare")
    theirs = [
        official.official_box(box)
        for box in ([10, 20, 110, 140], (0.0, 0.0, 0.0, 0.0), [12, 20, 112, 141], [5, 5, 50, 60])
    ]
    ours = [(10, 20, 110, 140), None, (12, 20, 112, 143), None]

    # When they are compared
    agreement = official.boxes_agreement(theirs, ours)

    # Then the no-face frame agrees, a box 2 px off and a face one side lacks do not
    assert theirs[1] is None
    assert agreement == {"boxes_identical": "2/4", "boxes_max_abs_diff_px": 2}
    # and a frame one side never decoded counts against it
    assert official.boxes_agreement(theirs, ours[:3])["boxes_identical"] == "2/4"


def test_an_official_dir_without_upstreams_script_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = load_bench_script("prepare_options")
    (tmp_path / "scripts").mkdir()

    with pytest.raises(SystemExit):
        options.parse_args(["--models", str(tmp_path / "m"), "--official", str(tmp_path)], "")

    assert "--official: " in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MUSETALK_OFFICIAL"), reason="MUSETALK_OFFICIAL names no checkout"
)
def test_upstreams_preparation_runs_beside_the_benchmark_and_finds_the_same_boxes(
    tmp_path: Path,
) -> None:
    # Given the preparation benchmark in its smoke mode, with upstream's checkout
    bench = load_bench_script("prepare")
    torch.set_num_threads(1)
    out = tmp_path / "result.json"

    # When it runs with --official
    bench.main(
        [
            "--smoke",
            "--device",
            "cpu",
            "--models",
            str(tmp_path / "m"),
            "--variants",
            "serial:float32:host",
            "--official",
            os.environ["MUSETALK_OFFICIAL"],
            "--out",
            str(out),
        ]
    )

    # Then upstream prepared both frames, its stages add up to its total, and every path has
    # its ratios to it and upstream's boxes exactly
    report = json.loads(out.read_text())
    official = report["official"]
    assert report["failed"] == {}
    assert official["faces"] == official["frames_decoded"] == 2
    assert official["compute_s"] + official["io_s"] == pytest.approx(official["total_s"], abs=0.02)
    stages = official["ms_per_frame"]
    assert min(stages[s] for s in ("decode", "png_write", "png_read", "dwpose", "s3fd_net")) > 0
    assert min(stages[s] for s in ("s3fd_rest", "vae_encode", "parse", "save")) > 0
    for path in (report["per_frame"], report["variants"]["serial:float32:host"]):
        assert path["vs_official"] > 0
        assert 0 < path["vs_official_compute"] <= path["vs_official"]
        assert path["official_boxes"] == {"boxes_identical": "2/2", "boxes_max_abs_diff_px": 0}
