"""The checksum manifest of a models directory in the weights bucket.

`upload-weights` (the CLI) writes every file of a models directory under
`<model_version>/<relative path>` and then `<model_version>/manifest.json`; the worker downloads
what its local cache lacks or has with another checksum, verifies, and loads. Written last, the
manifest marks a complete upload.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from runtime.fileio import file_sha256

MANIFEST_NAME = "manifest.json"


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    size: int


class WeightsManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_version: str
    files: dict[str, ManifestEntry]  # relative POSIX path -> checksum

    @classmethod
    def of_directory(cls, root: Path, model_version: str) -> WeightsManifest:
        files = {
            path.relative_to(root).as_posix(): ManifestEntry(
                sha256=file_sha256(path), size=path.stat().st_size
            )
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != MANIFEST_NAME and not _bookkeeping(path, root)
        }
        return cls(model_version=model_version, files=files)

    def object_key(self, relative_path: str) -> str:
        return f"{self.model_version}/{relative_path}"

    @property
    def manifest_key(self) -> str:
        return f"{self.model_version}/{MANIFEST_NAME}"

    def stale_files(self, root: Path) -> list[str]:
        """Files missing under `root` or differing from the manifest (size first, then hash)."""
        stale = []
        for relative, entry in self.files.items():
            local = root / relative
            if (
                not local.is_file()
                or local.stat().st_size != entry.size
                or file_sha256(local) != entry.sha256
            ):
                stale.append(relative)
        return stale


def _bookkeeping(path: Path, root: Path) -> bool:
    """Hidden files and folders are local bookkeeping (the sync's verified stamp, the engine's
    official-release verdict, a fetch in progress), never weights to publish."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)
