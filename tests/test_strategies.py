"""Unit tests of each strategy, the registry, and the tree record's JSON lines / networkx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treemem
from treemem import Engine, Prompt, TreeRecord, load_strategy
from treemem.registry import REGISTRY, parse_overrides
from treemem.strategies.memory import ObjectAwareFrames, RecentFrames
from treemem.strategies.scoring import CumulativeLogIou, CurrentIou
from treemem.strategies.selection import (
    CloneStart,
    DistinctRoundedIou,
    TopScores,
    UncertaintyDiversity,
)
from treemem.strategies.weighting import OcclusionRankWeights, Unweighted
from treemem.strategy import CandidateTable, RecalledMemory
from treemem.tree import FIELDS
from treemem.types import ConfigError, MemoryEntry, MemoryHistory, TreememError

PROMPT = MemoryEntry(0, 0, 1.0, 10.0, conditioning=True)


def table(
    parent_scores: list[float], iou: list[list[float]], occlusion: list[float]
) -> CandidateTable:
    ious = np.array(iou, np.float32)
    score = CumulativeLogIou()(np.array(parent_scores, np.float64), ious)
    return CandidateTable.build(score, ious, np.array(occlusion, np.float32))


def pairs(kept: np.ndarray, k: int = 3) -> list[tuple[int, int]]:
    return [(int(f) // k, int(f) % k) for f in kept]


# --- scoring --------------------------------------------------------------------------------


def test_cumulative_log_iou_adds_log_of_iou_plus_eps_in_float64() -> None:
    parent = np.array([0.0, -1.5])
    iou = np.array([[1.0, 0.5, 0.0], [0.25, np.nan, 0.9]], np.float32)
    score = CumulativeLogIou(eps=1e-5)(parent, iou)
    assert score.dtype == np.float64 and score.shape == (2, 3)
    expected = parent[:, None] + np.log(iou.astype(np.float64) + 1e-5)
    assert np.array_equal(score, expected, equal_nan=True)
    assert score[0, 2] == np.log(1e-5)  # a zero IoU is finite, thanks to eps
    assert np.isnan(score[1, 1])


def test_current_iou_ignores_the_past() -> None:
    iou = np.array([[0.3, 0.7]], np.float32)
    assert np.array_equal(CurrentIou()(np.array([-50.0]), iou), iou.astype(np.float64))


def test_candidate_table_ranks_stably_and_drops_non_finite() -> None:
    t = table([0.0, 0.0], [[0.5, 0.9, np.nan], [0.9, 0.5, 0.9]], [5.0, 5.0])
    # ties keep (row, candidate) order; NaN is not ranked
    assert pairs(t.ranking) == [(0, 1), (1, 0), (1, 2), (0, 0), (1, 1)]


# --- selection ------------------------------------------------------------------------------


def test_top_scores_keeps_the_first_capacity_of_the_ranking() -> None:
    t = table([0.0, -0.1], [[0.2, 0.9, 0.5], [0.95, 0.1, 0.8]], [5.0, 5.0])
    assert pairs(TopScores()(t, 3).kept) == [(0, 1), (1, 0), (1, 2)]
    assert TopScores()(t, 10).kept.size == 6
    assert TopScores()(t, 3).rule == "pruning"


def test_uncertainty_diversity_is_off_on_certain_frames_strictly() -> None:
    rule = UncertaintyDiversity(delta_conf=2.0)
    for certain in (table([0.0], [[0.5, 0.5, 0.5]], [2.01]),
                    table([0.0, 0.0], [[0.5, 0.5, 0.5]] * 2, [0.1, -2.5])):
        assert not rule.is_uncertain(certain)
        assert rule(certain, 3).rule == "pruning"
        assert rule(certain, 3).kept.tolist() == TopScores()(certain, 3).kept.tolist()
    for uncertain in (table([0.0], [[0.5, 0.5, 0.5]], [2.0]),  # |o| == delta: uncertain
                      table([0.0], [[0.5, 0.5, 0.5]], [-2.0])):
        assert rule.is_uncertain(uncertain)
        assert rule(uncertain, 3).rule == "diversity"
        assert rule(uncertain, 3).kept.tolist() == DistinctRoundedIou()(uncertain, 3).kept.tolist()


def test_distinct_rounded_iou_walks_the_ranking_for_new_rounded_values() -> None:
    # Three clone parents (identical rows): only distinct rounded IoUs survive.
    t = table([0.0] * 3, [[0.901, 0.899, 0.5]] * 3, [1.0] * 3)
    kept = DistinctRoundedIou()(t, 3).kept
    # 0.901 and 0.899 both round to 0.9: the first is kept, then 0.5, then the fill rule.
    assert pairs(kept)[:2] == [(0, 0), (0, 2)]


def test_signed_iou_keeps_equal_values_from_present_and_absent_parents() -> None:
    t = table([0.0, 0.0], [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]], [1.0, -1.0])
    kept = DistinctRoundedIou()(t, 3).kept
    # +0.8 (row 0) and -0.8 (row 1) are different keys; then +0.1.
    assert pairs(kept) == [(0, 0), (1, 0), (0, 1)]


def test_fill_rule_adds_each_missing_parents_best_in_row_order() -> None:
    # Row 0 owns every distinct value; rows 1 and 2 only repeat them.
    t = table(
        [0.0, -1.0, -2.0],
        [[0.9, 0.9, 0.9], [0.9, 0.3, 0.9], [0.2, 0.9, 0.9]],
        [1.0, 1.0, 1.0],
    )
    kept = DistinctRoundedIou()(t, 3).kept
    # Walk: (0,0) key 0.9; every other 0.9 repeats; (1,1) key 0.3 is new; then 0.2 is new
    # (row 2), so no top-up is needed.
    assert pairs(kept) == [(0, 0), (1, 1), (2, 0)]

    t = table([0.0, -1.0, -2.0], [[0.9, 0.3, 0.9], [0.9, 0.9, 0.3], [0.3, 0.9, 0.9]], [1.0] * 3)
    kept = DistinctRoundedIou()(t, 3).kept
    # Walk keeps (0,0) 0.9 and (0,1) 0.3 only; rows 1 and 2 are missing: row 1's best is
    # (1,0) (first of its tied 0.9s), then capacity is reached before row 2.
    assert pairs(kept) == [(0, 0), (0, 1), (1, 0)]


def test_fill_rule_uses_the_set_of_parents_from_before_the_top_up() -> None:
    t = table([0.0, 0.0, 0.0, 0.0], [[0.9, 0.9, 0.9]] * 4, [1.0] * 4)
    kept = DistinctRoundedIou()(t, 4).kept
    assert pairs(kept) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_last_top_up_from_the_ranking_when_parents_run_out() -> None:
    # One parent with one distinct value: the walk keeps 1, the parent is represented, the
    # ranking tops up to min(capacity, candidates).
    t = table([0.0], [[0.7, 0.7, 0.7]], [0.5])
    kept = DistinctRoundedIou()(t, 3).kept
    assert pairs(kept) == [(0, 0), (0, 1), (0, 2)]
    t = table([0.0], [[0.7, np.nan, 0.7]], [0.5])
    kept = DistinctRoundedIou()(t, 3).kept
    assert pairs(kept) == [(0, 0), (0, 2)]


def test_clone_start_copies_the_first_best_candidate_with_zero_scores() -> None:
    kept, scores = CloneStart()(np.array([0.4, 0.8, 0.8], np.float32), 3)
    assert kept.tolist() == [1, 1, 1] and scores.tolist() == [0.0, 0.0, 0.0]
    kept, _ = CloneStart()(np.array([np.nan, 0.1, 0.0], np.float32), 2)
    assert kept.tolist() == [1, 1]
    kept, scores = CloneStart()(np.array([np.nan, np.nan], np.float32), 3)
    assert kept.size == 0 and scores.size == 0


# --- memory selection -----------------------------------------------------------------------


def entry(frame: int, iou: float = 0.9, occlusion: float = 5.0) -> MemoryEntry:
    return MemoryEntry(frame, frame, iou, occlusion)


def grow(selection: ObjectAwareFrames | RecentFrames, entries: list[MemoryEntry]) -> MemoryHistory:
    history = MemoryHistory((PROMPT,))
    for e in entries:
        history = selection.extend(history, e)
    return history


def test_object_aware_frames_recall_at_the_first_steps() -> None:
    selection = ObjectAwareFrames()
    recalled = selection.recall(MemoryHistory((PROMPT,)), 1)
    assert [(e.node, p) for e, p in recalled.spatial] == [(0, 0)]
    assert [(e.node, p) for e, p in recalled.pointers] == [(0, 1)]
    recalled = selection.recall(grow(selection, [entry(1)]), 2)
    assert [(e.node, p) for e, p in recalled.spatial] == [(0, 0), (1, 1)]
    assert [(e.node, p) for e, p in recalled.pointers] == [(0, 2)]  # L's oldest gives none


def test_object_aware_frames_select_valid_frames_by_rank() -> None:
    selection = ObjectAwareFrames(delta_iou=0.1)
    frames = [entry(t, iou=0.05 if t % 3 == 0 else 0.9, occlusion=-1.0 if t % 5 == 0 else 2.0)
              for t in range(1, 40)]
    history = grow(selection, frames)
    valid = [t for t in range(1, 40) if t % 3 and t % 5]
    # 15 newest valid frames, plus t-1 = 39 (invalid: 39 % 3 == 0) anyway.
    assert [e.frame for e in history.recent] == [*valid[-15:], 39]
    recalled = selection.recall(history, 40)
    spatial = [(e.frame, p) for e, p in recalled.spatial[1:]]
    assert spatial == [(f, 6 - i) for i, f in enumerate([*valid[-5:], 39])]
    pointers = [(e.frame, p) for e, p in recalled.pointers[1:]]
    assert pointers == [(f, r) for r, f in enumerate([39, *valid[::-1][:14]], start=1)]
    assert recalled.pointers[0] == (PROMPT, 40)


def test_object_aware_frames_boundaries_are_strict() -> None:
    selection = ObjectAwareFrames(delta_iou=0.3)
    assert not selection.is_valid(entry(1, iou=0.3))
    assert selection.is_valid(entry(1, iou=0.30001))
    assert not selection.is_valid(entry(1, occlusion=0.0))


def test_recent_frames_recall_by_frame_gap() -> None:
    selection = RecentFrames()
    history = grow(selection, [entry(t) for t in range(1, 30)])
    assert [e.frame for e in history.recent] == list(range(15, 30))
    recalled = selection.recall(history, 30)
    spatial = [(e.frame, p) for e, p in recalled.spatial]
    assert spatial == [(0, 0), *[(f, 30 - f) for f in range(24, 30)]]
    pointers = [(e.frame, p) for e, p in recalled.pointers]
    assert pointers == [(0, 30), *[(f, 30 - f) for f in range(29, 14, -1)]]


entries = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.9, 1.0]),
        st.sampled_from([-3.0, 0.0, 0.5, 5.0]),
        st.integers(1, 2),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(entries, st.sampled_from([0.0, 0.1, 0.5]))
def test_memory_contract_recall_reads_only_what_extend_kept(
    drawn: list[tuple[float, float, int]], delta_iou: float
) -> None:
    """recall(extend(h, e), t + 1) reads only entries of extend(h, e); extend keeps only
    entries of h plus e, so everything else can be released."""
    for selection in (ObjectAwareFrames(delta_iou), RecentFrames(), RecentFrames(2, 3)):
        history = MemoryHistory((PROMPT,))
        frame = 0
        for iou, occlusion, gap in drawn:
            frame += gap
            new = MemoryEntry(frame, frame, iou, occlusion)
            extended = selection.extend(history, new)
            assert extended.nodes() <= history.nodes() | {new.node}
            assert new in extended.recent
            recalled = selection.recall(extended, frame + 1)
            read = {e.node for e, _ in recalled.spatial + recalled.pointers}
            assert read <= extended.nodes()
            history = extended


# --- weighting ------------------------------------------------------------------------------


def test_nothing_is_weighted_while_spatial_memory_is_the_prompt_alone() -> None:
    plan = OcclusionRankWeights()(RecalledMemory(((PROMPT, 0),), ((PROMPT, 1),)))
    assert [r.weight for r in plan.spatial + plan.pointers] == [1.0, 1.0]


def test_weights_follow_occlusion_rank_with_float32_linspace() -> None:
    low, mid, high = (float(np.float32(v)) for v in (0.95, 1.0, 1.05))
    a, b = entry(1, occlusion=3.0), entry(2, occlusion=-1.0)
    recalled = RecalledMemory(((PROMPT, 0), (a, 2), (b, 1)), ((PROMPT, 3), (b, 1)))
    plan = OcclusionRankWeights()(recalled)
    # spatial scores [10, 3, -1]: ascending order b, a, prompt gets low, mid, high
    assert [(r.node, r.weight) for r in plan.spatial] == [(0, high), (1, mid), (2, low)]
    assert [r.position for r in plan.spatial] == [0, 2, 1]
    assert [(r.node, r.weight) for r in plan.pointers] == [(0, high), (2, low)]
    # torch.linspace(0.95, 1.05, n) in float32 (values read from torch 2.13 on the CPU): the
    # first half counts up from w_low, the second half down from w_high.
    torch_linspace = {
        4: [0.949999988079071, 0.9833332896232605, 1.0166666507720947, 1.0499999523162842],
        7: [0.949999988079071, 0.9666666388511658, 0.9833332896232605, 1.0,
            1.0166666507720947, 1.0333333015441895, 1.0499999523162842],
    }
    for n, expected in torch_linspace.items():
        ranked = [entry(i, occlusion=float(n - i)) for i in range(n)]  # descending scores
        weights = OcclusionRankWeights().weights(ranked, pointers=False)
        assert weights == expected[::-1]


def test_lone_prompt_pointer_is_bfloat16_w_low() -> None:
    a = entry(1, occlusion=3.0)
    plan = OcclusionRankWeights()(RecalledMemory(((PROMPT, 0), (a, 1)), ((PROMPT, 2),)))
    assert plan.pointers[0].weight == 0.94921875
    assert plan.spatial[1].weight == float(np.float32(0.95))
    exact = OcclusionRankWeights(bf16_prompt_pointers=False)(
        RecalledMemory(((PROMPT, 0), (a, 1)), ((PROMPT, 2),))
    )
    assert exact.pointers[0].weight == float(np.float32(0.95))


def test_equal_scores_get_a_deterministic_order() -> None:
    a, b = entry(1, occlusion=2.0), entry(2, occlusion=2.0)
    weights = OcclusionRankWeights().weights([a, b], pointers=False)
    assert weights == OcclusionRankWeights().weights([a, b], pointers=False)
    assert sorted(weights) == [float(np.float32(0.95)), float(np.float32(1.05))]


def test_unweighted_keeps_positions() -> None:
    a = entry(4)
    plan = Unweighted()(RecalledMemory(((PROMPT, 0), (a, 3)), ((a, 3),)))
    assert [(r.node, r.position, r.weight) for r in plan.spatial] == [(0, 0, 1.0), (4, 3, 1.0)]


# --- registry -------------------------------------------------------------------------------


def test_builtin_sets_are_registered_with_their_defaults() -> None:
    assert {"sam2long", "greedy"} <= set(REGISTRY.names())
    sam2long = load_strategy("sam2long")
    assert sam2long.pathways == 3 and sam2long.name == "sam2long"
    assert isinstance(sam2long.pruning, UncertaintyDiversity)
    assert sam2long.pruning.delta_conf == 2.0
    assert isinstance(sam2long.memory, ObjectAwareFrames) and sam2long.memory.delta_iou == 0.1
    greedy = load_strategy("greedy")
    assert greedy.pathways == 1 and isinstance(greedy.pruning, TopScores)
    assert isinstance(greedy.memory, RecentFrames) and greedy.memory.spatial_frames == 6


def test_unknown_strategy_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'sam2long'"):
        load_strategy("sam2lnog")


def test_misspelt_parameter_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'delta_iou'"):
        load_strategy("sam2long", {"delta_iuo": "0.3"})


def test_overrides_parse_from_text() -> None:
    overrides = parse_overrides(["delta_iou=0.5", " P = 2 ", "w_high=1.1"])
    assert overrides == {"delta_iou": "0.5", "P": "2", "w_high": "1.1"}
    strategy = load_strategy("sam2long", overrides)
    assert strategy.pathways == 2
    assert isinstance(strategy.memory, ObjectAwareFrames) and strategy.memory.delta_iou == 0.5
    assert isinstance(strategy.weighting, OcclusionRankWeights) and strategy.weighting.w_high == 1.1
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["delta_iou"])
    with pytest.raises(ConfigError, match="needs a float"):
        load_strategy("sam2long", {"delta_iou": "high"})


@pytest.mark.parametrize(
    "overrides",
    [{"delta_iou": "1.5"}, {"P": "0"}, {"delta_conf": "-1"}, {"w_low": "1.2"}, {"eps": "0"}],
)
def test_out_of_range_values_raise(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_strategy("sam2long", overrides)


# --- tree record ----------------------------------------------------------------------------


class _Noisy:
    """A tiny backend with seeded random proposals (memory contract not checked here)."""

    def __init__(self, frames: int = 25) -> None:
        self.rng = np.random.default_rng(7)
        self.num_frames = frames
        self.frame_size = (2, 2)

    def encode(self, frame: int) -> object:
        return frame

    def prompt(self, features: object, prompt: Prompt, node: int, options: object) -> object:
        from treemem.types import PromptResult

        return PromptResult(1.0, 10.0)

    def propose(self, features: object, queries: list[object], options: object) -> object:
        from treemem.types import Proposals

        n = len(queries)
        return Proposals(
            self.rng.uniform(0, 1, (n, 3)).astype(np.float32),
            self.rng.normal(0, 2.5, n).astype(np.float32),
        )

    def commit(self, features: object, proposals: object, commits: object) -> None:
        pass

    def mask_logits(self, node: int) -> np.ndarray:
        return np.full((2, 2), -1.0, np.float32)

    def release(self, nodes: object) -> None:
        pass


def recorded_tree() -> TreeRecord:
    engine = Engine(load_strategy("sam2long"), _Noisy())  # type: ignore[arg-type]
    list(engine.run([Prompt(1, 0, mask=np.ones((2, 2), bool))], range(engine.backend.num_frames)))
    return engine.record


def test_tree_jsonl_round_trip(tmp_path: Path) -> None:
    record = recorded_tree()
    path = tmp_path / "tree.jsonl"
    record.save_jsonl(path)
    lines = path.read_text().splitlines()
    assert len(lines) == len(record)
    import json

    assert list(json.loads(lines[0])) == list(FIELDS)
    loaded = TreeRecord.load_jsonl(path)
    a, b = record.columns(), loaded.columns()
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(record.parent_rows(), loaded.parent_rows())
    assert loaded.best_path(1) == record.best_path(1)


def test_tree_jsonl_records_the_rule_and_reads_files_without_it(tmp_path: Path) -> None:
    import json

    record = recorded_tree()
    cols = record.columns()
    assert cols.rule[cols.frame == 0].tolist() == ["prompt"]
    assert set(cols.rule[cols.frame == 1].tolist()) == {"start"}
    assert set(cols.rule[cols.frame > 1].tolist()) <= {"pruning", "diversity"}
    path = tmp_path / "tree.jsonl"
    record.save_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    old = tmp_path / "old.jsonl"  # as written before the rule was recorded
    old.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "rule"}) + "\n"
                           for row in rows))
    loaded = TreeRecord.load_jsonl(old)
    assert set(loaded.columns().rule.tolist()) == {""}
    assert np.array_equal(loaded.parent_rows(), record.parent_rows())
    assert loaded.best_path(1) == record.best_path(1)
    rows[0]["rule"] = "guess"
    old.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(TreememError, match="unknown survivor rule 'guess'"):
        TreeRecord.load_jsonl(old)


def test_tree_jsonl_records_the_direction_and_reads_files_without_it(tmp_path: Path) -> None:
    """A two-way tree round-trips (backward edges rebuilt from frame + 1); a file written
    before the direction was recorded reads as forward; an unknown direction is refused."""
    import json

    from treemem.backends.synthetic_video import make_video

    video = make_video(2, num_frames=12)
    mid = next(t for t in range(6, 12) if video.gt[t].any())
    record = treemem.track(video, video.gt[mid], "sam2long", prompt_frame=mid,
                           direction="both").record
    path = tmp_path / "tree.jsonl"
    record.save_jsonl(path)
    loaded = TreeRecord.load_jsonl(path)
    assert set(loaded.columns().direction.tolist()) == {"forward", "backward"}
    assert np.array_equal(loaded.parent_rows(), record.parent_rows())
    assert sorted(loaded.best_path(1)) == list(range(12))
    assert loaded.best_path(1) == record.best_path(1)
    forward_only = recorded_tree()
    forward_only.save_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "direction"}) + "\n"
                           for row in rows))
    older = TreeRecord.load_jsonl(old)
    assert set(older.columns().direction.tolist()) == {"forward"}
    assert np.array_equal(older.parent_rows(), forward_only.parent_rows())
    rows[0]["direction"] = "sideways"
    old.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(TreememError, match="unknown direction 'sideways'"):
        TreeRecord.load_jsonl(old)


def test_tree_exports_to_networkx() -> None:
    record = recorded_tree()
    graph = record.to_networkx()
    cols = record.columns()
    assert graph.number_of_nodes() == len(record)
    assert graph.number_of_edges() == int((record.parent_rows() >= 0).sum())
    assert set(graph.nodes[0]) == set(FIELDS)
    for child, parent in enumerate(record.parent_rows().tolist()):
        if parent >= 0:
            assert cols.kept[parent] and cols.frame[parent] == cols.frame[child] - 1
    best = record.best_path(1)
    path = [best[f] for f in sorted(best)]
    import networkx as nx

    assert nx.shortest_path(graph, path[0], path[-1]) == path


MIRROR = 40
"""Backward histories mirror forward ones: forward frame f is backward frame MIRROR - f."""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(-3.0, 3.0),
                       st.one_of(st.none(), st.floats(0.0, 1.0))), min_size=1, max_size=30),
    st.integers(1, 3),
    st.sampled_from(["recent", "object-aware", "sam3", "samurai"]),
)
def test_every_memory_selection_reads_backward_what_it_reads_forward_mirrored(
    frames: list[tuple[float, float, float | None]], stride: int, name: str
) -> None:
    """The same entries met in the same tracking order give the same reads: the same nodes
    at the same positions, forward from frame 0 and backward from frame MIRROR."""
    from treemem.strategies.sam3_memory import ScoredFrames
    from treemem.strategies.samurai import MotionAwareFrames

    selection = {
        "recent": RecentFrames(),
        "object-aware": ObjectAwareFrames(),
        "sam3": ScoredFrames(stride=stride),
        "samurai": MotionAwareFrames(),
    }[name]
    histories = {}
    for direction, frame_of in (("forward", lambda t: t), ("backward", lambda t: MIRROR - t)):
        prompt = MemoryEntry(-1, frame_of(0), 1.0, 10.0, conditioning=True, direction=direction)
        history = MemoryHistory((prompt,))
        reads = []
        for t, (iou, occlusion, motion) in enumerate(frames, start=1):
            recalled = selection.recall(history, frame_of(t))
            reads.append([[(e.node, pos) for e, pos in part]
                          for part in (recalled.spatial, recalled.pointers)])
            entry = MemoryEntry(t, frame_of(t), iou, occlusion, motion=motion,
                                direction=direction)  # type: ignore[arg-type]
            history = selection.extend(history, entry)
        histories[direction] = reads
    assert histories["forward"] == histories["backward"]
    tracked_reads = [node for read in histories["forward"] for part in read for node, _ in part
                     if node >= 0]
    assert len(frames) < 2 or tracked_reads  # tracked frames were read, not only the prompt
