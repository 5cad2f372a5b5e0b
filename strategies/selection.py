"""Pruning, uncertainty diversity and the start rule: which candidates survive a frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treemem.strategy import CandidateTable, Evidence, Pruning, Survivors
from treemem.types import FloatArray, IntArray


@dataclass(frozen=True)
class TopScores:
    """Keep the best `capacity` candidates of the stable ranking."""

    def __call__(self, table: CandidateTable, capacity: int) -> Survivors:
        return Survivors(table.ranking[:capacity], "pruning")


@dataclass(frozen=True)
class DistinctRoundedIou:
    """SAM2Long's diversity walk: distinct hypotheses rather than the best scores.

    It walks the ranking and keeps a candidate only if its signed IoU (negative when the
    parent judged the object absent), rounded to `decimals`, is new; if that leaves fewer than
    `capacity`, each parent not yet represented (in row order) contributes its best candidate.
    A last top-up from the ranking (never met when there are `capacity` parents, as after a
    clone start) keeps the survivor count at min(capacity, candidates). SAM2Long applies it
    only on uncertain frames (`UncertaintyDiversity`).
    """

    decimals: int = 2

    def __call__(self, table: CandidateTable, capacity: int) -> Survivors:
        k = table.num_candidates
        rows = table.ranking // k
        signed = np.where(table.occlusion[rows] > 0, 1.0, -1.0) * table.iou.ravel()[table.ranking]
        keys = np.round(signed.astype(np.float64), self.decimals)
        kept: list[int] = []
        seen: set[float] = set()
        for flat, key in zip(table.ranking.tolist(), keys.tolist(), strict=True):
            if len(kept) == capacity:
                break
            if key not in seen:
                seen.add(key)
                kept.append(flat)
        if len(kept) < capacity:
            represented = {flat // k for flat in kept}
            best_of_row: dict[int, int] = {}
            for flat in table.ranking.tolist():
                best_of_row.setdefault(flat // k, flat)
            for row in range(table.score.shape[0]):
                if len(kept) == capacity:
                    break
                if row not in represented and row in best_of_row:
                    kept.append(best_of_row[row])
        if len(kept) < capacity:
            chosen = set(kept)
            kept.extend(f for f in table.ranking.tolist() if f not in chosen)
            kept = kept[:capacity]
        return Survivors(np.asarray(kept, dtype=np.int64), "diversity")


@dataclass(frozen=True)
class UncertaintyDiversity:
    """SAM2Long's uncertainty rule, as one pruning rule: diversify only when unsure.

    A frame is certain iff some parent's |occlusion logit| > `delta_conf`; then `fallback`
    chooses (the top scores). Otherwise no pathway is sure whether the object is there, and
    `diversity` keeps distinct hypotheses instead (reported as rule "diversity"), so one
    wrong guess cannot take every pathway with it.
    """

    delta_conf: float = 2.0
    diversity: Pruning = DistinctRoundedIou()
    fallback: Pruning = TopScores()

    def is_uncertain(self, table: CandidateTable) -> bool:
        """No parent row's |occlusion logit| exceeds `delta_conf` (a table without rows is
        certain: there is nothing to diversify; a NaN logit proves nothing certain)."""
        occlusion = table.occlusion
        return occlusion.size > 0 and not float(np.max(np.abs(occlusion))) > self.delta_conf

    def __call__(self, table: CandidateTable, capacity: int) -> Survivors:
        if self.is_uncertain(table):
            return self.diversity(table, capacity)
        return self.fallback(table, capacity)


@dataclass(frozen=True)
class CloneStart:
    """SAM2Long's start: one greedy step (argmax IoU, first on ties) cloned into every slot,
    each with cumulative score 0, so the pathways stay identical until an uncertain frame.
    Keeps nothing when no IoU is finite (the engine reports the frame as unusable)."""

    def __call__(self, iou: Evidence, capacity: int) -> tuple[IntArray, FloatArray]:
        if not np.isfinite(iou).any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        finite = np.where(np.isfinite(iou), iou, -np.inf)
        best = int(np.argmax(finite))
        return np.full(capacity, best, dtype=np.int64), np.zeros(capacity, dtype=np.float64)


@dataclass(frozen=True)
class ExpandStart:
    """Treat the first step like any other: the top `capacity` distinct candidates."""

    eps: float = 1e-5

    def __call__(self, iou: Evidence, capacity: int) -> tuple[IntArray, FloatArray]:
        score = np.log(iou.astype(np.float64) + self.eps)
        order = np.argsort(-score, kind="stable")
        order = order[np.isfinite(score[order])][:capacity]
        return order.astype(np.int64), score[order]
