"""SAMURAI's strategies against ../shared/docs/samurai-spec.md: the Kalman filter by hand, each
phase's choice and thresholds on constructed candidates, memory selection on constructed
histories, and whole runs (scripted boxes, the synthetic suite)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.registry import REGISTRY
from treemem.strategies.samurai import (
    KalmanFilter,
    MotionAwareFrames,
    MotionModel,
    MotionState,
    box_iou,
    box_to_xyah,
    xyah_to_box,
)
from treemem.strategies.scoring import CumulativeLogIou
from treemem.strategies.selection import UncertaintyDiversity
from treemem.strategy import StrategySet
from treemem.types import (
    Commit,
    ConfigError,
    MemoryEntry,
    MemoryHistory,
    PathwayQuery,
    PromptResult,
    ProposalOptions,
    Proposals,
    TreememError,
)

KF = KalmanFilter()
TAU32 = float(np.float32(0.3))  # "IoU exactly 0.3" as the float32 the model reports


# --- boxes and the Kalman filter ------------------------------------------------------------------


def test_box_conversions() -> None:
    assert box_to_xyah(np.array([10.0, 20.0, 30.0, 60.0])).tolist() == [20.0, 40.0, 0.5, 40.0]
    assert xyah_to_box(np.array([20.0, 40.0, 0.5, 40.0])).tolist() == [10.0, 20.0, 30.0, 60.0]
    # an empty mask measures (0, 0, 0, 1); a one-row mask keeps its centre row, h -> 1
    assert box_to_xyah(np.zeros(4)).tolist() == [0.0, 0.0, 0.0, 1.0]
    assert box_to_xyah(np.array([2.0, 3.0, 6.0, 3.0])).tolist() == [4.0, 3.0, 4.0, 1.0]


def test_motion_score_is_box_iou_without_plus_one() -> None:
    predicted = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(np.zeros(4, np.float32), predicted) == 0.0  # an empty mask's box
    assert box_iou(np.array([0.0, 0.0, 10.0, 10.0], np.float32), predicted) == 1.0
    assert box_iou(np.array([5.0, 0.0, 15.0, 10.0]), predicted) == pytest.approx(50 / 150)
    assert box_iou(np.array([1.0, 1.0, 3.0, 3.0]), np.array([1.0, 1.0, 3.0, 3.0])) == 1.0
    assert box_iou(np.array([20.0, 20.0, 30.0, 30.0]), predicted) == 0.0
    assert box_iou(np.array([1.0, 1.0, 1.0, 5.0]), np.array([1.0, 1.0, 1.0, 5.0])) == 0.0  # union 0


def test_kalman_initiate_predict_update_by_hand() -> None:
    # h = 40: position std 2 (sp h), velocity std 0.25 (sv h)
    mean, cov = KF.initiate(np.array([10.0, 20.0, 0.5, 40.0]))
    assert mean.tolist() == [10.0, 20.0, 0.5, 40.0, 0.0, 0.0, 0.0, 0.0]
    assert np.allclose(np.diag(cov), [16, 16, 1e-4, 16, 6.25, 6.25, 1e-10, 6.25], rtol=1e-12)
    assert np.count_nonzero(cov - np.diag(np.diag(cov))) == 0

    mean, cov = KF.predict(mean, cov)  # Q std (2, 2, 1e-2, 2, .25, .25, 1e-5, .25)
    assert mean.tolist() == [10.0, 20.0, 0.5, 40.0, 0.0, 0.0, 0.0, 0.0]
    pos = 16 + 6.25 + 4
    assert cov[0, 0] == pytest.approx(pos) and cov[3, 3] == pytest.approx(pos)
    assert cov[2, 2] == pytest.approx(1e-4 + 1e-10 + 1e-4, rel=1e-12)
    assert cov[4, 4] == pytest.approx(6.25 + 0.0625) and cov[6, 6] == pytest.approx(2e-10)
    assert cov[0, 4] == pytest.approx(6.25) and cov[4, 0] == pytest.approx(6.25)

    # update with x moved by 2 (R std (2, 2, 0.1, 2)): S = pos + 4 per position dimension
    new_mean, new_cov = KF.update(mean, cov, np.array([12.0, 20.0, 0.5, 40.0]))
    s = pos + 4
    assert new_mean[0] == pytest.approx(10 + 2 * pos / s, rel=1e-12)
    assert new_mean[4] == pytest.approx(2 * 6.25 / s, rel=1e-12)
    assert new_mean[[1, 2, 3, 5, 6, 7]].tolist() == pytest.approx([20, 0.5, 40, 0, 0, 0])
    assert new_cov[0, 0] == pytest.approx(pos * 4 / s, rel=1e-12)
    assert new_cov[0, 4] == pytest.approx(6.25 * 4 / s, rel=1e-12)
    assert new_cov[4, 4] == pytest.approx(6.3125 - 6.25**2 / s, rel=1e-12)
    assert np.allclose(new_cov, new_cov.T)


def test_kalman_update_with_the_empty_mask_measurement() -> None:
    mean, cov = KF.predict(*KF.initiate(np.array([50.0, 60.0, 1.0, 20.0])))
    z = box_to_xyah(np.zeros(4))  # (0, 0, 0, 1)
    new_mean, _ = KF.update(mean, cov, z)
    # h = 20: P_pos = 4 + 1.5625 + 1 = 6.5625, R = 1 -> gain 6.5625 / 7.5625 towards z
    gain = 6.5625 / 7.5625
    assert new_mean[0] == pytest.approx(50 - 50 * gain, rel=1e-12)
    assert new_mean[1] == pytest.approx(60 - 60 * gain, rel=1e-12)
    assert new_mean[3] == pytest.approx(20 - 19 * gain, rel=1e-12)
    a_var = 2e-4 + 1e-10
    assert new_mean[2] == pytest.approx(1 - a_var / (a_var + 1e-2), rel=1e-12)


# --- the phases on constructed candidates ---------------------------------------------------------


BOXES = np.array([[0, 0, 9, 9], [40, 40, 59, 79], [100, 0, 119, 9]], np.float32)


def run_to(model: MotionModel, stable: int) -> MotionState:
    """A state with `stable` successful updates on box 1 (phases A then B)."""
    state = model.start(PromptResult(1.0, 10.0))
    iou = np.array([0.1, 0.9, 0.1], np.float32)
    for _ in range(stable):
        state = model.step(state, iou, BOXES, 5.0).child(1)
    assert state.stable == stable
    return state


def test_phase_a_picks_argmax_iou_and_initiates() -> None:
    model = MotionModel()
    state = model.start(PromptResult(1.0, 10.0))
    assert model.phase(state) == "A" and state.mean is None
    step = model.step(state, np.array([0.2, 0.9, 0.5], np.float32), BOXES, 5.0)
    assert step.phase == "A" and step.motion(1) is None
    assert step.likelihood.tolist() == np.array([0.2, 0.9, 0.5], np.float32).tolist()
    child = step.child(1)
    assert child.stable == 1 and child.mean is not None
    assert child.mean[:4].tolist() == box_to_xyah(BOXES[1]).tolist()
    # a click prompt already ran A on the prompt frame: the next frame is B
    clicked = model.start(PromptResult(0.8, 3.0, box=(40.0, 40.0, 59.0, 79.0)))
    assert clicked.stable == 1 and model.phase(clicked) == "B"


def test_phase_b_updates_only_above_tau_exclusive() -> None:
    model = MotionModel(stable_frames_threshold=3)
    state = run_to(model, 1)
    step = model.step(state, np.array([0.1, TAU32, 0.2], np.float32), BOXES, 5.0)
    assert step.phase == "B" and step.motion(1) is None
    assert np.array_equal(step.likelihood, np.array([0.1, TAU32, 0.2], np.float32))
    failed = step.child(1)  # IoU exactly 0.3: not > tau
    assert failed.stable == 0 and model.phase(failed) == "A"
    assert failed.mean is not None and np.array_equal(failed.mean, step.mean)  # predicted only
    above = np.nextafter(np.float32(0.3), np.float32(1))
    passed = model.step(state, np.array([0.1, above, 0.2], np.float32), BOXES, 5.0).child(1)
    assert passed.stable == 2
    mean, cov = KF.predict(state.mean, state.covariance)  # type: ignore[arg-type]
    expected, _ = KF.update(mean, cov, box_to_xyah(BOXES[1]))
    assert np.array_equal(passed.mean, expected)  # type: ignore[arg-type]


def test_phase_c_weights_motion_and_updates_at_tau_inclusive() -> None:
    model = MotionModel(kf_score_weight=0.25, stable_frames_threshold=3)
    state = run_to(model, 3)
    assert model.phase(state) == "C"
    predicted = xyah_to_box(KF.predict(state.mean, state.covariance)[0])  # type: ignore[arg-type]
    iou = np.array([0.8, 0.7, 0.75], np.float32)
    step = model.step(state, iou, BOXES, 5.0)
    motion = np.array([box_iou(b, predicted) for b in BOXES])
    assert motion[1] > 0.9 and motion[0] == 0.0 and motion[2] == 0.0
    expected = 0.25 * motion + 0.75 * iou.astype(np.float64)
    assert np.array_equal(step.likelihood, expected)
    assert int(np.argmax(step.likelihood)) == 1  # motion overturns the IoU ranking
    assert step.motion(1) == motion[1] and step.motion(0) == 0.0
    at_tau = model.step(state, np.array([0.1, TAU32, 0.1], np.float32), BOXES, 5.0).child(1)
    assert at_tau.stable == 3  # IoU exactly 0.3: updated (>= tau), S unchanged
    below = np.nextafter(np.float32(0.3), np.float32(0))
    reset = model.step(state, np.array([0.1, below, 0.1], np.float32), BOXES, 5.0).child(1)
    assert reset.stable == 0 and model.phase(reset) == "A"


def test_phase_c_ties_keep_the_first_index() -> None:
    model = MotionModel(kf_score_weight=0.0, stable_frames_threshold=1)
    state = run_to(model, 1)
    step = model.step(state, np.array([0.5, 0.5, 0.5], np.float32), BOXES, 5.0)
    assert step.phase == "C"
    score = load_strategy("samurai").scoring(np.zeros(1), step.likelihood[None])
    assert int(np.argsort(-score.ravel(), kind="stable")[0]) == 0


def test_tree_score_is_cumulative_log_of_the_likelihood() -> None:
    likelihood = np.array([[0.775, 0.6, 0.0]])
    score = load_strategy("samurai-tree").scoring(np.array([-0.5]), likelihood)
    assert np.array_equal(score, CumulativeLogIou(1e-5)(np.array([-0.5]), likelihood))
    assert score[0, 0] == -0.5 + np.log(0.775 + 1e-5)


# --- memory selection on constructed histories ----------------------------------------------------

PROMPT = MemoryEntry(100, 0, 1.0, 10.0, conditioning=True)


def entry(
    frame: int, iou: float = 0.9, occlusion: float = 5.0, motion: float | None = None
) -> MemoryEntry:
    return MemoryEntry(frame, frame, iou, occlusion, motion=motion)


def spatial_frames(
    memory: MotionAwareFrames, history: MemoryHistory, frame: int
) -> list[tuple[int, int]]:
    recalled = memory.recall(history, frame)
    return [(e.frame, pos) for e, pos in recalled.spatial]


def test_memory_validity_is_strict_and_motion_optional() -> None:
    memory = MotionAwareFrames()
    assert memory.is_valid(entry(3, 0.51, 0.01))
    assert not memory.is_valid(entry(3, 0.5, 5.0))  # IoU > 0.5 strictly
    assert not memory.is_valid(entry(3, 0.9, 0.0))  # o > 0 strictly
    assert not memory.is_valid(entry(3, 0.9, 5.0, motion=0.0))  # motion > 0 strictly
    assert memory.is_valid(entry(3, 0.9, 5.0, motion=0.01))
    assert memory.is_valid(entry(3, 0.9, 5.0, motion=None))  # no motion score (phases A, B)


def test_memory_selects_valid_frames_by_rank_and_always_the_previous_frame() -> None:
    memory = MotionAwareFrames()
    recent = (
        entry(1),  # frame f0 + 1: never scanned
        entry(2),
        entry(3, iou=0.4),
        entry(4),
        entry(5, occlusion=-1.0),
        entry(6, motion=0.0),
        entry(7, motion=0.3),
        entry(8),
        entry(9),
        entry(10),
        entry(11, iou=0.2),  # t - 1, invalid: added anyway
    )
    history = MemoryHistory((PROMPT,), recent)
    # valid: 2, 4, 7, 8, 9, 10; plus 11 -> the last 6 are 4, 7, 8, 9, 10, 11
    assert spatial_frames(memory, history, 12) == [
        (0, 0), (4, 6), (7, 5), (8, 4), (9, 3), (10, 2), (11, 1)
    ]
    # frame f0 + 1 is selectable only as t - 1
    assert spatial_frames(memory, MemoryHistory((PROMPT,), recent[:1]), 2) == [(0, 0), (1, 1)]
    assert spatial_frames(memory, MemoryHistory((PROMPT,), recent[:2]), 3) == [(0, 0), (2, 1)]
    # at t = f0 + 1 only the prompt frame
    assert spatial_frames(memory, MemoryHistory((PROMPT,)), 1) == [(0, 0)]
    # no look-back limit: an old valid frame still counts
    old = MemoryHistory((PROMPT,), (entry(2), *(entry(f, iou=0.1) for f in range(3, 40))))
    assert spatial_frames(memory, old, 40) == [(0, 0), (2, 2), (39, 1)]


def test_memory_pointers_are_stock_sam2() -> None:
    memory = MotionAwareFrames()
    history = MemoryHistory((PROMPT,), tuple(entry(f, iou=0.1) for f in range(1, 21)))
    recalled = memory.recall(history, 21)
    assert [(e.frame, pos) for e, pos in recalled.pointers] == [(0, 21)] + [
        (21 - d, d) for d in range(1, 16)
    ]


def test_memory_extend_keeps_what_recall_reads() -> None:
    rng = np.random.default_rng(3)
    memory = MotionAwareFrames()
    full = MemoryHistory((PROMPT,))
    kept = MemoryHistory((PROMPT,))
    for frame in range(1, 80):
        motion = None if rng.uniform() < 0.3 else float(rng.uniform(-0.1, 1))
        new = entry(frame, float(rng.uniform(0.3, 1)), float(rng.normal(1, 2)), motion)
        full = MemoryHistory(full.conditioning, (*full.recent, new))
        kept = memory.extend(kept, new)
        assert len(kept.recent) <= 15 + 6
        assert memory.recall(kept, frame + 1) == memory.recall(full, frame + 1)


def test_memory_restart_forgets_tracked_frames() -> None:
    memory = MotionAwareFrames()
    reprompt = MemoryEntry(101, 10, 1.0, 10.0, conditioning=True)
    history = memory.restart(MemoryHistory((PROMPT, reprompt), (entry(8), entry(9))))
    assert history.recent == ()
    assert memory.scan_floor(history, 11) == 12


# --- registry -------------------------------------------------------------------------------------


def test_sets_are_registered_with_their_defaults() -> None:
    assert {"greedy", "sam2long", "samurai", "samurai-tree"} <= set(REGISTRY.names())
    samurai = load_strategy("samurai")
    assert samurai.pathways == 1 and samurai.presence_threshold == -1.0
    assert isinstance(samurai.pathway_model, MotionModel)
    assert samurai.pathway_model.kf_score_weight == 0.25
    assert load_strategy("samurai", {"kf_score_weight": "0.15"}).pathway_model == MotionModel(0.15)
    tree = load_strategy("samurai-tree")
    assert tree.pathways == 3 and isinstance(tree.pruning, UncertaintyDiversity)
    for name in ("greedy", "sam2long"):
        plain = load_strategy(name)
        assert plain.pathway_model is None and plain.presence_threshold == 0.0
    with pytest.raises(ConfigError):
        load_strategy("samurai", {"kf_score_weight": "1.5"})


# --- whole runs on a scripted backend with boxes --------------------------------------------------


class BoxScript:
    """Replays per-frame (iou (K,), boxes (K, 4), occlusion) for every row and object."""

    def __init__(self, frames: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.num_frames = frames
        self.frame_size = (4, 4)
        choices = [0.1, 0.2, TAU32, 0.5, 0.7, 0.9]
        self.iou = rng.choice(choices, size=(frames, 3)).astype(np.float32)
        self.occlusion = rng.choice([-3.0, -0.5, 0.5, 5.0], size=frames).astype(np.float32)
        x = np.cumsum(rng.integers(0, 4, frames))
        jitter = rng.integers(-6, 7, size=(frames, 3))
        self.boxes = np.stack(
            [x[:, None] + jitter, 10 + jitter, x[:, None] + jitter + 20, 40 + jitter], axis=-1
        ).astype(np.float32)
        self.boxes[rng.uniform(size=(frames, 3)) < 0.1] = 0
        self.calls: list[ProposalOptions] = []

    def encode(self, frame: int) -> object:
        return frame

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        return PromptResult(1.0, 10.0)

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        assert isinstance(features, int)
        self.calls.append(options)
        n = len(queries)
        return Proposals(
            np.repeat(self.iou[features][None], n, 0),
            np.repeat(self.occlusion[features], n),
            np.repeat(self.boxes[features][None], n, 0),
        )

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        pass

    def mask_logits(self, node: int) -> np.ndarray:
        return np.full((4, 4), -1.0, np.float32)

    def release(self, nodes: object) -> None:
        pass


class ReferenceSamurai:
    """SAMURAI's per-frame choice written as the reference does it: one filter on one object,
    mutated in place (used to check the engine's run frame by frame)."""

    def __init__(self, weight: float, stable_threshold: int, tau: float = 0.3) -> None:
        self.weight, self.stable_threshold, self.tau = weight, stable_threshold, tau
        self.mean: np.ndarray | None = None
        self.cov: np.ndarray | None = None
        self.stable = 0

    def choose(self, iou: np.ndarray, boxes: np.ndarray) -> tuple[int, float | None]:
        tau = np.float32(self.tau)
        if self.mean is None or self.stable == 0:
            best = int(np.argmax(iou))
            self.mean, self.cov = KF.initiate(box_to_xyah(boxes[best]))
            self.stable += 1
            return best, None
        self.mean, self.cov = KF.predict(self.mean, self.cov)  # type: ignore[arg-type]
        if self.stable < self.stable_threshold:
            best = int(np.argmax(iou))
            if iou[best] > tau:
                self.mean, self.cov = KF.update(self.mean, self.cov, box_to_xyah(boxes[best]))
                self.stable += 1
            else:
                self.stable = 0
            return best, None
        predicted = xyah_to_box(self.mean)
        motion = np.array([box_iou(b, predicted) for b in boxes])
        weighted = self.weight * motion + (1 - self.weight) * iou.astype(np.float64)
        best = int(np.argmax(weighted))
        if iou[best] < tau:
            self.stable = 0
        else:
            self.mean, self.cov = KF.update(self.mean, self.cov, box_to_xyah(boxes[best]))
        return best, float(motion[best])


@pytest.mark.parametrize("seed", range(6))
def test_samurai_run_matches_the_reference_rule_frame_by_frame(seed: int) -> None:
    backend = BoxScript(60, seed)
    strategy = load_strategy("samurai", {"stable_frames_threshold": "3"})
    engine = Engine(strategy, backend)  # type: ignore[arg-type]
    list(engine.run([Prompt(1, 0, mask=np.ones((4, 4), bool))], range(engine.backend.num_frames)))
    assert backend.calls[0] == ProposalOptions(boxes=True, presence_threshold=-1.0)
    cols = engine.record.columns()
    reference = ReferenceSamurai(0.25, 3)
    phases = set()
    for frame in range(1, 60):
        kept = np.flatnonzero((cols.frame == frame) & cols.kept)
        assert kept.size == 1
        best, motion = reference.choose(backend.iou[frame], backend.boxes[frame])
        phases.add("C" if motion is not None else "AB")
        assert int(cols.candidate[kept[0]]) == best, frame
    assert phases == {"AB", "C"}


def test_samurai_tree_with_one_pathway_makes_samurai_choices() -> None:
    runs = []
    for name in ("samurai", "samurai-tree"):
        backend = BoxScript(40, 11)
        overrides = {"stable_frames_threshold": "2"} | ({"P": "1"} if name != "samurai" else {})
        engine = Engine(load_strategy(name, overrides), backend)  # type: ignore[arg-type]
        list(engine.run([Prompt(1, 0, mask=np.ones((4, 4), bool))],
                        range(engine.backend.num_frames)))
        cols = engine.record.columns()
        runs.append(cols.candidate[cols.kept & (cols.frame > 0)].tolist())
    assert runs[0] == runs[1]


def test_a_backend_without_boxes_is_refused() -> None:
    class NoBoxes(BoxScript):
        def propose(
            self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
        ) -> Proposals:
            full = super().propose(features, queries, options)
            return Proposals(full.iou, full.occlusion)

    engine = Engine(load_strategy("samurai"), NoBoxes(5, 0))  # type: ignore[arg-type]
    with pytest.raises(TreememError, match="boxes"):
        list(engine.run([Prompt(1, 0, mask=np.ones((4, 4), bool))],
                        range(engine.backend.num_frames)))


# --- the synthetic suite --------------------------------------------------------------------------


def test_samurai_sets_on_the_synthetic_suite(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs every set on the synthetic suite (several objects) and prints mean J; no assert on
    the numbers, which measure the synthetic backend as much as the method."""
    from treemem.backends.synthetic_video import make_suite, mean_j

    videos = make_suite(seed=0, count=3, num_frames=40, num_objects=2)
    means = {}
    for name in ("greedy", "sam2long", "samurai", "samurai-tree"):
        strategy: StrategySet = load_strategy(name)
        scores = [
            mean_j(treemem.track(v, v.first_frame_prompts(), strategy).masks, v) for v in videos
        ]
        means[name] = float(np.mean(scores))
        assert np.isfinite(means[name])
    with capsys.disabled():
        print("\nsynthetic mean J:", {k: round(v, 4) for k, v in means.items()})
