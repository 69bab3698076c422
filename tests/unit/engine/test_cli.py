"""The engine command line (argument handling that needs no face models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.common.jobs import AvatarOptions, ErrorCode
from runtime.engine.cli import main
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import MediaError
from runtime.engine.layout import ModelsLayout
from tests.unit.engine.conftest import MEDIA


def test_render_with_an_incomplete_models_dir_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a models directory with only the UNet config
    layout = ModelsLayout(tmp_path / "models")
    layout.unet_config.parent.mkdir(parents=True)
    layout.unet_config.write_text("{}")
    # When render is asked to use it
    code = main(
        [
            "render",
            "--avatar",
            str(MEDIA / "musk.png"),
            "--audio",
            str(MEDIA / "yongen.wav"),
            "--out",
            str(tmp_path / "out.mp4"),
            "--models",
            str(layout.root),
        ]
    )
    # Then it exits 2 and lists the missing files, without rendering
    assert code == 2
    err = capsys.readouterr().err
    assert "musetalkV15/unet.pth" in err
    assert "s3fd/s3fd-619a316812.pth" in err
    assert "musetalk.json" not in err
    assert not (tmp_path / "out.mp4").exists()


def test_unknown_device_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["render", "--avatar", "a", "--audio", "b", "--out", "c", "--device", "tpu"])
    assert raised.value.code == 2
    assert "--device" in capsys.readouterr().err


def test_render_prepares_with_the_mask_blur_asked_for(
    tiny_models: ModelsLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an engine that records the avatar options it is asked to prepare with
    seen: list[AvatarOptions] = []

    class Recording:
        weights = "random"

        def prepare(self, avatar: Path, options: AvatarOptions) -> None:
            seen.append(options)
            raise MediaError(ErrorCode.NO_FACE, "stop here")

    monkeypatch.setattr(MuseTalkEngine, "load", classmethod(lambda cls, *a, **k: Recording()))
    args = ["--avatar", str(MEDIA / "musk.png"), "--audio", str(MEDIA / "yongen.wav")]
    args += ["--out", str(tmp_path / "out.mp4"), "--models", str(tiny_models.root)]
    # When render runs with and without --mask-blur
    assert main(["render", *args, "--mask-blur", "realtime"]) == 1
    assert main(["render", *args]) == 1
    # Then preparation gets the realtime blur when asked, else the offline one
    assert [options.mask_blur for options in seen] == ["realtime", "offline"]
