"""One object's survivor choice at one frame, as a pure function of its candidate table.

The engine's frame step is: evidence and scores -> `choose_survivors` -> tree record, memory
commits and the new beam. Only the middle step decides anything, so it is a function of
numbers alone (no engine, backend or record), tested on hand-made tables
(tests/test_survivors.py) like the top-k step of a text-generation beam search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treemem.strategy import CandidateTable, Evidence, StrategySet
from treemem.types import FloatArray, IntArray, SurvivorRule


@dataclass(frozen=True)
class Selection:
    """The survivors of one object at one frame, deduplicated into tree nodes.

    kept: (S,) distinct flat candidate indices (row * K + k), in slot order (slot 0 is the
    best); scores: (S,) float64 their cumulative scores; slots: (P',) the slot, i.e. the index
    into `kept`, of each new pathway in rank order, P' <= capacity. Pathways share a slot (one
    node, one score) when the rule keeps a candidate more than once: SAM2Long's clone start
    puts one candidate in every slot. rule: which rule chose them.
    """

    kept: IntArray
    scores: FloatArray
    slots: tuple[int, ...]
    rule: SurvivorRule


def choose_survivors(
    table: CandidateTable, evidence: Evidence, strategy: StrategySet, *, started: bool
) -> Selection:
    """Who survives: the start rule on the first frame after a (re-)prompt, the pruning rule
    (uncertainty diversity included) on every later one.

    table: the object's (N, K) scored candidates; evidence: (N, K) what the scores were
    computed from (predicted IoUs, or a pathway model's likelihoods), which the start rule
    reads for its single parent row. At most `strategy.pathways` pathways survive; an empty
    `kept` means no candidate was usable.
    """
    capacity = strategy.pathways
    if started:
        survivors = strategy.pruning(table, capacity)
        flat = survivors.kept
        return _into_slots(flat, table.score.ravel()[flat], survivors.rule)
    flat, scores = strategy.start(evidence[0], capacity)
    return _into_slots(flat, np.asarray(scores, np.float64), "start")


def _into_slots(flat: IntArray, scores: FloatArray, rule: SurvivorRule) -> Selection:
    """One slot per distinct candidate, in order of first appearance (each keeps the score
    of its first appearance); every pathway points at its candidate's slot."""
    slot_of: dict[int, int] = {}
    first: list[int] = []
    slots: list[int] = []
    for position, candidate in enumerate(flat.tolist()):
        slot = slot_of.setdefault(candidate, len(slot_of))
        if slot == len(first):
            first.append(position)
        slots.append(slot)
    if len(first) == len(slots):
        return Selection(flat, scores, tuple(slots), rule)
    return Selection(flat[first], scores[first], tuple(slots), rule)
