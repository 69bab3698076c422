"""A prepared avatar: everything per source frame that does not depend on the audio.

Built once by `MuseTalkEngine.prepare`, cached by the worker (bytes in S3, objects in an LRU).
Frames play as a ping-pong cycle (spec §7): 0..N-1, N-1..0, so frame i of the output uses source
frame `cycle_index(i)`. Frames without a face keep their place in the cycle and pass through
unchanged; unlike upstream (spec §11) the latent list is indexed by source frame, so a faceless
frame never shifts the latents of the others out of step with the frames and boxes.

Serialized as an uncompressed `.npz` (no pickle, `allow_pickle=False` on load) with a JSON
header carrying the format version; a version we do not know is refused, so the caller rebuilds.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from runtime.engine.engine_contract import PreparedAvatarFormatError
from runtime.engine.options import AvatarOptions

FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class PreparedAvatar:
    frames: np.ndarray  # [N, H, W, 3] uint8 BGR, the source frames in order
    boxes: np.ndarray  # [N, 4] int32 x1, y1, x2, y2 (margin applied); meaningless where no face
    has_face: np.ndarray  # [N] bool
    latents: np.ndarray  # [N, 8, 32, 32] float32 (masked, reference); zeros where no face
    masks: tuple[np.ndarray, ...]  # per frame: uint8 blend mask over its box [y2-y1, x2-x1]
    fps: float
    options: AvatarOptions
    source_sha256: str
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)  # not serialized
    _cycle: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        count = len(self.frames)
        forward = np.arange(count)
        object.__setattr__(self, "_cycle", np.concatenate([forward, forward[::-1]]))

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def faces(self) -> int:
        return int(self.has_face.sum())

    def cycle_index(self, output_frame: int) -> int:
        """Spec §7 ping-pong: output frame i shows source frame frames_cycle[i % 2N]."""
        return int(self._cycle[output_frame % len(self._cycle)])

    @property
    def nbytes(self) -> int:
        arrays = [self.frames, self.boxes, self.has_face, self.latents, *self.masks]
        return sum(array.nbytes for array in arrays)

    def to_bytes(self) -> bytes:
        header = {
            "format_version": FORMAT_VERSION,
            "fps": self.fps,
            "options": self.options.to_json(),
            "source_sha256": self.source_sha256,
            "model_version": self.model_version,
        }
        mask_shapes = np.array([mask.shape for mask in self.masks], dtype=np.int32).reshape(-1, 2)
        flat_masks = (
            np.concatenate([mask.reshape(-1) for mask in self.masks])
            if self.masks
            else np.zeros(0, np.uint8)
        )
        buffer = io.BytesIO()
        np.savez(
            buffer,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            frames=self.frames,
            boxes=self.boxes,
            has_face=self.has_face,
            latents=self.latents,
            mask_shapes=mask_shapes,
            masks=flat_masks,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PreparedAvatar:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                header = json.loads(archive["header"].tobytes().decode())
                if header.get("format_version") != FORMAT_VERSION:
                    raise PreparedAvatarFormatError(
                        f"prepared avatar format {header.get('format_version')} "
                        f"is not {FORMAT_VERSION}"
                    )
                shapes = archive["mask_shapes"]
                flat = archive["masks"]
                masks = []
                offset = 0
                for height, width in shapes:
                    size = int(height) * int(width)
                    masks.append(flat[offset : offset + size].reshape(int(height), int(width)))
                    offset += size
                return cls(
                    frames=archive["frames"],
                    boxes=archive["boxes"],
                    has_face=archive["has_face"],
                    latents=archive["latents"],
                    masks=tuple(masks),
                    fps=float(header["fps"]),
                    options=AvatarOptions.from_json(header["options"]),
                    source_sha256=str(header["source_sha256"]),
                    model_version=str(header["model_version"]),
                )
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as error:
            if isinstance(error, PreparedAvatarFormatError):
                raise
            raise PreparedAvatarFormatError(f"not a prepared avatar: {error}") from error
