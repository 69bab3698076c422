"""What speak needs of a prepared avatar, kept on the GPU once per avatar (issue 10).

Every job on an avatar reads the same per-source-frame data: the 8-channel latents, the visible
box region of each frame, its blend mask and the resize taps of its box. Copying them to the
device per frame and per job cost ~0.4 ms a frame on an H200 (pageable copies, small kernels);
`ResidentAvatar` uploads them once, padded to the largest box, so a whole batch is gathered and
blended with a few kernels (`blend.blend_batch`) and comes back in one pinned copy. It also keeps
the source frames converted to the encoder's I420 layout on the host, each once on first use
(`yuv.SourceFrames`), so composing an output frame converts only the pasted box.

`ResidentCache` holds a few avatars (least recently used out first, bounded by count and bytes)
and lets go of an avatar's tensors as soon as the avatar itself is garbage collected, so the
worker's own avatar LRU stays the one that decides what lives. The serialized `PreparedAvatar`
format is untouched: this is derived state, rebuilt on demand.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.blend import AxisTaps, PasteBox, blend_batch, scale_mask
from runtime.engine.latents import CROP_SIZE
from runtime.engine.yuv import SourceFrames

DEFAULT_MAX_AVATARS = 4
# Device tensors and host I420 frames: a 30 s 1216x704 avatar is ~0.25 GB + ~1 GB.
DEFAULT_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True, eq=False)
class ResidentAvatar:
    """One avatar's speak-time data on a device, indexed by source frame."""

    latents: torch.Tensor  # [N, 8, 32, 32] in the engine's dtype
    regions: torch.Tensor  # [N, H, W, 3] uint8: visible box region, padded to the largest
    masks: torch.Tensor  # [N, H, W] uint8: the mask under the visible region, padded
    rows: AxisTaps  # [N, H] resize taps of each frame's visible rows
    cols: AxisTaps  # [N, W] resize taps of each frame's visible columns
    sizes: np.ndarray  # [N, 2] int: visible (height, width) per frame; 0 where no face
    source_i420: SourceFrames  # host: the source frames in the encoder's layout, on first use

    @classmethod
    def build(
        cls, avatar: PreparedAvatar, device: torch.device, dtype: torch.dtype
    ) -> ResidentAvatar:
        frame_height, frame_width = avatar.frames.shape[1:3]
        count = avatar.frame_count
        sizes = np.zeros((count, 2), dtype=np.int64)
        windows: list[tuple[PasteBox, tuple[int, int, int, int]] | None] = []
        for i in range(count):
            if not avatar.has_face[i]:
                windows.append(None)
                continue
            x1, y1, x2, y2 = (int(v) for v in avatar.boxes[i])
            box = PasteBox(x1, y1, x2, y2, frame_width=frame_width, frame_height=frame_height)
            windows.append((box, box.window))
            sizes[i] = box.window[3], box.window[2]
        height, width = (int(v) for v in sizes.max(axis=0)) if count else (0, 0)
        regions = np.zeros((count, height, width, 3), dtype=np.uint8)
        masks = np.zeros((count, height, width), dtype=np.uint8)
        empty_rows = AxisTaps.of(CROP_SIZE, 1, 0, 0, horizontal=False)
        empty_cols = AxisTaps.of(CROP_SIZE, 1, 0, 0, horizontal=True)
        row_taps, col_taps = [], []
        for i, entry in enumerate(windows):
            if entry is None:
                row_taps.append(empty_rows)
                col_taps.append(empty_cols)
                continue
            box, (ox, oy, w, h) = entry
            vx1, vy1, vx2, vy2 = box.visible
            regions[i, :h, :w] = avatar.frames[i, vy1:vy2, vx1:vx2]
            masks[i, :h, :w] = avatar.masks[i][oy : oy + h, ox : ox + w]
            row_taps.append(AxisTaps.of(CROP_SIZE, box.y2 - box.y1, oy, h, horizontal=False))
            col_taps.append(AxisTaps.of(CROP_SIZE, box.x2 - box.x1, ox, w, horizontal=True))
        return cls(
            latents=torch.from_numpy(avatar.latents).to(device=device, dtype=dtype),
            regions=torch.from_numpy(regions).to(device),
            masks=torch.from_numpy(masks).to(device),
            rows=AxisTaps.stack(row_taps, height).to(device),
            cols=AxisTaps.stack(col_taps, width).to(device),
            sizes=sizes,
            source_i420=SourceFrames(avatar.frames),
        )

    @property
    def nbytes(self) -> int:
        """Device tensors and host I420 frames together: what keeping this avatar costs."""
        taps = [t for axis in (self.rows, self.cols) for t in (axis.i0, axis.i1, axis.w0, axis.w1)]
        tensors = [self.latents, self.regions, self.masks, *taps]
        return sum(t.numel() * t.element_size() for t in tensors) + self.source_i420.nbytes

    def blend(
        self, faces_bgr: torch.Tensor, sources: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """Blend faces [B, 3, 256, 256] into the regions of source frames `sources` ([B] on the
        device); `weights` ([B], 0..1) fade the masks. [B, H, W, 3] uint8, padded."""
        masks = self.masks[sources]
        if weights is not None:
            masks = scale_mask(masks, weights[:, None, None])
        rows, cols = self.rows.select(sources), self.cols.select(sources)
        return blend_batch(faces_bgr, self.regions[sources], masks, rows, cols)


@dataclass
class _Entry:
    avatar: weakref.ref[PreparedAvatar]
    resident: ResidentAvatar


class ResidentCache:
    """A few `ResidentAvatar`s on one device, least recently used out first."""

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype,
        *,
        max_avatars: int = DEFAULT_MAX_AVATARS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.max_avatars = max_avatars
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        # Re-entrant: a collected avatar's callback may run inside `get` on this thread.
        self._lock = threading.RLock()

    def get(self, avatar: PreparedAvatar) -> ResidentAvatar:
        """The avatar's resident data, uploaded on first use. The newest entry always stays,
        even when it alone is over `max_bytes` (the job needs it)."""
        key = id(avatar)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.avatar() is avatar:
                self._entries.move_to_end(key)
                return entry.resident
        resident = ResidentAvatar.build(avatar, self.device, self.dtype)
        with self._lock:
            self._entries[key] = _Entry(weakref.ref(avatar, self._forget(key)), resident)
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and (
                len(self._entries) > self.max_avatars or self.nbytes > self.max_bytes
            ):
                self._entries.popitem(last=False)
        return resident

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, avatar: PreparedAvatar) -> bool:
        entry = self._entries.get(id(avatar))
        return entry is not None and entry.avatar() is avatar

    @property
    def nbytes(self) -> int:
        return sum(entry.resident.nbytes for entry in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _forget(self, key: int) -> Callable[[weakref.ref[PreparedAvatar]], None]:
        """Drop the entry once its avatar is collected (not a newer avatar at the same id)."""
        cache = weakref.ref(self)

        def forget(ref: weakref.ref[PreparedAvatar]) -> None:
            owner = cache()
            if owner is None:
                return
            with owner._lock:
                entry = owner._entries.get(key)
                if entry is not None and entry.avatar is ref:
                    del owner._entries[key]

        return forget
