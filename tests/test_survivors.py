"""The survivor choice (`treemem.survivors.choose_survivors`) on hand-made candidate tables:
unit cases for each rule, and properties that hold for any scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from treemem import load_strategy
from treemem.strategies.scoring import CumulativeLogIou
from treemem.strategies.selection import ExpandStart, TopScores, UncertaintyDiversity
from treemem.strategy import CandidateTable
from treemem.survivors import Selection, choose_survivors

IOU = st.one_of(st.sampled_from([0.0, 0.5, 0.5, 0.9, 1.0, float("nan")]), st.floats(0, 1, width=32))
OCCLUSION = st.one_of(st.sampled_from([-3.0, -2.0, 0.0, 2.0, 2.5, 8.0]), st.floats(-6, 6, width=32))


def table(iou: np.ndarray, occlusion: np.ndarray, parent_scores: np.ndarray) -> CandidateTable:
    score = CumulativeLogIou()(parent_scores, iou)
    return CandidateTable.build(score, iou, occlusion)


@st.composite
def tables(draw: st.DrawFn) -> CandidateTable:
    """(N, K) tables with ties, NaN IoUs, certain and uncertain logits (all finite, as the
    engine passes them after rejecting non-finite rows)."""
    n, k = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    iou = draw(arrays(np.float32, (n, k), elements=IOU))
    occlusion = draw(arrays(np.float32, (n,), elements=OCCLUSION))
    parents = draw(arrays(np.float64, (n,), elements=st.sampled_from([0.0, -0.5, -1.0, -3.0])))
    return table(iou, occlusion, parents)


def check_slots(chosen: Selection, capacity: int) -> None:
    """Distinct finite survivors, each slot used, pathways no more than capacity."""
    kept = chosen.kept.tolist()
    assert len(set(kept)) == len(kept)
    assert len(chosen.slots) <= capacity and chosen.scores.shape == chosen.kept.shape
    assert set(chosen.slots) == set(range(len(kept)))
    # slots appear in first-use order: slot s is first used before slot s + 1
    firsts = [chosen.slots.index(s) for s in range(len(kept))]
    assert firsts == sorted(firsts)


# --- unit cases ---------------------------------------------------------------------------------


def test_clone_start_puts_every_pathway_on_one_node() -> None:
    iou = np.array([[0.4, 0.8, 0.8]], np.float32)
    t = table(iou, np.array([9.0], np.float32), np.zeros(1))
    chosen = choose_survivors(t, iou, load_strategy("sam2long"), started=False)
    assert chosen.kept.tolist() == [1] and chosen.scores.tolist() == [0.0]
    assert chosen.slots == (0, 0, 0) and chosen.rule == "start"


def test_certain_frame_keeps_the_top_scores() -> None:
    iou = np.array([[0.2, 0.9, 0.5], [0.95, 0.1, 0.8]], np.float32)
    t = table(iou, np.array([5.0, 1.0], np.float32), np.array([0.0, -0.1]))
    chosen = choose_survivors(t, iou, load_strategy("sam2long"), started=True)
    assert chosen.kept.tolist() == t.ranking[:3].tolist() == [1, 3, 5]
    assert chosen.scores.tolist() == t.score.ravel()[[1, 3, 5]].tolist()
    assert chosen.slots == (0, 1, 2) and chosen.rule == "pruning"


def test_uncertain_frame_is_chosen_by_diversity() -> None:
    # Three clone parents: only distinct rounded IoUs survive, then the fill rule.
    iou = np.array([[0.901, 0.899, 0.5]] * 3, np.float32)
    t = table(iou, np.array([1.0] * 3, np.float32), np.zeros(3))
    chosen = choose_survivors(t, iou, load_strategy("sam2long"), started=True)
    assert chosen.rule == "diversity"
    assert chosen.kept[:2].tolist() == [0, 2] and len(chosen.slots) == 3


def test_greedy_never_diversifies() -> None:
    iou = np.array([[0.3, 0.7]], np.float32)
    t = table(iou, np.array([0.0], np.float32), np.zeros(1))
    chosen = choose_survivors(t, iou, load_strategy("greedy"), started=True)
    assert chosen.kept.tolist() == [1] and chosen.rule == "pruning"


def test_no_usable_candidate_keeps_nothing() -> None:
    iou = np.array([[np.nan, np.nan]], np.float32)
    t = table(iou, np.array([5.0], np.float32), np.zeros(1))
    for started in (False, True):
        chosen = choose_survivors(t, iou, load_strategy("sam2long"), started=started)
        assert chosen.kept.size == 0 and chosen.slots == ()


# --- properties ---------------------------------------------------------------------------------

settings.register_profile("survivors", max_examples=200, deadline=None)


@settings(settings.get_profile("survivors"))
@given(tables(), st.integers(1, 6), st.sampled_from([0.0, 1.0, 2.0, 5.0]))
def test_survivors_are_distinct_finite_and_within_capacity(
    t: CandidateTable, capacity: int, delta_conf: float
) -> None:
    rules = load_strategy("sam2long", {"pathways": capacity, "delta_conf": delta_conf})
    chosen = choose_survivors(t, t.iou, rules, started=True)
    check_slots(chosen, capacity)
    assert len(chosen.slots) == chosen.kept.size  # no clones after the start
    assert np.isfinite(t.score.ravel()[chosen.kept]).all()
    assert chosen.scores.tolist() == t.score.ravel()[chosen.kept].tolist()
    assert chosen.kept.size == min(capacity, t.ranking.size)


@settings(settings.get_profile("survivors"))
@given(tables(), st.integers(1, 6), st.sampled_from([0.0, 1.0, 2.0, 5.0]))
def test_diversity_on_a_certain_frame_is_the_top_scores(
    t: CandidateTable, capacity: int, delta_conf: float
) -> None:
    rules = load_strategy("sam2long", {"pathways": capacity, "delta_conf": delta_conf})
    chosen = choose_survivors(t, t.iou, rules, started=True)
    uncertain = float(np.max(np.abs(t.occlusion))) <= delta_conf
    assert UncertaintyDiversity(delta_conf).is_uncertain(t) == uncertain
    assert chosen.rule == ("diversity" if uncertain else "pruning")
    if not uncertain:
        assert chosen.kept.tolist() == TopScores()(t, capacity).kept.tolist()
        assert chosen.scores.tolist() == sorted(chosen.scores.tolist(), reverse=True)


@settings(settings.get_profile("survivors"))
@given(tables(), st.integers(1, 6))
def test_top_k_keeps_the_best_scores_in_order(t: CandidateTable, capacity: int) -> None:
    rules = replace(load_strategy("greedy"), pathways=capacity)
    chosen = choose_survivors(t, t.iou, rules, started=True)
    check_slots(chosen, capacity)
    assert chosen.rule == "pruning"
    finite = np.sort(t.score.ravel()[np.isfinite(t.score.ravel())])[::-1]
    assert chosen.scores.tolist() == finite[:capacity].tolist()


@settings(settings.get_profile("survivors"))
@given(tables(), st.integers(1, 6), st.sampled_from(["clone", "expand"]))
def test_the_start_fills_slots_from_the_prompt_row(
    t: CandidateTable, capacity: int, start: str
) -> None:
    rules = load_strategy("sam2long", {"pathways": capacity})
    if start == "expand":
        rules = replace(rules, start=ExpandStart())
    chosen = choose_survivors(t, t.iou, rules, started=False)
    check_slots(chosen, capacity)
    assert chosen.rule == "start"
    assert (chosen.kept < t.num_candidates).all()  # the start reads row 0 only
    assert np.isfinite(t.iou[0, chosen.kept]).all()
    if start == "clone" and chosen.kept.size:  # one node, every pathway on it, score 0
        assert chosen.kept.size == 1 and chosen.slots == (0,) * capacity
        assert chosen.scores.tolist() == [0.0]
    if start == "expand":  # distinct candidates, best first
        assert len(chosen.slots) == chosen.kept.size
        assert chosen.scores.tolist() == sorted(chosen.scores.tolist(), reverse=True)
