"""The speak benchmark (`bench/speak.py`) runs end to end on CPU with tiny weights.

A smoke test of the script, not of its figures: it must render with both paths and report every
field the GPU results carry. No timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.support.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[3]


def load_bench() -> ModuleType:
    return load_bench_script("speak")


@pytest.mark.slow
def test_speak_benchmark_reports_every_field_on_cpu_with_tiny_weights(tmp_path: Path) -> None:
    # Given the benchmark script, tiny random weights and a still avatar
    bench = load_bench()
    torch.set_num_threads(1)  # the shared 2-core CI machine: one OpenMP thread is faster
    out = tmp_path / "result.json"

    # When it runs a quick CPU pass over 0.2 s of speech
    bench.main(
        [
            "--models", str(tmp_path / "models"), "--tiny", "--device", "cpu", "--quick",
            "--seconds", "0.2", "--avatar", str(ROOT / "examples" / "media" / "musk.png"),
            "--batch-sizes", "4", "--presets", "veryfast", "--out", str(out),
            "--segment-encoders", "2", "--segment-frames", "125,2",
        ]
    )  # fmt: skip

    # Then the JSON report names the setup and carries both paths' figures
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert report["weights"] == "random, tiny"
    assert report["frames"] == 5  # 0.2 s at the still's 25 fps
    assert report["avatar_geometry"]["width"] == 474
    assert report["cold_start_s"] > 0
    plain, engine, segmented, short_segments = report["runs"]
    assert plain["path"] == "plain eager batch 20"
    assert engine["path"] == "engine batch 4"
    # and the worker's segmented path, named by its writer
    assert segmented["writer"] == {"kind": "segments", "encoders": 2, "threads": 8}
    assert "remux" in segmented["stages_ms"]
    # and again with 2-frame segments (`--segment-frames`), named by their length
    assert short_segments["writer"] == {
        "kind": "segments",
        "encoders": 2,
        "threads": 8,
        "segment_frames": 2,
    }
    assert short_segments["path"].endswith("2-frame segments")
    assert short_segments["stages_ms"]["first_segment"] > 0
    assert {"audio", "unet", "vae_decode", "blend_and_queue"} <= plain["stages_ms"].keys()
    assert {"audio", "unet", "vae_decode", "blend", "compose", "encode_flush"} <= engine[
        "stages_ms"
    ].keys()
    assert all(row["fps"] > 0 for row in report["runs"])
    assert report["best"]["path"] in {engine["path"], segmented["path"]}
    assert report["best"]["ratio_to_plain"] > 0
    assert report["best"]["share_of_flop_floor"] is None  # meaningless for tiny weights on CPU
    assert report["latency_10s_clip_s"] > 0
    assert "memory_per_batch" not in report  # GPU only


def test_encoder_only_mode_reports_each_count_of_encoders_at_once(tmp_path: Path) -> None:
    # Given the benchmark script and a still avatar (no models are needed for this mode)
    bench = load_bench()
    out = tmp_path / "encoders.json"
    # When it measures one and two mp4 writers running at once on a few frames
    bench.main(
        [
            "--models", str(tmp_path / "unused"), "--encoder-only", "1,2",
            "--encoder-frames", "4", "--seconds", "0.2", "--presets", "superfast",
            "--avatar", str(ROOT / "examples" / "media" / "musk.png"), "--out", str(out),
        ]
    )  # fmt: skip
    # Then each count has a rate, and no models were written
    report = json.loads(out.read_text())
    assert set(report["encoders_at_once_fps"]) == {"1 x superfast", "2 x superfast"}
    assert all(fps > 0 for fps in report["encoders_at_once_fps"].values())
    assert not (tmp_path / "unused").exists()
