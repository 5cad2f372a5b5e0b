"""Mask geometry shared by backends and strategies (numpy only).

It lives here, not in a strategy or a backend, so that a backend can compute what a strategy
reads (SAMURAI's candidate boxes) without importing any strategy, and every backend computes
it by the same rule.
"""

from __future__ import annotations

import numpy as np

from treemem.types import BoolArray, Float32Array, IntArray, MaskStats


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



def component_labels(masks: BoolArray) -> IntArray:
    """(B, H, W) masks -> (B, H, W) int64 labels of their 8-connected components.

    Each foreground pixel is labelled with the row-major index (y * W + x) of its component's
    first pixel in a row-major scan, i.e. the component's smallest index; background pixels
    get H * W. Found by taking the smallest label among the 8 neighbours, each round followed
    by pointer jumping (a label is a pixel of the same component, so a pixel may take its
    label's label), which needs few rounds even for long thin components. A backend that
    measures on its own device follows the same rule, so both give the same labels."""
    batch, height, width = masks.shape
    background = height * width
    index = np.arange(background, dtype=np.int64).reshape(height, width)
    labels = np.where(masks, index, background)
    # each mask's labels, then one background sentinel, flattened: jumps index into it
    offsets = (np.arange(batch, dtype=np.int64) * (background + 1))[:, None]
    sentinel = np.full((batch, 1), background, dtype=np.int64)
    while True:
        padded = np.pad(labels, [(0, 0), (1, 1), (1, 1)], constant_values=background)
        smallest = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(smallest, padded[:, dy : dy + height, dx : dx + width], out=smallest)
        kept = np.where(masks, smallest, background).reshape(batch, -1)
        flat = np.concatenate([kept, sentinel], axis=1)
        for _ in range(4):
            flat = flat.ravel()[flat + offsets]
        jumped: IntArray = flat[:, :-1].reshape(labels.shape)
        if np.array_equal(jumped, labels):
            return jumped
        labels = jumped


def largest_components(masks: BoolArray) -> BoolArray:
    """(..., H, W) masks -> the largest 8-connected component of each (empty for an empty
    mask); between equal areas, the component met first in a row-major scan (cv2's
    connectedComponentsWithStats order, as DAM4SAM picks).

    Only the non-empty masks are labelled, cropped to the rows and columns any of them
    occupies (a crop keeps row-major order, so it keeps the tie rule)."""
    height, width = masks.shape[-2:]
    flat = masks.reshape(-1, height, width)
    out = np.zeros_like(flat)
    busy = np.flatnonzero(flat.any(axis=(1, 2)))
    if busy.size == 0:
        return out.reshape(masks.shape)
    rows = np.flatnonzero(flat[busy].any(axis=(0, 2)))
    cols = np.flatnonzero(flat[busy].any(axis=(0, 1)))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = flat[busy, y0:y1, x0:x1]
    labels = component_labels(crop)
    size = crop.shape[1] * crop.shape[2]
    for i, row in enumerate(busy.tolist()):
        counts = np.bincount(labels[i].ravel(), minlength=size + 1)[:size]
        out[row, y0:y1, x0:x1] = labels[i] == int(np.argmax(counts))
    return out.reshape(masks.shape)


def mask_stats(masks: BoolArray, area_lowres: IntArray) -> MaskStats:
    """`MaskStats` of (N, K, H, W) candidate masks at video resolution; `area_lowres` (N, K)
    is their pixel count at the model's own resolution, which only the backend knows.

    The reference rule every backend must match (tests/backends/conformance.py compares)."""
    n, k = masks.shape[:2]
    outside = masks[:, None, :] & ~masks[:, :, None]  # [r, kept k, other j]
    component = largest_components(outside)
    union = masks[:, :, None] | component
    return MaskStats(
        area=masks.sum(axis=(-2, -1)).astype(np.int64),
        area_lowres=np.asarray(area_lowres, dtype=np.int64).reshape(n, k),
        boxes=mask_boxes(masks),
        outside_area=component.sum(axis=(-2, -1)).astype(np.int64),
        outside_union_boxes=mask_boxes(union),
    )
