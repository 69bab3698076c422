"""The official MuseTalk v1.5 release's files and their SHA-256 digests: the one table that
decides whether a models directory may be reported as `"weights": "official"`.

`classify` says `random` for a directory `make-weights` marked, `official` only when every file
the engine renders with matches this table, and `custom` for anything else (fine-tuned or
converted weights, another release, or a file of the table that is not pinned yet). A rendered
video's label therefore never claims more than its files prove.

Each digest comes from the release itself: the Hugging Face LFS metadata of the file (the `oid
sha256` of its pointer) for the hub's large files, the SHA-256 of the downloaded file for its
small JSON files, or the digest prefix that torch.hub's naming convention puts in the file name
(`name-<first hex digits of the sha256>.ext`). Entries with
`sha256=None` are not pinned yet: until they are, no directory classifies as `official`, and
nothing is hashed (an unpinned entry decides `custom` on its own).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from runtime.engine.interface import WeightsKind


@dataclass(frozen=True)
class OfficialFile:
    """One file of the official models directory (path relative to it)."""

    path: str
    source: str  # where the release publishes it
    sha256: str | None = None  # the full digest, lower-case hex; None: not pinned yet
    sha256_prefix: str | None = None  # a leading part of the digest, where only that is published

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None or self.sha256_prefix is not None

    def matches(self, digest: str) -> bool:
        if self.sha256 is not None:
            return digest == self.sha256
        return self.sha256_prefix is not None and digest.startswith(self.sha256_prefix)


# The files the engine renders with (`ModelsLayout.required_files`), as MuseTalk's
# download_weights.sh fetches them. Unpinned entries need their digest from the release's
# LFS metadata (huggingface.co/<repo>/blob/main/<file> shows it) before `official` can be
# reported.
OFFICIAL_FILES: tuple[OfficialFile, ...] = (
    OfficialFile("musetalkV15/unet.pth", "TMElyralab/MuseTalk musetalkV15/unet.pth"),
    OfficialFile("musetalkV15/musetalk.json", "TMElyralab/MuseTalk musetalkV15/musetalk.json"),
    OfficialFile("sd-vae/config.json", "stabilityai/sd-vae-ft-mse config.json"),
    OfficialFile(
        "sd-vae/diffusion_pytorch_model.bin",
        "stabilityai/sd-vae-ft-mse diffusion_pytorch_model.bin",
    ),
    OfficialFile("whisper/config.json", "openai/whisper-tiny config.json"),
    OfficialFile("whisper/pytorch_model.bin", "openai/whisper-tiny pytorch_model.bin"),
    OfficialFile(
        "whisper/preprocessor_config.json", "openai/whisper-tiny preprocessor_config.json"
    ),
    OfficialFile("dwpose/dw-ll_ucoco_384.pth", "yzd-v/DWPose dw-ll_ucoco_384.pth"),
    OfficialFile(
        "s3fd/s3fd-619a316812.pth",
        "adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        sha256_prefix="619a316812",  # torch.hub file-name convention
    ),
    OfficialFile("face-parse-bisent/79999_iter.pth", "face-parsing.PyTorch 79999_iter.pth"),
    OfficialFile(
        "face-parse-bisent/resnet18-5c106cde.pth",
        "download.pytorch.org/models/resnet18-5c106cde.pth",
        sha256_prefix="5c106cde",  # torch.hub file-name convention
    ),
)


def classify(root: Path, *, marked_random: bool) -> WeightsKind:
    """`random`, `official` or `custom` for the models directory `root` (see the module doc).

    Cheapest checks first: an unpinned entry or a missing file decides `custom` without hashing;
    then the files are hashed smallest first, stopping at the first mismatch.
    """
    if marked_random:
        return "random"
    return "official" if matches_release(root, OFFICIAL_FILES) else "custom"


def matches_release(root: Path, files: Iterable[OfficialFile]) -> bool:
    entries = list(files)
    if not all(entry.pinned and (root / entry.path).is_file() for entry in entries):
        return False
    entries.sort(key=lambda entry: (root / entry.path).stat().st_size)
    return all(entry.matches(file_sha256(root / entry.path)) for entry in entries)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
