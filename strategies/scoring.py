"""Candidate scoring rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treemem.strategy import Evidence
from treemem.types import FloatArray


@dataclass(frozen=True)
class CumulativeLogIou:
    """SAM2Long's score: parent score + ln(IoU + eps), in float64, so a path's score is the
    log of the product of its predicted IoUs and never rises while IoU <= 1."""

    eps: float = 1e-5

    def __call__(self, parent_scores: FloatArray, iou: Evidence) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.log(iou.astype(np.float64) + self.eps)
        return parent_scores.astype(np.float64)[:, None] + step


@dataclass(frozen=True)
class CurrentIou:
    """Plain SAM 2's score: the current predicted IoU alone (no memory of past choices)."""

    def __call__(self, parent_scores: FloatArray, iou: Evidence) -> FloatArray:
        return np.broadcast_to(iou.astype(np.float64), iou.shape).copy()
