"""`musetalk fetch-weights` against a local server that serves the official files' paths: the
Hub's resolve URLs through `HF_ENDPOINT`, the plain URLs through the mirror, with small stand-in
contents pinned like the real ones. Interrupted downloads resume; corrupted ones are refused and
leave nothing in place."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.cli import fetch_weights as fetching
from runtime.cli.errors import CliError, ExitCode
from runtime.cli.fetch_weights import PARTIAL_DIR, Sources, fetch_weights
from runtime.cli.main import main
from runtime.engine.layout import ModelsLayout
from runtime.engine.official_weights import OFFICIAL_FILES, WeightFile
from tests.support.weights_server import Served, WeightsServer, weights_server


def _content(entry: WeightFile) -> bytes:
    seed = hashlib.sha256(entry.path.encode()).digest()
    return (seed * 200)[: 3000 + len(entry.path) * 37]


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    with weights_server() as state:
        yield state


@pytest.fixture
def files(server: WeightsServer) -> list[WeightFile]:
    """The official files with their real sources, pinned to small contents the server holds."""
    pinned = []
    for entry in OFFICIAL_FILES:
        content = _content(entry)
        sha = hashlib.sha256(content).hexdigest()
        pinned.append(replace(entry, size=len(content), sha256=entry.sha256 and sha))
        if entry.repo:
            key = (entry.repo, str(entry.revision), str(entry.filename))
            server.hub[key] = Served(content)
        else:
            server.plain[str(entry.url).removeprefix("https://")] = Served(content)
    return pinned


def _sources(server: WeightsServer) -> Sources:
    return Sources(hf_endpoint=server.url, mirror=server.url, timeout_seconds=10)


def _served(server: WeightsServer, entry: WeightFile) -> Served:
    if entry.repo:
        return server.hub[(entry.repo, str(entry.revision), str(entry.filename))]
    return server.plain[str(entry.url).removeprefix("https://")]


def _entry(files: list[WeightFile], name: str) -> WeightFile:
    return next(entry for entry in files if entry.path.endswith(name))


def test_the_official_files_are_the_engines_layout() -> None:
    layout = ModelsLayout(Path("/m"))
    wanted = {path.relative_to("/m").as_posix() for path in layout.required_files()}
    wanted.add(layout.syncnet.relative_to("/m").as_posix())
    assert {entry.path for entry in OFFICIAL_FILES} == wanted
    for entry in OFFICIAL_FILES:
        assert bool(entry.repo) != bool(entry.url), entry.path
        assert entry.repo is None or len(str(entry.revision)) == 40, entry.path
        assert entry.sha256 is not None or entry.repo, entry.path  # else nothing to check against
    # torch.hub names carry the start of the file's SHA-256; the pins agree with the names.
    for name in ("resnet18-5c106cde.pth", "s3fd-619a316812.pth"):
        prefix = name.rsplit("-", 1)[1].split(".")[0]
        assert str(_entry(list(OFFICIAL_FILES), name).sha256).startswith(prefix)


def test_fetches_every_file_into_the_official_layout(
    tmp_path: Path, server: WeightsServer, files: list[WeightFile]
) -> None:
    models = tmp_path / "models"
    report = fetch_weights(models, sources=_sources(server), files=files, show_progress=False)
    assert ModelsLayout(models).missing_files() == []
    for entry in files:
        assert (models / entry.path).read_bytes() == _served(server, entry).content
    assert sorted(report.fetched) == sorted(entry.path for entry in files)
    assert not (models / PARTIAL_DIR).exists()
    # Pinned revisions were asked for, through HF_ENDPOINT's resolve URLs.
    assert server.gets("/TMElyralab/MuseTalk/resolve/3ef28bc5cff08c90ad8178a25f1b570cd800170f/")

    server.requests.clear()
    again = fetch_weights(models, sources=_sources(server), files=files, show_progress=False)
    assert again.fetched == []
    assert len(again.present) == len(files)
    assert server.gets("") == []  # verified in place: nothing downloaded


def test_a_dropped_plain_download_resumes_with_a_range(
    tmp_path: Path, server: WeightsServer, files: list[WeightFile]
) -> None:
    resnet = _entry(files, "resnet18-5c106cde.pth")
    _served(server, resnet).drop_after = [1000] * fetching.ATTEMPTS  # this whole run fails
    models = tmp_path / "models"
    with pytest.raises(CliError, match="run again to resume") as failed:
        fetch_weights(models, sources=_sources(server), files=files, show_progress=False)
    assert failed.value.field == resnet.path
    assert not (models / resnet.path).exists()
    part = models / PARTIAL_DIR / f"{resnet.path}.part"
    assert part.stat().st_size == 1000 * fetching.ATTEMPTS  # each attempt went on from the last
    assert server.gets("resnet18")[:3] == [None, "bytes=1000-", "bytes=2000-"]

    fetch_weights(models, sources=_sources(server), files=files, show_progress=False)
    assert server.gets("resnet18")[-1] == f"bytes={1000 * fetching.ATTEMPTS}-"
    assert (models / resnet.path).read_bytes() == _served(server, resnet).content
    assert not part.exists()


def test_a_dropped_hub_download_resumes_with_a_range(
    tmp_path: Path,
    server: WeightsServer,
    files: list[WeightFile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants

    # huggingface_hub writes what it received in chunks of this size (10 MB by default).
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 512)
    unet = _entry(files, "unet.pth")
    _served(server, unet).drop_after = [1200]
    models = tmp_path / "models"
    fetch_weights(models, sources=_sources(server), files=[unet], show_progress=False)
    assert server.gets("unet.pth") == [None, "bytes=1024-"]
    assert (models / unet.path).read_bytes() == _served(server, unet).content


@pytest.mark.parametrize("name", ["79999_iter.pth", "dw-ll_ucoco_384.pth"])
def test_a_corrupted_download_is_refused_and_nothing_is_kept(
    tmp_path: Path, server: WeightsServer, files: list[WeightFile], name: str
) -> None:
    entry = _entry(files, name)
    _served(server, entry).corrupt = True
    models = tmp_path / "models"
    with pytest.raises(CliError, match="refused") as refused:
        fetch_weights(models, sources=_sources(server), files=[entry], show_progress=False)
    assert refused.value.field == entry.path
    assert refused.value.exit_code == ExitCode.SERVICE
    assert str(entry.sha256) in refused.value.message
    assert not (models / entry.path).exists()
    leftovers = [p for p in (models / PARTIAL_DIR).rglob("*") if p.is_file() and name in p.name]
    assert leftovers == []


def test_a_file_without_a_published_pin_is_checked_against_the_hubs_sha256(
    tmp_path: Path, server: WeightsServer, files: list[WeightFile]
) -> None:
    syncnet = _entry(files, "latentsync_syncnet.pt")
    assert syncnet.sha256 is None
    served = _served(server, syncnet)
    good = served.content
    fetch_weights(tmp_path / "ok", sources=_sources(server), files=[syncnet], show_progress=False)
    assert (tmp_path / "ok" / syncnet.path).read_bytes() == good

    served.corrupt = True  # the bytes no longer match the ETag the server publishes for them
    with pytest.raises(CliError, match="refused"):
        fetch_weights(
            tmp_path / "bad", sources=_sources(server), files=[syncnet], show_progress=False
        )
    assert not (tmp_path / "bad" / syncnet.path).exists()


def test_the_command_reads_hf_endpoint_and_the_mirror_and_prints_json(
    tmp_path: Path,
    server: WeightsServer,
    files: list[WeightFile],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetching, "OFFICIAL_FILES", tuple(files))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv(fetching.ENV_MIRROR, server.url)
    out = io.StringIO()
    code = main(["fetch-weights", str(tmp_path / "m"), "--no-syncnet", "--json"], stdout=out)
    assert code == ExitCode.OK
    document = json.loads(out.getvalue())
    assert document["directory"] == str(tmp_path / "m")
    assert "syncnet/latentsync_syncnet.pt" not in document["fetched"]
    assert ModelsLayout(tmp_path / "m").missing_files() == []
    assert not server.gets("latentsync_syncnet")


@pytest.mark.parametrize("name", ["latentsync_syncnet.pt", "s3fd-619a316812.pth"])
def test_an_unreachable_host_is_a_clear_error_naming_the_file(
    tmp_path: Path, files: list[WeightFile], name: str
) -> None:
    entry = _entry(files, name)
    closed = Sources(
        hf_endpoint="http://127.0.0.1:9", mirror="http://127.0.0.1:9", timeout_seconds=2
    )
    with pytest.raises(CliError) as failed:
        fetch_weights(tmp_path / "m", sources=closed, files=[entry], show_progress=False)
    assert failed.value.field == entry.path
    assert failed.value.exit_code == ExitCode.SERVICE
    assert not (tmp_path / "m" / entry.path).exists()
