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
    MaskStats,
    MemoryEntry,
    MemoryHistory,
    MemoryPlan,
    PromptResult,
    ProposalOptions,
    SurvivorRule,
)

Evidence = Float32Array | FloatArray
"""Per-candidate evidence a scoring rule turns into scores: the predicted IoUs (float32), or
a pathway model's likelihoods (float64)."""


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
    """Memory selection's answer before weighting: entries with their temporal positions.

    `pointer_span` is what the plan's pointer positions are normalised by (`MemoryPlan`):
    None for the video's length (SAM 2), or the frames seen so far (DAM4SAM)."""

    spatial: tuple[tuple[MemoryEntry, int], ...]
    pointers: tuple[tuple[MemoryEntry, int], ...]
    pointer_span: int | None = None


class Scoring(Protocol):
    """Score every candidate given its parent's cumulative score: (N,), (N, K) -> (N, K).

    `iou` is the per-candidate evidence: the predicted IoUs, or the pathway model's
    likelihoods when the set has one."""

    def __call__(self, parent_scores: FloatArray, iou: Evidence) -> FloatArray: ...


@dataclass(frozen=True)
class Survivors:
    """A pruning rule's answer: `kept` (<= capacity,) distinct flat candidate indices, best
    first, and which branch chose them ("pruning", or "diversity" on an uncertain frame), so
    the tree record can say what happened at each frame."""

    kept: IntArray
    rule: SurvivorRule


class Pruning(Protocol):
    """Choose up to `capacity` survivors of a tracked frame (every frame after the start).

    Uncertainty diversity is a pruning rule too: it looks at the frame's certainty itself and
    falls back to another rule on certain frames (`UncertaintyDiversity`)."""

    def __call__(self, table: CandidateTable, capacity: int) -> Survivors: ...


class StartRule(Protocol):
    """The first step after a prompt, from a single pathway: (K,) IoUs -> kept candidates.

    Returns the candidate index of each new pathway (length <= capacity) and their scores.
    `iou` is the evidence, as for `Scoring`.
    """

    def __call__(self, iou: Evidence, capacity: int) -> tuple[IntArray, FloatArray]: ...


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


class PathwayStep(Protocol):
    """A pathway model's view of one parent row at one frame (see `PathwayModel.step`).

    `likelihood` (K,) float64 replaces the predicted IoUs as scoring evidence; `motion(k)` is
    what candidate k stores for memory selection (None when the model has none this frame);
    `child(k)` is the state of the pathway that keeps candidate k (computed only for kept
    candidates; children of one parent share its predicted state)."""

    @property
    def likelihood(self) -> FloatArray: ...

    def motion(self, candidate: int) -> float | None: ...

    def child(self, candidate: int) -> object: ...


class PathwayModel(Protocol):
    """State carried along each pathway (e.g. SAMURAI's Kalman filter on the object's box).

    The engine keeps one opaque state per pathway, next to its memory history: `start` on a
    (re-)prompt, `step` on every tracking frame with the parent row's candidates. Boxes are
    (K, 4) x1, y1, x2, y2 (the backend computes them only for sets with a pathway model)."""

    def start(self, prompt: PromptResult) -> object: ...

    def step(
        self, state: object, iou: Float32Array, boxes: Float32Array, occlusion: float
    ) -> PathwayStep: ...


class PromotionStep(Protocol):
    """A promotion rule's view of one parent row at one frame (see `Promotion.step`).

    `promote(k)`: whether the pathway that keeps candidate k stores it as conditioning
    memory; `child(k)`: that pathway's rule state. Both are asked only for kept candidates."""

    def promote(self, candidate: int) -> bool: ...

    def child(self, candidate: int) -> object: ...


class Promotion(Protocol):
    """Which kept candidates become conditioning memory (DAM4SAM's distractor-aware memory).

    The engine keeps one opaque state per pathway, as it does a pathway model's: `start` on
    a (re-)prompt, `step` on every tracking frame with the parent row's candidates, among
    them their mask statistics (the backend measures them only for sets with a promotion
    rule). A promoted candidate's memory is encoded from its binarised mask, as a prompt's
    is, and its `MemoryEntry` says `promoted=True`; memory selection decides how it is read.
    iou: (K,) predicted IoUs; stats: the row's `MaskStats` (N = 1)."""

    def start(self, prompt: PromptResult) -> object: ...

    def step(
        self, state: object, frame: int, iou: Float32Array, occlusion: float, stats: MaskStats
    ) -> PromotionStep: ...


@dataclass(frozen=True)
class StrategySet:
    """Everything the engine needs to run a search; the engine never looks past these.

    `pathway_model` (None for sets without per-pathway state) turns on box proposals and
    scores candidates by its likelihoods. `presence_threshold` is passed to the backend: a
    row's masks are emptied and its pointer is the no-object pointer iff its occlusion logit
    is <= it (SAM 2: 0; SAMURAI: -1). `promotion` (None: nothing is promoted) turns on mask
    statistics and promoted commits."""

    name: str
    pathways: int
    start: StartRule
    scoring: Scoring
    pruning: Pruning
    memory: MemorySelection
    weighting: MemoryWeighting
    pathway_model: PathwayModel | None = None
    presence_threshold: float = 0.0
    promotion: Promotion | None = None

    def options(self) -> ProposalOptions:
        """What the set asks of a backend's `prompt` and `propose`: boxes when it has a
        pathway model, its presence threshold, and mask statistics and promotion when it
        has a promotion rule. A backend runs the set iff it implements every option this
        requests (`ProposalOptions.requested`)."""
        promotes = self.promotion is not None
        return ProposalOptions(
            boxes=self.pathway_model is not None,
            presence_threshold=self.presence_threshold,
            mask_stats=promotes,
            promotion=promotes,
        )
