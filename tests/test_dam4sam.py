"""DAM4SAM's rules (`DistractorGate`, `DistractorAwareFrames`) against the worked examples of
../shared/docs/dam4sam-spec.md, the memory contract on drawn histories, the mask statistics
rule against a brute-force flood fill, and both sets through the engine on the synthetic
backend (with P = 1 the tree makes dam4sam's choices; with P = 3 held memory stays flat)."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treemem
from treemem import Engine, load_strategy
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import make_suite, make_video, mean_j
from treemem.cli import main
from treemem.geometry import mask_stats
from treemem.strategies.dam4sam import (
    DistractorAwareFrames,
    DistractorGate,
    DistractorState,
    box_iou,
)
from treemem.types import ConfigError, MaskStats, MemoryEntry, MemoryHistory

PROMPT = MemoryEntry(-1, 0, 1.0, 10.0, conditioning=True)


def tracked(frame: int, *, visible: bool = True, promoted: bool = False) -> MemoryEntry:
    return MemoryEntry(frame, frame, 0.9, 5.0, visible=visible, promoted=promoted)


def history_of(entries: list[MemoryEntry]) -> MemoryHistory:
    return MemoryHistory((PROMPT,), tuple(entries))


def frames(pairs: tuple[tuple[MemoryEntry, int], ...]) -> list[tuple[int, int]]:
    return [(e.frame, position) for e, position in pairs]


# --- memory selection ---


def test_conditioning_order_is_the_specs_example() -> None:
    """Frames 2, 8, 14, 20 promoted: at t = 22 the order is [20, 0, 14, 8]; at t = 21 frame 20
    (t - 1) is never selected and is read as RAM slot 0 instead."""
    memory = DistractorAwareFrames()
    entries = [tracked(f, promoted=f in (2, 8, 14, 20)) for f in range(1, 22)]
    history = history_of(entries)
    assert [e.frame for e in memory.conditioning(history, 22)] == [20, 0, 14, 8]
    assert [e.frame for e in memory.conditioning(history, 21)] == [14, 0, 8, 2]
    recalled = memory.recall(history, 21)
    assert frames(recalled.spatial)[:4] == [(14, 0), (0, 0), (8, 0), (2, 0)]
    assert frames(recalled.spatial)[-1] == (20, 1)
    # pointers: the selected frames first, then t-1 down, the unselected promoted 20 included
    assert frames(recalled.pointers)[:6] == [(14, 7), (0, 21), (8, 13), (2, 19), (20, 1), (19, 2)]
    assert recalled.pointer_span == 22


def test_recent_appearance_chain_is_the_specs_example() -> None:
    """The shared case: 2 and 12 promoted, 3 and 13 absent. t = 15 reads RAM [5, 10, 14] at
    tpos [2, 1, 0] (positions 3, 2, 1); t = 14 (t - 1 absent) reads [5, 10, 11]."""
    memory = DistractorAwareFrames()
    entries = [
        tracked(f, visible=f not in (3, 13), promoted=f in (2, 12)) for f in range(1, 15)
    ]
    history = history_of(entries)
    assert frames(memory.recall(history, 15).spatial) == [
        (12, 0), (0, 0), (2, 0), (5, 3), (10, 2), (14, 1)
    ]
    assert frames(memory.recall(history_of(entries[:13]), 14).spatial) == [
        (12, 0), (0, 0), (2, 0), (5, 3), (10, 2), (11, 1)
    ]
    # t = 13 reads 12 (just promoted, never selected) as RAM slot 0, already re-encoded
    assert frames(memory.recall(history_of(entries[:12]), 13).spatial) == [
        (2, 0), (0, 0), (5, 3), (10, 2), (12, 1)
    ]


def test_restart_keeps_prompts_not_promoted_frames() -> None:
    memory = DistractorAwareFrames()
    history = history_of([tracked(1), tracked(2, promoted=True), tracked(3)])
    restarted = memory.restart(history)
    assert restarted.conditioning == (PROMPT,) and restarted.recent == ()


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[bool, bool]]:
    """(visible, promoted) for tracked frames 1..n."""
    n = draw(st.integers(1, 90))
    visible = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    promoted = draw(st.lists(st.sampled_from([False] * 6 + [True]), min_size=n, max_size=n))
    return [(v, p and v) for v, p in zip(visible, promoted, strict=True)]


@settings(max_examples=120, deadline=None)
@given(histories(), st.integers(1, 6), st.integers(1, 7))
def test_extend_keeps_everything_a_later_recall_reads(
    flags: list[tuple[bool, bool]], max_conditioning: int, stride: int
) -> None:
    """Recall over the bounded history equals recall over the whole past on every frame
    (so extend dropped nothing reachable), reads only kept entries, and keeps a bounded
    number of them."""
    memory = DistractorAwareFrames(max_conditioning, stride=stride)
    bounded = history_of([])
    everything: list[MemoryEntry] = []
    for frame, (visible, promoted) in enumerate(flags, start=1):
        entry = tracked(frame, visible=visible, promoted=promoted)
        extended = memory.extend(bounded, entry)
        assert extended.nodes() <= bounded.nodes() | {entry.node}
        everything.append(entry)
        full = memory.recall(history_of(everything), frame + 1)
        kept = memory.recall(extended, frame + 1)
        assert kept == full
        assert {e.node for e, _ in kept.spatial + kept.pointers} <= extended.nodes()
        assert len(extended.recent) <= memory.pointer_frames + max_conditioning + 1 + 2 + 7
        bounded = extended


@settings(max_examples=60, deadline=None)
@given(histories())
def test_backward_tracking_reads_the_mirror_image(flags: list[tuple[bool, bool]]) -> None:
    """Tracking backward from a prompt on frame 100 (a multiple of the stride) reads frame
    100 - f exactly where forward tracking from frame 0 reads frame f, at the same positions."""
    memory = DistractorAwareFrames()
    last = 100
    mirror = MemoryEntry(-1, last, 1.0, 10.0, conditioning=True, direction="backward")
    forward, backward = history_of([]), MemoryHistory((mirror,))
    for frame, (visible, promoted) in enumerate(flags[:60], start=1):
        ahead = memory.recall(forward, frame)
        behind = memory.recall(backward, last - frame)
        assert [(last - f, p) for f, p in frames(ahead.spatial)] == frames(behind.spatial)
        assert [(last - f, p) for f, p in frames(ahead.pointers)] == frames(behind.pointers)
        assert ahead.pointer_span == behind.pointer_span
        forward = memory.extend(forward, tracked(frame, visible=visible, promoted=promoted))
        entry = MemoryEntry(
            last - frame, last - frame, 0.9, 5.0, visible=visible, promoted=promoted,
            direction="backward",
        )
        backward = memory.extend(backward, entry)


# --- the promotion rule ---


def stats_of(masks: np.ndarray) -> MaskStats:
    """One row's statistics from (K, H, W) masks."""
    return mask_stats(masks[None], masks[None].sum(axis=(-2, -1)))


def candidates(outside: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Candidate 0 a 10 x 10 square; 1 the same square plus `outside` (x0, y0, x1, y1,
    exclusive); 2 the left half of the square (inside 0)."""
    masks = np.zeros((3, 40, 40), bool)
    masks[:, 5:15, 5:15] = True
    masks[2, :, 10:] = False
    if outside is not None:
        x0, y0, x1, y1 = outside
        masks[1, y0:y1, x0:x1] = True
    return masks


def test_box_iou_follows_vots_convention() -> None:
    square = np.array([5, 5, 14, 14], np.float32)  # w = h = 9, no +1
    assert box_iou(square, np.array([5, 5, 32, 14], np.float32)) == pytest.approx(81 / (27 * 9))
    assert box_iou(square, square) == 1.0
    assert box_iou(np.array([3, 3, 3, 8], np.float32), np.array([3, 3, 4, 8], np.float32)) == 1.0


def test_each_gate_of_the_rule() -> None:
    gate = DistractorGate()
    far = stats_of(candidates((30, 30, 36, 36)))
    area = int(far.area[0, 0])
    steady = DistractorState((area,) * 5)
    iou = np.array([0.9, 0.5, 0.3], np.float32)

    def verdict(state: DistractorState, stats: MaskStats, frame: int = 20, ious=iou) -> str:
        return gate.step(state, frame, ious, 5.0, stats).decision(0).gate

    assert verdict(steady, far) == "added"
    assert verdict(DistractorState(), far) == "size"  # the first tracked frame has no ratio
    assert verdict(DistractorState((area * 2,) * 5), far) == "size"
    assert verdict(dataclasses.replace(steady, last_added=15), far) == "spacing"
    assert verdict(dataclasses.replace(steady, last_added=14), far) == "added"
    assert verdict(steady, stats_of(candidates())) == "no alternative"
    assert verdict(steady, stats_of(candidates((15, 5, 16, 15)))) == "box"  # 9*9/(10*9) > 0.7
    assert verdict(steady, far, ious=np.array([0.8, 0.5, 0.3], np.float32)) == "added"
    below = np.nextafter(np.float32(0.8), np.float32(0))
    assert verdict(steady, far, ious=np.array([below, 0.5, 0.3], np.float32)) == "iou"
    empty = stats_of(np.zeros((3, 40, 40), bool))
    assert verdict(steady, empty) == "size"  # an empty mask has ratio -1
    step = gate.step(steady, 20, iou, 5.0, far)
    assert step.promote(0) and step.child(0) == DistractorState((area,) * 6, 20)
    assert not step.promote(2) and step.child(2).last_added == -1


def test_the_size_median_covers_the_last_ten_nonzero_areas_with_this_frame() -> None:
    gate = DistractorGate()
    stats = stats_of(candidates((30, 30, 36, 36)))
    area = int(stats.area[0, 0])
    # 10 old huge areas, then zeros, then 9 areas equal to this one: median = this area
    state = DistractorState((area * 5,) * 10 + (0,) * 20 + (area,) * 9)
    decision = gate.step(state, 50, np.array([0.9, 0.5, 0.3], np.float32), 5.0, stats).decision(0)
    assert decision.size_ratio == 1.0 and decision.gate == "added"
    # with 8 equal areas the window still holds one huge one: median unchanged (even count)
    state = DistractorState((area * 5,) * 10 + (area,) * 8)
    decision = gate.step(state, 50, np.array([0.9, 0.5, 0.3], np.float32), 5.0, stats).decision(0)
    assert decision.size_ratio == 1.0


# --- mask statistics ---


def flood_largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component, by breadth-first search in row-major order."""
    seen = np.zeros_like(mask)
    best = np.zeros_like(mask)
    height, width = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        component = np.zeros_like(mask)
        queue = deque([(y, x)])
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            component[cy, cx] = True
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        if component.sum() > best.sum():
            best = component
    return best


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.1, 0.7))
def test_mask_stats_match_a_flood_fill(seed: int, density: float) -> None:
    masks = np.random.default_rng(seed).random((2, 3, 12, 17)) < density
    stats = mask_stats(masks, np.zeros((2, 3), np.int64))
    for r in range(2):
        for k in range(3):
            for j in range(3):
                component = flood_largest(masks[r, j] & ~masks[r, k])
                assert stats.outside_area[r, k, j] == component.sum()
                union = masks[r, k] | component
                if union.any():
                    ys, xs = np.nonzero(union)
                    box = [xs.min(), ys.min(), xs.max(), ys.max()]
                    assert stats.outside_union_boxes[r, k, j].tolist() == box


# --- the sets ---


def test_sets_are_registered_with_the_references_defaults() -> None:
    single = load_strategy("dam4sam")
    assert single.pathways == 1 and single.promotion == DistractorGate()
    assert single.memory == DistractorAwareFrames(4, 7, 5, 15)
    tree = load_strategy("dam4sam-tree", {"P": "4", "stride": "3"})
    assert tree.pathways == 4 and tree.memory == DistractorAwareFrames(4, 7, 3, 15)
    with pytest.raises(ConfigError, match="max_conditioning"):
        load_strategy("dam4sam", {"max_conditioning": "7"})
    with pytest.raises(ConfigError, match="size_low"):
        load_strategy("dam4sam-tree", {"size_low": "1.5"})


def _choices(engine: Engine) -> list[tuple[int, int, int]]:
    columns = engine.record.columns()
    kept = columns.kept & (columns.slot == 0)
    return list(zip(columns.object[kept].tolist(), columns.frame[kept].tolist(),
                    columns.candidate[kept].tolist(), strict=True))


def test_tree_with_one_pathway_makes_dam4sams_choices_and_promotes() -> None:
    for video in make_suite(seed=1, count=3, num_frames=50, num_objects=2):
        runs = {}
        for name, overrides in (("dam4sam", {}), ("dam4sam-tree", {"P": "1"})):
            backend = SyntheticBackend(video, seed=2)
            promoted: list[int] = []
            commit = backend.commit

            def spy(features, proposals, commits, _commit=commit, _promoted=promoted):  # type: ignore[no-untyped-def]
                _promoted.extend(c.node for c in commits if c.promote)
                _commit(features, proposals, commits)

            backend.commit = spy  # type: ignore[method-assign]
            engine = Engine(load_strategy(name, overrides), backend)
            decisions = list(engine.run(video.first_frame_prompts(), range(video.num_frames)))
            runs[name] = (_choices(engine), [(d.obj, d.frame, d.node) for d in decisions], promoted)
        assert runs["dam4sam"] == runs["dam4sam-tree"]
        assert runs["dam4sam"][2], "the synthetic backend never triggered a promotion"


def test_tree_keeps_held_memory_flat_over_a_thousand_frames() -> None:
    """P = 3 over 1,000 frames: each pathway keeps at most 15 + 5 + 2 + 7 entries, so held
    memory is bounded by the windows of the live and the previous pathways, whatever the
    video's length; and it does promote along the way."""
    video = make_video(5, num_frames=1000)
    backend = SyntheticBackend(video)
    strategy = load_strategy("dam4sam-tree", {"pathways": "3"})
    result = treemem.track(None, video.first_frame_prompts(), strategy, backend=backend,
                           max_lag=2)
    assert result.masks.shape[0] == 1000
    assert backend.peak_held <= 2 * 3 * (15 + 5 + 2 + 7) + 3


def test_dam4sam_sets_on_the_synthetic_suite(capsys: pytest.CaptureFixture[str]) -> None:
    """Both sets run without a model; mean J printed, not asserted (it measures the synthetic
    backend as much as the method)."""
    videos = make_suite(seed=0, count=2, num_frames=40, num_objects=2)
    means = {}
    for name in ("greedy", "dam4sam", "dam4sam-tree"):
        scores = [mean_j(treemem.track(v, v.first_frame_prompts(), name).masks, v) for v in videos]
        means[name] = float(np.mean(scores))
        assert np.isfinite(means[name])
    with capsys.disabled():
        print("\nsynthetic mean J:", {k: round(v, 4) for k, v in means.items()})


@pytest.mark.parametrize(("name", "extra"), [("dam4sam", []), ("dam4sam-tree", ["--set", "P=2"])])
def test_treemem_run_takes_the_sets(
    name: str, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "video"
    make_video(5, num_frames=12, height=64, width=80, num_objects=2).save(folder)
    out = tmp_path / "run"
    mask = str(folder / "gt" / "00000.png")
    args = ["run", str(folder), "--backend", "synthetic", "--mask", mask, "--out", str(out),
            "--no-progress", "--strategy", name, *extra]
    assert main(args) == 0
    assert "wrote 12 frames of 2 object(s)" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["strategy"] == name
    assert len(list((out / "masks").iterdir())) == 12


def test_the_sets_track_backward_and_both_ways() -> None:
    video = make_video(2, num_frames=30, num_objects=2)
    last = [treemem.Prompt(o, 29, mask=video.object_mask(o, 29)) for o in (1, 2)]
    middle = [treemem.Prompt(o, 15, mask=video.object_mask(o, 15)) for o in (1, 2)]
    for name in ("dam4sam", "dam4sam-tree"):
        backward = treemem.track(video, last, name, direction="backward")
        both = treemem.track(video, middle, name, direction="both")
        assert backward.masks.shape[0] == both.masks.shape[0] == 30
        np.testing.assert_array_equal(backward.masks[29], video.gt[29])


def test_the_sam2_style_predictor_runs_the_sets() -> None:
    video = make_video(4, num_frames=10, num_objects=1)
    for name in ("dam4sam", "dam4sam-tree"):
        predictor = treemem.Predictor("synthetic", name)
        with predictor.init_state(video) as state:
            predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=video.object_mask(1, 0))
            frames = [frame for frame, _, _ in predictor.propagate_in_video(state)]
        assert frames == list(range(10))


def test_a_reprompt_restarts_the_distractor_memory() -> None:
    """After a re-prompt on frame 25 no frame tracked or promoted before it is read again
    (the prompts stay: a promoted frame is not a prompt), and promotions happen on both
    sides of it."""
    video = make_video(1, num_frames=50, num_objects=1)
    prompts = [treemem.Prompt(1, f, mask=video.object_mask(1, f)) for f in (0, 25)]
    backend = SyntheticBackend(video, seed=2)
    reads: dict[int, list[int]] = {}
    promoted: list[int] = []
    propose, commit = backend.propose, backend.commit

    def spy_propose(features, queries, options):  # type: ignore[no-untyped-def]
        reads[features.index] = [r.node for q in queries for r in q.plan.spatial + q.plan.pointers]
        return propose(features, queries, options)

    def spy_commit(features, proposals, commits):  # type: ignore[no-untyped-def]
        promoted.extend(features.index for c in commits if c.promote)
        commit(features, proposals, commits)

    backend.propose, backend.commit = spy_propose, spy_commit  # type: ignore[method-assign]
    engine = Engine(load_strategy("dam4sam"), backend)
    list(engine.run(prompts, range(video.num_frames)))
    frame_of = engine.record.columns().frame
    assert any(f < 25 for f in promoted) and any(f > 25 for f in promoted)
    for frame in range(26, 50):
        assert all(frame_of[n] in (0, 25) or frame_of[n] > 25 for n in reads[frame]), frame
