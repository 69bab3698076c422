"""How far a variant's preparation agrees with the per-frame path's on the same weights and
frames: S3FD boxes, DWPose landmarks, face boxes, the crops where boxes moved, latents, masks."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.prepare_paths import Recorded
from runtime.engine.frame_compose import crop_face


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def agreement(
    prepared: Any, reference: dict[str, Any], ours_seen: Recorded, theirs_seen: Recorded
) -> dict[str, Any]:
    """How far a variant's result differs from the per-frame one (same weights, same frames)."""
    ref_face = np.array([b is not None for b in reference["boxes"]])
    both = np.flatnonzero(ref_face & prepared.has_face)
    ref_boxes = np.array(
        [(b.x1, b.y1, b.x2, b.y2) if b is not None else (0, 0, 0, 0) for b in reference["boxes"]]
    )
    box_diff = np.abs(ref_boxes[both] - prepared.boxes[both]).max(axis=1)
    moved = both[box_diff > 0]
    crop_diffs = [
        np.abs(
            crop_face(prepared.frames[i], ref_boxes[i]).astype(int)
            - crop_face(prepared.frames[i], prepared.boxes[i]).astype(int)
        )
        for i in moved
    ]
    detected = [
        (a, b)
        for a, b in zip(ours_seen.detections, theirs_seen.detections, strict=True)
        if a is not None and b is not None
    ]
    det_diff = [int(np.abs(np.subtract(a, b)).max()) for a, b in detected]
    ours_lm, theirs_lm = np.array(ours_seen.landmarks), np.array(theirs_seen.landmarks)
    same_masks, mask_max, mask_mean = 0, 0, []
    for i in both:
        theirs_mask, ours_mask = reference["masks"][i], prepared.masks[i]
        if theirs_mask is None or theirs_mask.shape != ours_mask.shape:
            continue
        same_masks += int(np.array_equal(theirs_mask, ours_mask))
        if theirs_mask.size:
            diff = np.abs(theirs_mask.astype(int) - ours_mask.astype(int))
            mask_max = max(mask_max, int(diff.max()))
            mask_mean.append(float(diff.mean()))
    latent_diff = np.abs(reference["latents"][both] - prepared.latents[both])
    return {
        "faces": int(prepared.has_face.sum()),
        "faces_per_frame": int(ref_face.sum()),
        "same_face_frames": bool(np.array_equal(ref_face, prepared.has_face)),
        "s3fd_boxes_max_abs_diff_px": max(det_diff, default=0),
        "s3fd_boxes_differing": f"{sum(d > 0 for d in det_diff)}/{len(det_diff)}",
        "landmarks_max_abs_diff_px": _max_abs(ours_lm, theirs_lm)
        if ours_lm.shape == theirs_lm.shape
        else None,
        "boxes_max_abs_diff_px": int(box_diff.max()) if len(both) else 0,
        "boxes_differing": f"{len(moved)}/{len(both)}",
        "moved_crops_max_abs_diff": max((int(d.max()) for d in crop_diffs), default=0),
        "moved_crops_mean_abs_diff": round(float(np.mean([d.mean() for d in crop_diffs])), 3)
        if crop_diffs
        else 0.0,
        "latents_max_abs_diff": float(latent_diff.max()) if len(both) else 0.0,
        "latents_mean_abs_diff": float(latent_diff.mean()) if len(both) else 0.0,
        "masks_identical": f"{same_masks}/{len(both)}",
        "masks_max_abs_diff": mask_max,
        "masks_mean_abs_diff": round(float(np.mean(mask_mean)), 4) if mask_mean else 0.0,
    }
