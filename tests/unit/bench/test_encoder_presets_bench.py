"""The encoder-preset benchmark (`bench/encoder_presets.py`) on a tiny clip: a smoke test of the
script and of the one property of its figures that does not depend on the host's speed."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import av

from tests.support.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[3]


def small_clip(path: Path, frames: int = 8) -> Path:
    """The sample avatar's first frames at a quarter of its size: real texture and motion, for
    the presets to differ on, in little time."""
    with av.open(str(ROOT / "examples" / "media" / "yongen.mp4")) as source:
        pictures = [
            frame.reformat(width=176, height=304).to_ndarray(format="bgr24")
            for frame in islice(source.decode(video=0), frames)
        ]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 176, 304, "yuv420p"
        stream.options = {"crf": "0"}
        for picture in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, "bgr24")))
        container.mux(stream.encode(None))
    return path


def test_each_preset_is_measured_against_the_baseline_of_the_same_run(tmp_path: Path) -> None:
    # Given a small clip of the sample avatar
    clip = small_clip(tmp_path / "clip.mp4")
    out = tmp_path / "report.txt"

    # When two presets are benchmarked against veryfast, twice each
    report = load_bench_script("encoder_presets").main(
        [
            "--avatar", str(clip), "--frames", "8", "--runs", "2", "--threads", "1",
            "--presets", "ultrafast,veryfast", "--baseline", "veryfast", "--out", str(out),
        ]
    )  # fmt: skip

    # Then each preset has its figures, the baseline's ratios being 1
    ultrafast, veryfast = report["presets"]
    assert [ultrafast["preset"], veryfast["preset"]] == ["ultrafast", "veryfast"]
    assert (report["frames"], report["size"], report["fps"]) == (8, "176x304", 25.0)
    for row in (ultrafast, veryfast):
        assert len(row["runs_frames_per_s"]) == 2
        assert row["frames_per_s"] > 0
        assert 30 < row["y_psnr_db"] < 100  # decoded all 8 frames, close to the source
    assert veryfast["speed_vs_baseline"] == veryfast["bits_vs_baseline"] == 1.0
    # And ultrafast (no CABAC, the simplest search) spends more bits at the same CRF
    assert ultrafast["bytes"] > veryfast["bytes"]
    assert ultrafast["bits_vs_baseline"] > 1
    # And the written report starts with the command and the host, and ends with the JSON
    text = out.read_text()
    assert text.startswith("$ python bench/encoder_presets.py --avatar ")
    assert '"cpu_model"' in text.splitlines()[1]
    assert json.loads(text[text.index("\n{") :])["presets"][0]["preset"] == "ultrafast"


def test_the_baseline_is_measured_even_when_not_listed(tmp_path: Path) -> None:
    clip = small_clip(tmp_path / "clip.mp4", frames=2)

    report = load_bench_script("encoder_presets").main(
        ["--avatar", str(clip), "--frames", "2", "--runs", "1", "--threads", "1",
         "--presets", "superfast", "--baseline", "faster"]
    )  # fmt: skip

    assert [row["preset"] for row in report["presets"]] == ["superfast", "faster"]
