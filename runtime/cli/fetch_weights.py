"""`fetch-weights`: download the official models directory, resumable and verified file by file.

Every file is downloaded into `<dir>/.fetch-partial/` and moved into its place (one atomic
rename) only after its size and SHA-256 match the pins in `official_weights`; a file that fails
the check is deleted, so the models directory never holds a half-written or unverified file.
Interrupted downloads resume where they stopped (HTTP Range) on the next run; files already in
place are re-hashed and kept when they match. Hugging Face files go through `huggingface_hub`
(pinned commits, `HF_ENDPOINT` honoured); the others are plain HTTPS GETs of fixed URLs, which a
mirror (`--mirror` / `MUSETALK_WEIGHTS_MIRROR`, serving `<mirror>/<host>/<path>`) may stand in for.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from runtime.cli.errors import CliError, ExitCode
from runtime.engine.official_weights import OFFICIAL_FILES, WeightFile
from runtime.fileio import file_sha256

PARTIAL_DIR = ".fetch-partial"
ENV_MIRROR = "MUSETALK_WEIGHTS_MIRROR"
ATTEMPTS = 3  # per file and run: a dropped connection resumes at once, this many times
_SHA256 = re.compile(r"[0-9a-f]{64}")

FileReport = Callable[[str, str], None]  # (path in the models dir, "present" | "fetched")


@dataclass
class FetchReport:
    directory: Path
    present: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    total_bytes: int = 0


@dataclass(frozen=True)
class Sources:
    """Where the bytes come from: the Hub endpoint (None: huggingface.co) and a plain-URL mirror."""

    hf_endpoint: str | None = None
    mirror: str | None = None
    timeout_seconds: float = 60.0

    @classmethod
    def from_env(cls, *, hf_endpoint: str | None = None, mirror: str | None = None) -> Sources:
        return cls(
            hf_endpoint=hf_endpoint or os.environ.get("HF_ENDPOINT") or None,
            mirror=mirror or os.environ.get(ENV_MIRROR) or None,
        )

    def url(self, url: str) -> str:
        if not self.mirror:
            return url
        return f"{self.mirror.rstrip('/')}/{url.removeprefix('https://')}"


def fetch_weights(
    directory: Path,
    *,
    sources: Sources,
    files: Iterable[WeightFile] | None = None,
    include_optional: bool = True,
    show_progress: bool = True,
    on_file: FileReport = lambda _path, _action: None,
) -> FetchReport:
    """Make `directory` hold every file of `files`, each verified; returns what was done."""
    chosen = OFFICIAL_FILES if files is None else files
    wanted = [entry for entry in chosen if include_optional or not entry.optional]
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / PARTIAL_DIR
    report = FetchReport(directory=directory, total_bytes=sum(entry.size for entry in wanted))
    missing = [entry for entry in wanted if not _in_place(directory, entry)]
    for entry in wanted:
        if entry not in missing:
            report.present.append(entry.path)
            on_file(entry.path, "present")
    _check_space(directory, staging, missing)
    with httpx.Client(timeout=sources.timeout_seconds, follow_redirects=True) as http:
        for entry in missing:
            expected = entry.sha256 or _hub_sha256(entry, sources)
            staged = (
                _fetch_hf(entry, staging, sources, show_progress)
                if entry.repo
                else _fetch_url(http, entry, staging, sources, show_progress)
            )
            _verify_or_delete(staged, entry, expected, _hf_dir(entry, staging))
            final = directory / entry.path
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            report.fetched.append(entry.path)
            on_file(entry.path, "fetched")
    shutil.rmtree(staging, ignore_errors=True)
    return report


def _in_place(directory: Path, entry: WeightFile) -> bool:
    """True when the file is there with the pinned size and hash (a pin-less file: its size)."""
    path = directory / entry.path
    if not path.is_file() or path.stat().st_size != entry.size:
        return False
    return entry.sha256 is None or file_sha256(path) == entry.sha256


def _check_space(directory: Path, staging: Path, missing: list[WeightFile]) -> None:
    partial = (
        sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.is_dir() else 0
    )
    needed = sum(entry.size for entry in missing) - partial
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise CliError(
            ExitCode.USAGE,
            f"{directory}: {needed / 1e9:.1f} GB still to download, {free / 1e9:.1f} GB free",
            field="directory",
        )


def _hub_sha256(entry: WeightFile, sources: Sources) -> str:
    """The SHA-256 the Hub publishes for an LFS file (its ETag) at the pinned commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(
        str(entry.repo), str(entry.filename), revision=entry.revision, endpoint=sources.hf_endpoint
    )
    try:
        metadata = get_hf_file_metadata(url, endpoint=sources.hf_endpoint)
    except Exception as error:  # the Hub client's errors and its HTTP library's (httpx2)
        raise _service_error(entry, f"cannot read its metadata: {error}") from None
    etag = (metadata.etag or "").lower()
    if not _SHA256.fullmatch(etag) or metadata.size != entry.size:
        raise _service_error(
            entry, f"the Hub publishes no SHA-256 of {entry.size} bytes for it (got {etag!r})"
        )
    return etag


def _fetch_hf(entry: WeightFile, staging: Path, sources: Sources, show_progress: bool) -> Path:
    """`hf_hub_download` into the staging area (it resumes its own `.incomplete` files)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    local_dir = _hf_dir(entry, staging)
    bars_were_off = are_progress_bars_disabled()
    if not show_progress:
        disable_progress_bars()
    try:
        return Path(
            hf_hub_download(
                str(entry.repo),
                str(entry.filename),
                revision=entry.revision,
                local_dir=local_dir,
                endpoint=sources.hf_endpoint,
            )
        )
    except Exception as error:  # the Hub client's errors and its HTTP library's (httpx2)
        raise _service_error(entry, f"download failed ({error}); run again to resume") from None
    finally:
        if not bars_were_off:
            enable_progress_bars()


def _hf_dir(entry: WeightFile, staging: Path) -> Path | None:
    return staging / "hf" / str(entry.repo).replace("/", "--") if entry.repo else None


def _fetch_url(
    http: httpx.Client, entry: WeightFile, staging: Path, sources: Sources, show_progress: bool
) -> Path:
    """GET into `<staging>/<path>.part`, resuming from what is there with an HTTP Range."""
    from tqdm import tqdm

    part = staging / f"{entry.path}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    url = sources.url(str(entry.url))
    last_error = ""
    with tqdm(
        total=entry.size,
        unit="B",
        unit_scale=True,
        desc=Path(entry.path).name,
        disable=None if show_progress else True,  # None: a bar on a terminal only, as the Hub's
    ) as bar:
        for _attempt in range(ATTEMPTS):
            have = part.stat().st_size if part.is_file() else 0
            if have > entry.size:
                part.unlink()
                have = 0
            if have == entry.size:
                return part
            bar.reset(total=entry.size)
            bar.update(have)
            try:
                _get_range(http, url, part, have, entry, bar.update)
            except httpx.TransportError as error:
                last_error = str(error) or type(error).__name__
    if part.is_file() and part.stat().st_size == entry.size:
        return part
    raise _service_error(entry, f"download interrupted ({last_error}); run again to resume")


def _get_range(
    http: httpx.Client,
    url: str,
    part: Path,
    have: int,
    entry: WeightFile,
    advance: Callable[[int], object],
) -> None:
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code >= 400:
            raise _service_error(entry, f"{url} answered HTTP {response.status_code}")
        resumed = have > 0 and response.status_code == 206
        if resumed and not response.headers.get("content-range", "").startswith(f"bytes {have}-"):
            raise _service_error(entry, f"{url} answered a range other than the one asked for")
        with part.open("ab" if resumed else "wb") as out:
            written = have if resumed else 0
            for chunk in response.iter_bytes():  # as received: a drop keeps it all
                written += len(chunk)
                if written > entry.size:
                    raise _service_error(entry, f"{url} sent more than {entry.size} bytes")
                out.write(chunk)
                advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())


def _verify_or_delete(
    staged: Path, entry: WeightFile, expected_sha256: str, hf_dir: Path | None
) -> None:
    """Keep `staged` only if it is the pinned file; else delete it with huggingface_hub's
    bookkeeping of it (a rerun then downloads it afresh)."""
    size = staged.stat().st_size
    digest = file_sha256(staged) if size == entry.size else None
    if digest == expected_sha256:
        return
    staged.unlink()
    if hf_dir is not None:
        bookkeeping = (hf_dir / ".cache" / "huggingface" / "download" / str(entry.filename)).parent
        for leftover in bookkeeping.glob(f"{Path(str(entry.filename)).name}.*"):
            leftover.unlink()
    found = f"SHA-256 {digest}" if digest else f"{size} bytes"
    raise CliError(
        ExitCode.SERVICE,
        f"{entry.path}: downloaded file refused: expected {entry.size} bytes with SHA-256 "
        f"{expected_sha256}, got {found} (from {entry.source}); nothing was kept",
        field=entry.path,
    )


def _service_error(entry: WeightFile, message: str) -> CliError:
    return CliError(ExitCode.SERVICE, f"{entry.path}: {message}", field=entry.path)
