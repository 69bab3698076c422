"""The official MuseTalk v1.5 models directory: every file, where upstream gets it, and its pin;
the one table that `fetch-weights` downloads by and that decides whether a models directory may be
reported as `"weights": "official"`.

`classify` says `random` for a directory `make-weights` marked, `official` only when every file the
engine renders with matches its pinned SHA-256, and `custom` for anything else (fine-tuned or
converted weights, another release). A rendered video's label never claims more than its files
prove.

Sources follow upstream's `download_weights.sh` (TMElyralab/MuseTalk): five Hugging Face
repositories, BiSeNet from Google Drive, ResNet-18 from download.pytorch.org, plus S3FD from
adrianbulat.com (upstream's detector downloads it at run time; our layout keeps it in
`s3fd/`). Each Hugging Face file is pinned to a commit; each file to its size and SHA-256.

Provenance of the pins (no machine of ours can reach these hosts, so they come from public
records of people who downloaded the files, cross-checked where records agree): the commits of
TMElyralab/MuseTalk, sd-vae-ft-mse, whisper-tiny and DWPose each appear with these files in two
or more independent projects, LatentSync's commit in one; the SHA-256 and sizes come from
published checksum manifests (every digest of a Hub file here matches across two records or is
paired with its commit in one), and those of ResNet-18 and S3FD also begin with the prefix
torch.hub puts in their names. `latentsync_syncnet.pt` (scoring only) has no published SHA-256
we could find: it is checked against the SHA-256 the Hub itself publishes for that file at the
pinned commit (its Git LFS object id, read before downloading) and its recorded size. A pin that
turns out wrong fails loudly: the file is refused, nothing is kept, and the error names it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.engine.engine_contract import WeightsKind
from runtime.fileio import file_sha256, write_atomic

DRIVE_BISENET_ID = "154JgKpzCPW82qINcVieuPH3fZ2e0P812"  # upstream's gdown id


@dataclass(frozen=True)
class WeightFile:
    """One file of the models directory: `path` inside it, and exactly one source."""

    path: str
    size: int
    sha256: str | None  # None: verified against the Hub's published LFS SHA-256 instead
    repo: str | None = None  # Hugging Face repository ...
    revision: str | None = None  # ... at this commit ...
    filename: str | None = None  # ... this file
    url: str | None = None  # or a plain https URL
    optional: bool = False  # not needed to render (scoring only)

    @property
    def source(self) -> str:
        if self.repo:
            return f"hf://{self.repo}@{self.revision}/{self.filename}"
        return str(self.url)


MUSETALK_REVISION = "3ef28bc5cff08c90ad8178a25f1b570cd800170f"
SD_VAE_REVISION = "31f26fdeee1355a5c34592e401dd41e45d25a493"
WHISPER_REVISION = "169d4a4341b33bc18d8881c4b69c2e104e1cc0af"
DWPOSE_REVISION = "1a7144101628d69ee7a3768d1ee3a094070dc388"
LATENTSYNC_REVISION = "405eda8eab9f65c1a6e0c292a5dee5a08089e2ae"


def _hf(
    path: str,
    repo: str,
    revision: str,
    size: int,
    sha256: str | None,
    *,
    optional: bool = False,
) -> WeightFile:
    """A Hub file; its name in the repository is `path` less the models-dir folder, except in
    MuseTalk's own repository, whose layout is the models directory's."""
    return WeightFile(
        path=path,
        size=size,
        sha256=sha256,
        repo=repo,
        revision=revision,
        filename=path if repo == "TMElyralab/MuseTalk" else path.split("/", 1)[1],
        optional=optional,
    )


OFFICIAL_FILES: tuple[WeightFile, ...] = (
    _hf(
        "musetalkV15/musetalk.json",
        "TMElyralab/MuseTalk",
        MUSETALK_REVISION,
        748,
        "5b6923aee04d71692e0e9846c471e0a4ea07a4f686d39545e472bd4ba17e1b47",
    ),
    _hf(
        "musetalkV15/unet.pth",
        "TMElyralab/MuseTalk",
        MUSETALK_REVISION,
        3_400_074_924,
        "7ebf6c98c181e20838e4c0054e96e944ac60d5d692cc01db42839fe11b787007",
    ),
    _hf(
        "sd-vae/config.json",
        "stabilityai/sd-vae-ft-mse",
        SD_VAE_REVISION,
        547,
        "92d3dfb746fca211a2c9e019e285f8597412211728dce3c5bcf4eda0f2d62e7e",
    ),
    _hf(
        "sd-vae/diffusion_pytorch_model.bin",
        "stabilityai/sd-vae-ft-mse",
        SD_VAE_REVISION,
        334_707_217,
        "1b4889b6b1d4ce7ae320a02dedaeff1780ad77d415ea0d744b476155c6377ddc",
    ),
    _hf(
        "whisper/config.json",
        "openai/whisper-tiny",
        WHISPER_REVISION,
        1_983,
        "ffdccec4f3211f4c63310f2b7098f309fe70f3952cedc5e4d11e43f5b2379b98",
    ),
    _hf(
        "whisper/pytorch_model.bin",
        "openai/whisper-tiny",
        WHISPER_REVISION,
        151_095_027,
        "9607f98a2b22d9e229ae43c52ecea79dcede9e0c5cfae67e8da6eda86d8aac1d",
    ),
    _hf(
        "whisper/preprocessor_config.json",
        "openai/whisper-tiny",
        WHISPER_REVISION,
        184_990,
        "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666",
    ),
    _hf(
        "dwpose/dw-ll_ucoco_384.pth",
        "yzd-v/DWPose",
        DWPOSE_REVISION,
        406_878_486,
        "0d9408b13cd863c4e95a149dd31232f88f2a12aa6cf8964ed74d7d97748c7a07",
    ),
    _hf(
        "syncnet/latentsync_syncnet.pt",
        "ByteDance/LatentSync",
        LATENTSYNC_REVISION,
        1_488_019_828,
        None,
        optional=True,
    ),
    WeightFile(
        path="face-parse-bisent/79999_iter.pth",
        size=53_289_463,
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
        url=(
            "https://drive.usercontent.google.com/download"
            f"?id={DRIVE_BISENET_ID}&export=download&confirm=t"
        ),
    ),
    WeightFile(
        path="face-parse-bisent/resnet18-5c106cde.pth",
        size=46_827_520,
        sha256="5c106cde386e87d4033832f2996f5493238eda96ccf559d1d62760c4de0613f8",
        url="https://download.pytorch.org/models/resnet18-5c106cde.pth",
    ),
    WeightFile(
        path="s3fd/s3fd-619a316812.pth",
        size=89_843_225,
        sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
        url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    ),
)


# The verdict of the last check, beside the files, keyed by their sizes and modification times:
# hashing the release (4.5 GB) on every engine start would add seconds to each cold start.
VERDICT_FILE = ".official-check.json"


def classify(root: Path, *, marked_random: bool) -> WeightsKind:
    """`random`, `official` or `custom` for the models directory `root` (see the module doc)."""
    if marked_random:
        return "random"
    needed = [entry for entry in OFFICIAL_FILES if not entry.optional]
    fingerprint = _fingerprint(root, needed)
    cached = _cached_verdict(root, fingerprint)
    if cached is not None:
        return "official" if cached else "custom"
    official = fingerprint is not None and matches_release(root, needed)
    if fingerprint is not None:
        with contextlib.suppress(OSError):  # a read-only directory is checked again next time
            verdict = {"fingerprint": fingerprint, "official": official}
            write_atomic(root / VERDICT_FILE, json.dumps(verdict).encode())
    return "official" if official else "custom"


def matches_release(root: Path, files: Iterable[WeightFile]) -> bool:
    """Cheapest checks first: an entry without a pinned digest, a missing file or a size that
    differs decides without hashing; then files are hashed smallest first, stopping at the first
    mismatch."""
    entries = list(files)
    for entry in entries:
        path = root / entry.path
        if entry.sha256 is None or not path.is_file() or path.stat().st_size != entry.size:
            return False
    entries.sort(key=lambda entry: entry.size)
    return all(file_sha256(root / entry.path) == entry.sha256 for entry in entries)


def _fingerprint(root: Path, entries: list[WeightFile]) -> list[list[Any]] | None:
    """Each file's path, size and modification time; None when one is missing (no cache)."""
    try:
        stats = [(entry.path, (root / entry.path).stat()) for entry in entries]
    except OSError:
        return None
    return [[path, stat.st_size, stat.st_mtime_ns] for path, stat in stats]


def _cached_verdict(root: Path, fingerprint: list[list[Any]] | None) -> bool | None:
    if fingerprint is None:
        return None
    try:
        cached = json.loads((root / VERDICT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("fingerprint") != fingerprint:
        return None
    return bool(cached.get("official"))
