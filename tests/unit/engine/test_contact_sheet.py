"""The contact sheet shows, per picked frame, the source crop, the blend mask, the generated face
and the blended result, and says why the lips move or not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.cli import main
from runtime.engine.contact_sheet import HEADER, LABEL_WIDTH, ROWS, TILE, write_contact_sheet
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions
from tests.unit.engine.conftest import write_wav


@pytest.fixture(scope="module")
def avatar(engine: MuseTalkEngine, short_video: Path) -> PreparedAvatar:
    return engine.prepare(short_video, AvatarOptions())


def _tile(sheet: np.ndarray, row: int, column: int) -> np.ndarray:
    y, x = HEADER + row * TILE, LABEL_WIDTH + column * TILE
    return sheet[y : y + TILE, x : x + TILE].astype(np.int16)


def test_the_sheet_shows_crop_mask_face_and_the_blend_of_speech_frames(
    engine: MuseTalkEngine, avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    png = tmp_path / "sheet.png"
    found = write_contact_sheet(engine, avatar, short_speech, png)
    sheet = cv2.imread(str(png))
    assert sheet.shape == (HEADER + TILE * len(ROWS), LABEL_WIDTH + TILE * 4, 3)
    assert found.frames == 20
    assert found.blended_frames == found.speech_frames > 0
    assert len(found.columns) == 4
    assert not found.lips_move  # tiny random weights
    assert "random" in found.verdict
    mask = _tile(sheet, 1, 0)
    # The stand-in parser masks the lower half of the box: only there does the blend differ.
    assert mask[: TILE // 3].max() == 0
    assert mask[-TILE // 4 :].min() > 0
    source, blended = _tile(sheet, 0, 0), _tile(sheet, 3, 0)
    assert np.abs(source[: TILE // 3] - blended[: TILE // 3]).max() <= 2
    assert np.abs(source[-TILE // 4 :] - blended[-TILE // 4 :]).mean() > 5


def test_an_empty_mask_is_named_as_the_reason_and_the_result_equals_the_source(
    engine: MuseTalkEngine, avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    empty = replace(avatar, masks=tuple(np.zeros_like(mask) for mask in avatar.masks))
    png = tmp_path / "sheet.png"
    found = write_contact_sheet(engine, empty, short_speech, png)
    assert found.blended_frames == 0
    assert found.mask_coverage == 0
    assert "face parser found no face pixels" in found.verdict
    assert "output equals the input" in found.verdict
    sheet = cv2.imread(str(png))
    assert np.array_equal(_tile(sheet, 0, 0), _tile(sheet, 3, 0))


def test_silence_is_named_as_the_reason(
    engine: MuseTalkEngine, avatar: PreparedAvatar, tmp_path: Path
) -> None:
    silence = write_wav(tmp_path / "silence.wav", np.zeros(16_000, np.float32), 16_000)
    found = write_contact_sheet(engine, avatar, silence, tmp_path / "sheet.png")
    assert found.speech_frames == 0
    assert "found no speech" in found.verdict


def test_the_engine_cli_makes_the_sheet_from_a_prepared_avatar(
    avatar: PreparedAvatar,
    tiny_models: ModelsLayout,
    short_speech: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prepared = tmp_path / "avatar.bin"  # as the worker's avatar cache holds it
    prepared.write_bytes(avatar.to_bytes())
    png = tmp_path / "sheet.png"
    code = main(
        [
            "contact-sheet",
            "--prepared",
            str(prepared),
            "--audio",
            str(short_speech),
            "--models",
            str(tiny_models.root),
            "--out",
            str(png),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert found["out"] == str(png)
    assert found["weights"] == "random"
    assert found["blended_frames"] > 0
    assert "random" in found["verdict"]
    assert cv2.imread(str(png)).shape[1] == LABEL_WIDTH + TILE * 4
