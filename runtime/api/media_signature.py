"""Is an uploaded avatar file the kind it claims, by its first bytes (stdlib only)?

The API cannot decode media (no PyAV in the Lambda), but an empty file or one whose first bytes
are not an MP4/QuickTime box, a PNG or a JPEG can never be prepared: refusing it at registration
names the field at fault before an avatar record exists, instead of a failed job later.
"""

from __future__ import annotations

HEAD_BYTES = 16
_QUICKTIME_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def avatar_file_problem(head: bytes, size: int, kind: str) -> str | None:
    """Why the file cannot be a `kind` ("video" or "image") avatar, or None if it may be."""
    if size == 0:
        return f"the uploaded {kind} is empty (0 bytes)"
    if kind == "video" and len(head) >= 8 and head[4:8] in _QUICKTIME_BOXES:
        return None
    if kind == "image" and (head.startswith(_PNG) or head.startswith(_JPEG)):
        return None
    expected = "an MP4 or QuickTime video" if kind == "video" else "a PNG or JPEG image"
    return f"the uploaded file is not {expected} (its first bytes say otherwise)"
