"""Candidate mask statistics on the model's device (`ProposalOptions.mask_stats`).

The same rule as `treemem.geometry.mask_stats` (areas, boxes, the largest 8-connected
component of each candidate outside each other one), computed with torch where the masks
are, so only a few numbers per candidate cross to the host. Components are found as there:
each pixel takes the smallest row-major index among its 8 neighbours (a 3 x 3 min pool),
then jumps to its label's label, until nothing changes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from treemem.geometry import boxes_from_occupancy
from treemem.types import Float32Array, MaskStats

_EXACT_FLOAT32 = 2**24
"""Pixel indices below this are exact in float32, which the min pool runs in."""


def component_labels(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> (B, H, W) int64 component labels: each component's smallest
    row-major pixel index, H * W for background (`treemem.geometry.component_labels`)."""
    batch, height, width = masks.shape
    background = height * width
    dtype = torch.float32 if background < _EXACT_FLOAT32 else torch.float64
    index = torch.arange(background, device=masks.device).view(1, height, width)
    labels = torch.where(masks, index, background)
    sentinel = torch.full((batch, 1), background, dtype=torch.int64, device=masks.device)
    while True:
        # max-pool of negated labels = min-pool; its -inf padding never wins a minimum
        smallest = -F.max_pool2d(-labels.to(dtype)[:, None], 3, stride=1, padding=1)[:, 0]
        smallest = torch.where(masks, smallest.to(torch.int64), background)
        flat = torch.cat([smallest.view(batch, -1), sentinel], dim=1)
        for _ in range(4):
            flat = flat.gather(1, flat)
        jumped = flat[:, :-1].view(batch, height, width)
        if torch.equal(jumped, labels):
            return jumped
        labels = jumped


def largest_components(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> each mask's largest 8-connected component (ties: the one met first
    in a row-major scan; empty for an empty mask)."""
    batch, height, width = masks.shape
    background = height * width
    labels = component_labels(masks)
    out = torch.zeros_like(masks)
    for row in range(batch):  # one mask at a time: a count per pixel index, on the device
        counts = torch.bincount(labels[row].flatten(), minlength=background + 1)[:background]
        best = counts.argmax()  # the first of equal maxima: the smallest label
        out[row] = (labels[row] == best) & (counts[best] > 0)
    return out


def _boxes(masks: torch.Tensor) -> Float32Array:
    """(..., H, W) bool on the device -> (..., 4) float32 boxes on the host."""
    return boxes_from_occupancy(masks.any(dim=-1).cpu().numpy(), masks.any(dim=-2).cpu().numpy())


def mask_stats(low_res: torch.Tensor, frame_size: tuple[int, int]) -> MaskStats:
    """`MaskStats` of (U, K, h, w) low-resolution candidate logits: at video resolution
    (upsampled bilinearly, as `mask_logits` is, then > 0), and their low-resolution area."""
    count, k = low_res.shape[:2]
    logits = low_res.float()
    masks = F.interpolate(logits, size=frame_size, mode="bilinear", align_corners=False) > 0
    outside = masks[:, None, :] & ~masks[:, :, None]  # [u, kept k, other j]
    component = largest_components(outside.flatten(0, 2)).view(outside.shape)
    union = masks[:, :, None] | component
    return MaskStats(
        area=masks.sum(dim=(-2, -1)).cpu().numpy().astype(np.int64),
        area_lowres=(logits > 0).sum(dim=(-2, -1)).cpu().numpy().astype(np.int64),
        boxes=_boxes(masks),
        outside_area=component.sum(dim=(-2, -1)).cpu().numpy().astype(np.int64).reshape(
            count, k, k
        ),
        outside_union_boxes=_boxes(union),
    )
