"""The playground page (`playground/`) and its pinned HLS player, served by the local gateway.

Only GETs of files inside `playground/` and the one hls.js build the page loads (installed by
`npm ci` from package-lock.json) are served; any other path, including one that climbs out with
`..` or a symlink, is not a static file and falls through to the API (which answers 404). The
page needs no API key to load: it asks for the key and sends it only to the API URL it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLAYGROUND_DIR = REPO_ROOT / "playground"
PLAYGROUND_PATH = "/playground/"
# The page loads this by its relative path (../node_modules/...), so the repository's layout
# works as it is from the gateway, from any static host serving the repository, and from a file.
HLS_SCRIPT_PATH = "/node_modules/hls.js/dist/hls.light.min.js"
HLS_SCRIPT_FILE = REPO_ROOT / HLS_SCRIPT_PATH.lstrip("/")
# The page's own code only; media and the API are other origins (the emulator, the gateway).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src http: https:; media-src http: https: blob:; worker-src blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": self.content_type,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer",
        }


def lookup(url_path: str) -> StaticFile | None:
    """The file `url_path` names, or None when it is not one of the page's files."""
    if url_path == HLS_SCRIPT_PATH:
        return _file(HLS_SCRIPT_FILE) if HLS_SCRIPT_FILE.is_file() else None
    if not url_path.startswith(PLAYGROUND_PATH):
        return None
    relative = url_path.removeprefix(PLAYGROUND_PATH) or "index.html"
    root = PLAYGROUND_DIR.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return _file(candidate)


def _file(path: Path) -> StaticFile:
    return StaticFile(path, _TYPES.get(path.suffix, "application/octet-stream"))
