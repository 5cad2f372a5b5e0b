"""Memory attention modulation: a weight per memory entry on the cross-attention keys."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from treemem.strategy import RecalledMemory
from treemem.types import MemoryEntry, MemoryPlan, MemoryRef

PROMPT_SCORE = 10.0
"""The fixed occlusion score SAM2Long gives a prompt frame when ranking memory entries."""


def to_bfloat16(value: float) -> float:
    """Round a float to bfloat16 (round to nearest even), as a reference tensor would."""
    bits = int(np.float32(value).view(np.uint32))
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(np.uint32(rounded).view(np.float32))


@functools.lru_cache(maxsize=256)
def linspace_float32(low: float, high: float, count: int) -> tuple[float, ...]:
    """torch.linspace in float32: the first half counts up from low, the rest down from high."""
    if count == 1:
        return (float(np.float32(low)),)
    start, end = np.float32(low), np.float32(high)
    step = np.float32((end - start) / np.float32(count - 1))
    half = count // 2
    return tuple(
        float(start + step * np.float32(i))
        if i < half
        else float(end - step * np.float32(count - 1 - i))
        for i in range(count)
    )


@dataclass(frozen=True)
class Unweighted:
    """Plain SAM 2: every key weight is 1."""

    def __call__(self, recalled: RecalledMemory) -> MemoryPlan:
        return MemoryPlan(
            spatial=tuple(MemoryRef(e.node, pos) for e, pos in recalled.spatial),
            pointers=tuple(MemoryRef(e.node, pos) for e, pos in recalled.pointers),
            pointer_span=recalled.pointer_span,
        )


@dataclass(frozen=True)
class OcclusionRankWeights:
    """SAM2Long's modulation: entries ranked by occlusion score get linspace(w_low, w_high).

    Spatial entries and pointers are ranked separately (prompt frames score 10); nothing is
    weighted while the spatial memory holds only prompt frames. `bf16_prompt_pointers`
    reproduces the reference on the CPU, where a pointer list of prompt frames alone keeps
    its weights in bfloat16.
    """

    w_low: float = 0.95
    w_high: float = 1.05
    bf16_prompt_pointers: bool = True

    def weights(self, entries: Sequence[MemoryEntry], *, pointers: bool) -> list[float]:
        # Occlusion logits are float32 values, so ordering them as Python floats is exact;
        # sorted() is stable, which fixes the order of equal scores (clones).
        scores = [PROMPT_SCORE if e.conditioning else e.occlusion for e in entries]
        ramp = linspace_float32(self.w_low, self.w_high, len(entries))
        weights = [0.0] * len(entries)
        for rank, index in enumerate(sorted(range(len(scores)), key=scores.__getitem__)):
            weights[index] = ramp[rank]
        if pointers and self.bf16_prompt_pointers and all(e.conditioning for e in entries):
            weights = [to_bfloat16(w) for w in weights]
        return weights

    def __call__(self, recalled: RecalledMemory) -> MemoryPlan:
        if len(recalled.spatial) <= 1:
            return Unweighted()(recalled)
        spatial_w = self.weights([e for e, _ in recalled.spatial], pointers=False)
        pointer_w = self.weights([e for e, _ in recalled.pointers], pointers=True)
        return MemoryPlan(
            spatial=tuple(
                MemoryRef(e.node, pos, w)
                for (e, pos), w in zip(recalled.spatial, spatial_w, strict=True)
            ),
            pointers=tuple(
                MemoryRef(e.node, pos, w)
                for (e, pos), w in zip(recalled.pointers, pointer_w, strict=True)
            ),
            pointer_span=recalled.pointer_span,
        )
