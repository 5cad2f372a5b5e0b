"""Mask geometry shared by backends and strategies (numpy only).

It lives here, not in a strategy or a backend, so that a backend can compute what a strategy
reads (SAMURAI's candidate boxes) without importing any strategy, and every backend computes
it by the same rule.
"""

from __future__ import annotations

import numpy as np

from treemem.types import BoolArray, Float32Array


def boxes_from_occupancy(rows: BoolArray, cols: BoolArray) -> Float32Array:
    """SAMURAI's box of a mask from which rows (..., H) and columns (..., W) it occupies:
    (..., 4) float32 x1, y1, x2, y2 with the max inclusive, and [0, 0, 0, 0] for an empty mask.

    Taking occupancy rather than the mask lets a backend reduce the mask on its own device
    and move only (H + W) booleans per mask to the host."""
    height, width = rows.shape[-1], cols.shape[-1]
    ys, xs = np.arange(height), np.arange(width)
    box = np.stack(
        [
            np.where(cols, xs, width).min(axis=-1),
            np.where(rows, ys, height).min(axis=-1),
            np.where(cols, xs, -1).max(axis=-1),
            np.where(rows, ys, -1).max(axis=-1),
        ],
        axis=-1,
    )
    occupied = np.asarray(rows.any(axis=-1))
    boxes: Float32Array = np.where(occupied[..., None], box, 0).astype(np.float32)
    return boxes


def mask_boxes(masks: BoolArray) -> Float32Array:
    """(..., H, W) masks -> (..., 4) float32 boxes x1, y1, x2, y2 (max inclusive; empty: zeros)."""
    return boxes_from_occupancy(np.asarray(masks.any(axis=-1)), np.asarray(masks.any(axis=-2)))
