"""SAM 3's memory selection (`ScoredFrames`) against the rule of ../shared/docs/sam3-memory-spec.md
written out by hand (`spec_list`, `spec_reads`), on drawn score sequences and through the engine
on a scripted backend; the sets' registration; held memory over a long synthetic video."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted import CheckedMemory

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import make_suite, make_video, mean_j
from treemem.strategies.sam3_memory import ScoredFrames, frame_score
from treemem.strategies.selection import TopScores, UncertaintyDiversity
from treemem.types import (
    ConfigError,
    MemoryEntry,
    MemoryHistory,
    MemoryPlan,
    PathwayQuery,
    ProposalOptions,
    Proposals,
)

MAX_OBJ_PTRS = 16
NUM_MASKMEM = 7

IOUS = [0.0, 0.02, 0.3, 0.5, 0.9, 1.0]
OCCLUSIONS = [-2.0, 0.0, 0.02, 0.5, 3.0, 40.0]
THRESHOLDS = [0.0, 0.01, 0.2, 0.5]


# --- the rule, written out as the spec states it -------------------------------------------------


def spec_score(iou: float, occlusion: float) -> float:
    return (2 / (1 + math.exp(-occlusion)) - 1) * iou if occlusion > 0 else 0.0


def spec_list(
    scores: dict[int, float], t: int, stride: int, threshold: float, num_frames: int,
    max_obj_ptrs: int = MAX_OBJ_PTRS,
) -> list[int]:
    """`frame_filter` forward: `scores` maps each tracked frame before t to its score."""
    if t == 0:
        return []
    max_num = min(num_frames, max_obj_ptrs)
    selected: list[int] = []
    i = t - 1
    while i >= 1 and len(selected) < max_num - 1:
        if i in scores and scores[i] > threshold:
            selected.insert(0, i)
        i -= stride
    if t - 1 not in selected:
        selected.append(t - 1)
    return selected


def spec_reads(
    selected: list[int], t: int, prompts: Sequence[int], tracked: set[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(frame, treemem position) of the spatial entries and the pointers read at frame t.

    Prompt frames as SAM 2 (every one spatially at 0; pointers of those <= t at t - frame);
    t_pos 1..6 read selected[-t_rel], t_rel = 7 - t_pos, which is treemem's position; pointers
    read selected[-t_diff] for t_diff = 1 .. len - 1. Frames without a tracked entry (a prompt
    frame taken as t-1) read nothing in their slot."""
    spatial = [(p, 0) for p in prompts]
    for t_pos in range(1, NUM_MASKMEM):
        t_rel = NUM_MASKMEM - t_pos
        if len(selected) >= t_rel and selected[-t_rel] in tracked:
            spatial.append((selected[-t_rel], t_rel))
    pointers = [(p, t - p) for p in prompts if p <= t]
    t_diff = 1
    while t_diff < len(selected):
        if selected[-t_diff] in tracked:
            pointers.append((selected[-t_diff], t_diff))
        t_diff += 1
    return spatial, pointers


def read_frames(history: MemoryHistory, selection: ScoredFrames, t: int) -> tuple[list, list]:
    recalled = selection.recall(history, t)
    return (
        [(e.frame, pos) for e, pos in recalled.spatial],
        [(e.frame, pos) for e, pos in recalled.pointers],
    )


# --- the score and a worked example --------------------------------------------------------------


def test_score_is_scaled_sigmoid_times_iou_and_threshold_is_strict() -> None:
    assert frame_score(MemoryEntry(1, 1, 0.9, 0.0)) == 0.0
    assert frame_score(MemoryEntry(1, 1, 0.9, -3.0)) == 0.0
    assert frame_score(MemoryEntry(1, 1, 0.8, 2.0)) == pytest.approx(math.tanh(1.0) * 0.8)
    exact = MemoryEntry(1, 1, 0.5, 40.0)  # n(40) is 1.0 in float64
    assert frame_score(exact) == 0.5
    assert not ScoredFrames(mf_threshold=0.5).is_eligible(exact)
    assert ScoredFrames(mf_threshold=0.4999).is_eligible(exact)


def test_worked_example_with_stride_two() -> None:
    """Frames 1..9 tracked; 4 and 6 ineligible. At t = 10 with r = 2 the scan visits 9, 7, 5,
    3, 1; at t = 11 it visits 10, 8, 6 and 4 (ineligible), 2."""
    selection = ScoredFrames(stride=2)
    history = MemoryHistory((MemoryEntry(0, 0, 1.0, 10.0, conditioning=True),))
    for frame in range(1, 11):
        occlusion = -1.0 if frame in (4, 6) else 3.0
        if frame == 10:
            assert selection.selected_frames(history, 10) == [1, 3, 5, 7, 9]
            spatial, pointers = read_frames(history, selection, 10)
            assert spatial == [(0, 0), (1, 5), (3, 4), (5, 3), (7, 2), (9, 1)]
            assert pointers == [(0, 10), (9, 1), (7, 2), (5, 3), (3, 4)]  # 1 gives no pointer
        history = selection.extend(history, MemoryEntry(frame, frame, 0.9, occlusion))
    history = selection.extend(history, MemoryEntry(11, 11, 0.9, -1.0))
    assert selection.selected_frames(history, 12) == [1, 3, 5, 7, 9, 11]  # 11 appended
    assert selection.selected_frames(history, 11) == [2, 8, 10]


# --- drawn score sequences -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreScript:
    num_frames: int
    first: int  # the first prompt's frame
    reprompts: frozenset[int]
    iou: list[float]
    occlusion: list[float]
    stride: int
    threshold: float
    max_pointers: int


@st.composite
def sequences(draw: st.DrawFn, max_frames: int = 90) -> ScoreScript:
    num_frames = draw(st.integers(2, max_frames))
    first = draw(st.integers(0, min(3, num_frames - 2)))
    later = st.integers(first + 1, num_frames - 1)
    reprompts = frozenset(draw(st.lists(later, max_size=2)))
    iou = draw(st.lists(st.sampled_from(IOUS), min_size=num_frames, max_size=num_frames))
    occlusion = draw(
        st.lists(st.sampled_from(OCCLUSIONS), min_size=num_frames, max_size=num_frames)
    )
    return ScoreScript(
        num_frames, first, reprompts, iou, occlusion,
        stride=draw(st.integers(1, 5)),
        threshold=draw(st.sampled_from(THRESHOLDS)),
        max_pointers=draw(st.sampled_from([MAX_OBJ_PTRS, 4, 2])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences())
def test_recall_reads_the_spec_list_and_extend_keeps_only_what_it_reaches(seq: ScoreScript) -> None:
    """Every frame's reads equal the spec's rule over the whole past (so `extend` dropped
    nothing a recall reaches), the memory contract holds, and what is kept is bounded by the
    scan's reach: at most max_pointers - 1 eligible frames per residue mod r, plus t-1."""
    selection = ScoredFrames(seq.threshold, seq.stride, seq.max_pointers)
    prompts = sorted({seq.first, *seq.reprompts})
    conditioning = tuple(MemoryEntry(-1 - p, p, 1.0, 10.0, conditioning=True) for p in prompts)
    history = MemoryHistory(conditioning)
    scores: dict[int, float] = {}
    for t in range(seq.first + 1, seq.num_frames):
        if t in seq.reprompts:
            history = selection.restart(history)
            continue
        selected = spec_list(scores, t, seq.stride, seq.threshold, seq.num_frames, seq.max_pointers)
        assert selection.selected_frames(history, t) == selected
        expected = spec_reads(selected, t, prompts, set(scores))
        assert read_frames(history, selection, t) == expected
        entry = MemoryEntry(t, t, seq.iou[t], seq.occlusion[t])
        extended = selection.extend(history, entry)
        assert extended.nodes() <= history.nodes() | {entry.node}
        read = selection.recall(extended, t + 1)
        assert {e.node for e, _ in read.spatial + read.pointers} <= extended.nodes()
        assert len(extended.recent) <= seq.stride * (seq.max_pointers - 1) + 1
        scores[t] = spec_score(seq.iou[t], seq.occlusion[t])
        history = extended


@settings(max_examples=40, deadline=None)
@given(sequences(max_frames=40), st.integers(40, 200))
def test_the_video_length_never_changes_the_list(seq: ScoreScript, longer: int) -> None:
    """min(num_frames, max_obj_ptrs) caps the list at num_frames - 1 scanned frames, but a
    forward scan from t < num_frames sees at most t - 1 of them: the length never binds."""
    scores = {t: spec_score(seq.iou[t], seq.occlusion[t]) for t in range(1, seq.num_frames)}
    for t in range(seq.num_frames):
        past = {f: s for f, s in scores.items() if f < t}
        short = spec_list(past, t, seq.stride, seq.threshold, seq.num_frames)
        assert short == spec_list(past, t, seq.stride, seq.threshold, longer)


# --- through the engine, on a scripted backend ---------------------------------------------------


class PlanSpy(CheckedMemory):
    """Replays scripted (T, K) IoUs and (T,) occlusion logits for every row of every object,
    checks the memory contract and records each query's plan by frame."""

    def __init__(self, iou: np.ndarray, occlusion: np.ndarray) -> None:
        super().__init__(int(iou.shape[0]), (2, 2))
        self.iou, self.occlusion = iou, occlusion
        self.plans: dict[tuple[int, int], MemoryPlan] = {}

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        assert isinstance(features, int)
        self.check_plans(queries)
        for query in queries:
            self.plans[(features, query.obj)] = query.plan
        n = len(queries)
        return Proposals(
            np.repeat(self.iou[features][None], n, axis=0).astype(np.float32),
            np.full(n, self.occlusion[features], np.float32),
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences(max_frames=40), st.integers(1, 3))
def test_sam3_memory_reads_what_the_spec_lists_in_the_engine(seq: ScoreScript, k: int) -> None:
    """`sam3-memory` in the engine: each frame's plan equals the spec's rule computed from the
    script itself, with the score's IoU the max over the K candidates (what SAM 3 uses; the
    greedy choice keeps that candidate)."""
    rng = np.random.default_rng(seq.num_frames * 31 + k)
    iou = rng.choice(np.array(IOUS, np.float32), size=(seq.num_frames, k))
    iou[:, 0] = np.array(seq.iou, np.float32)
    occlusion = np.array(seq.occlusion, np.float32)
    backend = PlanSpy(iou, occlusion)
    overrides = {"stride": seq.stride, "mf_threshold": seq.threshold,
                 "max_pointers": seq.max_pointers}
    engine = Engine(load_strategy("sam3-memory", overrides), backend)
    prompts = sorted({seq.first, *seq.reprompts})
    mask = np.ones((2, 2), bool)
    list(engine.run([Prompt(1, p, mask=mask) for p in prompts], range(backend.num_frames)))
    cols = engine.record.columns()
    node_frame = {int(row): int(cols.frame[row]) for row in np.flatnonzero(cols.kept)}
    scores: dict[int, float] = {}
    for t in range(seq.first + 1, seq.num_frames):
        if t in seq.reprompts:
            assert (t, 1) not in backend.plans
            continue
        selected = spec_list(scores, t, seq.stride, seq.threshold, seq.num_frames, seq.max_pointers)
        plan = backend.plans[(t, 1)]
        got = (
            [(node_frame[r.node], r.position) for r in plan.spatial],
            [(node_frame[r.node], r.position) for r in plan.pointers],
        )
        assert got == spec_reads(selected, t, prompts, set(scores))
        assert all(r.weight == 1.0 for r in plan.spatial + plan.pointers)
        scores[t] = spec_score(float(iou[t].max()), float(occlusion[t]))


class RowSpy(CheckedMemory):
    """Replays (T, P, K) IoUs and (T, P) occlusion logits, row j of a frame for the j-th
    pathway; records every plan of every frame."""

    def __init__(self, iou: np.ndarray, occlusion: np.ndarray) -> None:
        super().__init__(int(iou.shape[0]), (2, 2))
        self.iou, self.occlusion = iou, occlusion
        self.plans: dict[int, list[MemoryPlan]] = {}

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        assert isinstance(features, int)
        self.check_plans(queries)
        self.plans[features] = [query.plan for query in queries]
        n = len(queries)
        return Proposals(self.iou[features, :n], self.occlusion[features, :n])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences(max_frames=30), st.integers(0, 2**32 - 1), st.sampled_from([0.0, 2.0, 9.0]))
def test_every_pathway_of_the_tree_applies_the_rule_to_its_own_ancestry(
    seq: ScoreScript, seed: int, delta_conf: float
) -> None:
    """`sam3-memory-tree`, P = 3: each plan is the spec's list over that pathway's ancestors
    (through a re-prompt, the best pathway's), scored with the IoU of the candidate each
    ancestor kept."""
    rng = np.random.default_rng(seed)
    shape = (seq.num_frames, 3, 3)
    iou = rng.choice(np.array(IOUS, np.float32), size=shape)
    occlusion = rng.choice(np.array(OCCLUSIONS, np.float32), size=shape[:2])
    backend = RowSpy(iou, occlusion)
    overrides = {"pathways": 3, "stride": seq.stride, "mf_threshold": seq.threshold,
                 "max_pointers": seq.max_pointers, "delta_conf": delta_conf}
    engine = Engine(load_strategy("sam3-memory-tree", overrides), backend)
    prompts = sorted({seq.first, *seq.reprompts})
    mask = np.ones((2, 2), bool)
    list(engine.run([Prompt(1, p, mask=mask) for p in prompts], range(backend.num_frames)))
    cols = engine.record.columns()
    parent = engine.record.parent_rows()
    prompt_nodes = {int(n) for n in np.flatnonzero(cols.candidate == -1)}
    for t, plans in backend.plans.items():
        for plan in plans:
            # the pathway's node at t-1 (a tracked one, or the prompt there)
            leaf = next(r.node for r in plan.spatial if int(cols.frame[r.node]) == t - 1)
            ancestry: dict[int, int] = {}
            scores: dict[int, float] = {}
            node = leaf
            while node >= 0:
                if node not in prompt_nodes:
                    frame = int(cols.frame[node])
                    ancestry[frame] = node
                    scores[frame] = spec_score(float(cols.iou[node]), float(cols.occlusion[node]))
                node = int(parent[node])
            selected = spec_list(scores, t, seq.stride, seq.threshold, seq.num_frames,
                                 seq.max_pointers)
            refs = plan.spatial + plan.pointers
            assert all(r.node in prompt_nodes or ancestry[int(cols.frame[r.node])] == r.node
                       for r in refs)
            got = (
                [(int(cols.frame[r.node]), r.position) for r in plan.spatial],
                [(int(cols.frame[r.node]), r.position) for r in plan.pointers],
            )
            assert got == spec_reads(selected, t, prompts, set(scores))


# --- the sets ------------------------------------------------------------------------------------


def test_sets_are_registered_with_sam3s_defaults() -> None:
    single = load_strategy("sam3-memory")
    assert single.pathways == 1 and isinstance(single.pruning, TopScores)
    assert single.memory == ScoredFrames(0.01, 1, 16, 6)
    tree = load_strategy("sam3-memory-tree")
    assert tree.pathways == 3 and isinstance(tree.pruning, UncertaintyDiversity)
    assert tree.memory == ScoredFrames(0.01, 1, 16, 6)
    assert load_strategy("sam3-memory-tree", {"P": "5", "stride": "3"}).memory.stride == 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="stride"):
        load_strategy("sam3-memory", {"stride": "0"})
    with pytest.raises(ConfigError, match="max_pointers"):
        load_strategy("sam3-memory-tree", {"max_pointers": "0"})


def test_tree_keeps_held_memory_bounded_over_a_long_video() -> None:
    """P = 3 over 500 frames: each pathway holds at most 15 eligible frames plus t-1, so the
    backend never holds more than the windows of the live and the previous pathways."""
    video = make_video(5, num_frames=500)
    backend = SyntheticBackend(video)
    strategy = load_strategy("sam3-memory-tree", {"pathways": "3"})
    result = treemem.track(None, video.first_frame_prompts(), strategy, backend=backend,
                           max_lag=2)
    assert result.masks.shape[0] == 500
    assert backend.peak_held <= 3 * (16 + 2 + 2) + 1


def test_sam3_sets_on_the_synthetic_suite(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs both sets (and greedy for reference) on the synthetic suite with several objects and
    prints mean J; no assert on the numbers, which measure the synthetic backend as much as
    the method."""
    videos = make_suite(seed=0, count=3, num_frames=40, num_objects=2)
    means = {}
    for name in ("greedy", "sam3-memory", "sam3-memory-tree"):
        scores = [mean_j(treemem.track(v, v.first_frame_prompts(), name).masks, v) for v in videos]
        means[name] = float(np.mean(scores))
        assert np.isfinite(means[name])
    with capsys.disabled():
        print("\nsynthetic mean J:", {k: round(v, 4) for k, v in means.items()})


# --- on a random-weight SAM 2 model ---------------------------------------------------------------


def _sam2_run(
    video: object, prompts: list[Prompt], overrides: dict[str, object]
) -> tuple[Engine, dict[tuple[int, int], MemoryPlan]]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from treemem.backends.sam2 import Sam2Backend, build_random_model

    torch.set_num_threads(2)
    model = build_random_model(seed=3, image_size=128)
    with torch.no_grad():  # spread the IoU head out, so candidates differ in predicted IoU
        model.sam_mask_decoder.iou_prediction_head.layers[2].weight *= 40.0
    frames = video.frames  # type: ignore[attr-defined]
    backend = Sam2Backend(model, lambda i: frames[i], len(frames), frames.shape[1:3])
    plans: dict[tuple[int, int], MemoryPlan] = {}
    original = backend.propose

    def propose(
        features: object, queries: list[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        for query in queries:
            plans[(features.frame, query.obj)] = query.plan  # type: ignore[attr-defined]
        return original(features, queries, options)

    backend.propose = propose  # type: ignore[method-assign]
    engine = Engine(load_strategy("sam3-memory", overrides), backend)
    decisions = list(engine.run(prompts, range(backend.num_frames)))
    assert sorted((d.frame, d.obj) for d in decisions) == [
        (f, o) for f in range(len(frames)) for o in (1, 2)
    ]
    return engine, plans


def test_sam3_memory_on_sam2_with_several_objects_and_a_reprompt() -> None:
    """Two objects, object 1 re-prompted on frame 8, on a seeded random-weight SAM 2 model:
    every plan is the spec's list, scored with the max IoU over the decoder's candidates (the
    greedy choice keeps it); the frame after the re-prompt gives the prompt frame rank 1."""
    video = make_video(2, num_frames=16, num_objects=2)
    reprompt = 8
    prompts = [*video.first_frame_prompts(), Prompt(1, 8, mask=video.object_mask(1, reprompt))]
    scores_seen: list[float] = []
    # The defaults, then stride 2 and a threshold at the first run's median score, so that
    # both eligible and ineligible frames occur.
    for run in range(2):
        overrides = {"stride": 2, "mf_threshold": float(np.median(scores_seen))} if run else {}
        engine, plans = _sam2_run(video, prompts, overrides)
        selection = engine.strategy.memory
        assert isinstance(selection, ScoredFrames)
        cols = engine.record.columns()
        node_frame = {int(row): int(cols.frame[row]) for row in np.flatnonzero(cols.kept)}
        for obj in (1, 2):
            prompt_frames = [0, reprompt] if obj == 1 else [0]
            scores: dict[int, float] = {}
            for t in range(1, video.num_frames):
                if t in prompt_frames:
                    continue
                plan = plans[(t, obj)]
                selected = spec_list(scores, t, selection.stride, selection.mf_threshold, 16)
                got = (
                    [(node_frame[r.node], r.position) for r in plan.spatial],
                    [(node_frame[r.node], r.position) for r in plan.pointers],
                )
                assert got == spec_reads(selected, t, prompt_frames, set(scores))
                rows = (cols.object == obj) & (cols.frame == t)
                kept_iou = float(cols.iou[rows & cols.kept][0])
                assert kept_iou == float(cols.iou[rows].max())
                occlusion = float(cols.occlusion[rows & cols.kept][0])
                scores[t] = spec_score(kept_iou, occlusion)
            if obj == 1:
                after = plans[(reprompt + 1, 1)]
                read = after.spatial + after.pointers
                assert all(r.position >= 2 for r in read if node_frame[r.node] not in (0, 8))
            scores_seen += list(scores.values())
