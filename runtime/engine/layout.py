"""The official MuseTalk models directory layout (spec §1), so users point us at what they have.

One `ModelsLayout` names every file the engine and `make-weights` touch; nothing else in the
engine spells a weights path. `weights.json` is ours: `make-weights` writes it to mark random
weights, and an official download simply lacks it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from runtime.engine import official_weights
from runtime.engine.engine_contract import WeightsKind

log = logging.getLogger(__name__)

WEIGHTS_MARKER = "weights.json"
# Written by whoever verified the directory's files against a checksum manifest (the worker's
# weights sync): {path: [size, mtime_ns, sha256]}. The AOT packages key on these digests.
VERIFIED_STAMP_NAME = ".verified.json"


@dataclass(frozen=True)
class ModelsLayout:
    root: Path

    @property
    def unet_weights(self) -> Path:
        return self.root / "musetalkV15" / "unet.pth"

    @property
    def unet_config(self) -> Path:
        return self.root / "musetalkV15" / "musetalk.json"

    @property
    def vae_dir(self) -> Path:
        return self.root / "sd-vae"

    @property
    def whisper_dir(self) -> Path:
        return self.root / "whisper"

    @property
    def s3fd(self) -> Path:
        return self.root / "s3fd" / "s3fd-619a316812.pth"

    @property
    def dwpose(self) -> Path:
        return self.root / "dwpose" / "dw-ll_ucoco_384.pth"

    @property
    def face_parse_dir(self) -> Path:
        return self.root / "face-parse-bisent"

    @property
    def syncnet(self) -> Path:
        return self.root / "syncnet" / "latentsync_syncnet.pt"

    @property
    def marker(self) -> Path:
        return self.root / WEIGHTS_MARKER

    def required_files(self) -> list[Path]:
        """Files without which the engine cannot render (syncnet is optional: scoring only)."""
        return [
            self.unet_weights,
            self.unet_config,
            self.vae_dir / "config.json",
            self.vae_dir / "diffusion_pytorch_model.bin",
            self.whisper_dir / "config.json",
            self.whisper_dir / "pytorch_model.bin",
            self.whisper_dir / "preprocessor_config.json",
            self.s3fd,
            self.dwpose,
            self.face_parse_dir / "79999_iter.pth",
            self.face_parse_dir / "resnet18-5c106cde.pth",
        ]

    def missing_files(self) -> list[Path]:
        return [path for path in self.required_files() if not path.is_file()]

    def weights_kind(self) -> WeightsKind:
        """`random` when `make-weights` wrote this directory, `official` when its files match
        the release's checksums, else `custom` (`official_weights.classify`)."""
        marked = self.marker.is_file() and json.loads(self.marker.read_text()).get("random")
        return official_weights.classify(self.root, marked_random=bool(marked))

    def write_marker(self, *, tiny: bool, seed: int) -> None:
        self.marker.write_text(
            json.dumps({"random": True, "tiny": tiny, "seed": seed}, indent=2) + "\n"
        )
