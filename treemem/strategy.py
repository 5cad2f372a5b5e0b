"""The strategy protocols (one job each) and the `StrategySet` that composes them.

They live in the engine package so the engine depends on contracts only; implementations
live in `treemem.strategies`.

Strategies see numbers (scores, IoUs, occlusion logits, memory histories), never models.
Shapes: N pathway rows of one object, K candidates per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from treemem.types import (
    Float32Array,
    FloatArray,
    IntArray,
    MemoryEntry,
    MemoryHistory,
    MemoryPlan,
)


@dataclass(frozen=True)
class CandidateTable:
    """One object's N x K candidates at one frame, scored and ranked once.

    score: (N, K) float64 cumulative scores (non-finite ones are rejected candidates);
    iou: (N, K) predicted IoUs; occlusion: (N,) occlusion logit of each parent row;
    ranking: flat indices (row * K + k) of the finite candidates, best first, ties in
    (row, k) order.
    """

    score: FloatArray
    iou: Float32Array
    occlusion: Float32Array
    ranking: IntArray

    @classmethod
    def build(cls, score: FloatArray, iou: Float32Array, occlusion: Float32Array) -> CandidateTable:
        flat = score.ravel()
        order = np.argsort(-flat, kind="stable")
        finite = order[np.isfinite(flat[order])]
        return cls(score=score, iou=iou, occlusion=occlusion, ranking=finite.astype(np.int64))

    @property
    def num_candidates(self) -> int:
        return int(self.score.shape[1])


@dataclass(frozen=True)
class RecalledMemory:
    """Memory selection's answer before weighting: entries with their temporal positions."""

    spatial: tuple[tuple[MemoryEntry, int], ...]
    pointers: tuple[tuple[MemoryEntry, int], ...]


class Scoring(Protocol):
    """Score every candidate given its parent's cumulative score: (N,), (N, K) -> (N, K)."""

    def __call__(self, parent_scores: FloatArray, iou: Float32Array) -> FloatArray: ...


class Pruning(Protocol):
    """Choose up to `capacity` survivors; returns flat candidate indices, best first."""

    def __call__(self, table: CandidateTable, capacity: int) -> IntArray: ...


class Diversity(Protocol):
    """Replace pruning on uncertain frames; returns None when the frame is certain."""

    def __call__(self, table: CandidateTable, capacity: int) -> IntArray | None: ...


class StartRule(Protocol):
    """The first step after a prompt, from a single pathway: (K,) IoUs -> kept candidates.

    Returns the candidate index of each new pathway (length <= capacity) and their scores.
    """

    def __call__(self, iou: Float32Array, capacity: int) -> tuple[IntArray, FloatArray]: ...


class MemorySelection(Protocol):
    """Which past frames a pathway reads, and what of its ancestry it may read later.

    Contract the engine relies on to free memory: `recall(extend(h, e), t + 1)` reads only
    entries of `extend(h, e)`, and `extend` keeps only entries of `h` plus `e`.
    """

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory: ...

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory: ...

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """The history a re-prompted object continues from (`history` is its best
        pathway's, with the prompt already among the conditioning entries)."""
        ...


class MemoryWeighting(Protocol):
    """Attach a key weight to every recalled entry (attention modulation)."""

    def __call__(self, recalled: RecalledMemory) -> MemoryPlan: ...


@dataclass(frozen=True)
class StrategySet:
    """Everything the engine needs to run a search; the engine never looks past these."""

    name: str
    pathways: int
    start: StartRule
    scoring: Scoring
    pruning: Pruning
    diversity: Diversity | None
    memory: MemorySelection
    weighting: MemoryWeighting
