"""Fuzzing (issue 6): adversarial candidate sets through the engine, random trees through
JSON lines, random masks through the metrics.

Unlike tests/test_engine_properties.py (which always leaves one usable candidate and checks
the selection rule itself), candidate sets here may be unusable everywhere: NaN, inf,
negative or > 1 IoUs, negative occlusion on every row, every row identical. The engine must
either finish with its invariants intact or raise its one documented error for a frame with
no usable candidate, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scripted import CheckedMemory

from treemem import Engine, Prompt, TreememError, TreeRecord, load_strategy
from treemem.metrics import VideoEvaluator, objects_of, summarize
from treemem.types import MemoryContractError, PathwayQuery, ProposalOptions, Proposals

EPS = 1e-5  # sam2long's scoring eps
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IOU_VALUES = [0.0, 0.0, 1.0, 0.5, 0.5, 0.505, -0.25, 1.5, float("nan"), float("inf"),
              float("-inf")]
OCCLUSION_VALUES = [-8.0, -1.0, 0.0, 0.0, 2.0, 8.0, float("nan"), float("inf"), float("-inf")]


class Replay(CheckedMemory):
    """A backend replaying scripted (T, R, K) IoUs and (T, R) occlusion logits per object.

    Row r of a frame's batch for an object gets script row r mod R. It records how many rows each
    object was asked for on each frame, and refuses reads of released memory."""

    def __init__(self, scripts: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        num_frames = int(next(iter(scripts.values()))[0].shape[0])
        super().__init__(num_frames, (2, 2), prompt_occlusion=5.0)
        self.scripts = scripts
        self.asked: dict[tuple[int, int], int] = {}

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        assert isinstance(features, int)
        self.check_plans(queries)
        ious, occlusions = [], []
        for query in queries:
            row = self.asked.get((query.obj, features), 0)
            self.asked[(query.obj, features)] = row + 1
            iou, occlusion = self.scripts[query.obj]
            ious.append(iou[features, row % iou.shape[1]])
            occlusions.append(occlusion[features, row % iou.shape[1]])
        return Proposals(np.array(ious, np.float32), np.array(occlusions, np.float32))


@st.composite
def candidate_sets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(T, R, K) IoUs and (T, R) occlusion logits, with the adversarial shapes of issue 6."""
    frames, rows, k = draw(st.integers(2, 10)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    iou = draw(arrays(np.float32, (frames, rows, k), elements=st.one_of(
        st.sampled_from(IOU_VALUES), st.floats(0.0, 1.0, width=32))))
    occlusion = draw(arrays(np.float32, (frames, rows), elements=st.one_of(
        st.sampled_from(OCCLUSION_VALUES), st.floats(-6.0, 6.0, width=32))))
    shape = draw(st.sampled_from(["as drawn", "identical rows", "all negative", "all zero",
                                  "all tied"]))
    if shape == "identical rows":
        iou[:] = iou[:, :1]
        occlusion[:] = occlusion[:, :1]
    elif shape == "all negative":
        occlusion[:] = -np.abs(np.nan_to_num(occlusion, nan=1.0, posinf=1.0)) - 0.5
    elif shape == "all zero":
        iou[:] = 0.0
    elif shape == "all tied":
        iou[:] = 0.5
    return iou, occlusion


def script_row(
    script: tuple[np.ndarray, np.ndarray], frame: int, row: int
) -> tuple[np.ndarray, float]:
    """The (K,) IoUs and the occlusion logit `Replay` answers for `row` of `frame`."""
    iou, occlusion = script
    return iou[frame, row % iou.shape[1]], float(occlusion[frame, row % iou.shape[1]])


def scorable(iou_row: np.ndarray, occlusion: float, strategy: str, frame: int) -> np.ndarray:
    """(K,) which candidates of a row the engine may keep: finite IoU and logit, and (from
    the second tracked frame on, where sam2long scores ln(IoU + eps)) a finite score."""
    ok = np.isfinite(iou_row) & np.isfinite(occlusion)
    if strategy == "sam2long" and frame > 1:
        ok &= iou_row.astype(np.float64) + EPS > 0
    return ok


def run_engine(
    scripts: dict[int, tuple[np.ndarray, np.ndarray]], strategy: str, pathways: int,
    max_lag: int | None,
) -> tuple[Engine, Replay, list[tuple[int, int, int]], TreememError | None]:
    backend = Replay(scripts)
    overrides = {"pathways": pathways} if strategy == "sam2long" else {}
    engine = Engine(load_strategy(strategy, overrides), backend, max_lag=max_lag)
    prompts = [Prompt(obj, 0, mask=np.ones((2, 2), bool)) for obj in scripts]
    decided: list[tuple[int, int, int]] = []
    try:
        for decision in engine.run(prompts, range(backend.num_frames)):
            decided.append((decision.obj, decision.frame, decision.node))
    except MemoryContractError:
        raise
    except TreememError as error:
        return engine, backend, decided, error
    return engine, backend, decided, None


@FUZZ
@given(
    candidate_sets(),
    st.one_of(st.none(), candidate_sets()),
    st.sampled_from(["sam2long", "greedy"]),
    st.integers(1, 4),
    st.sampled_from([None, 0, 2]),
)
def test_engine_invariants_or_its_documented_error(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray] | None,
    strategy: str,
    pathways: int,
    max_lag: int | None,
) -> None:
    scripts = {1: first}
    same_frames_and_k = second is not None and second[0].shape[::2] == first[0].shape[::2]
    if second is not None and same_frames_and_k:
        scripts[2] = second  # one batch: both objects' rows share K
    engine, backend, decided, error = run_engine(scripts, strategy, pathways, max_lag)
    frames = first[0].shape[0]

    # Every frame the engine reached offered a usable candidate to some queried row, except
    # the one it stopped on with its error (a negative IoU is unusable under sam2long's log).
    blocked = [
        (obj, frame)
        for (obj, frame), rows in backend.asked.items()
        if not any(scorable(*script_row(scripts[obj], frame, r), strategy, frame).any()
                   for r in range(rows))
    ]
    if error is not None:
        assert "no usable candidate" in str(error), error
        assert blocked, f"error without a blocked frame: {error}"
        obj, frame = blocked[0]
        assert f"object {obj}, frame {frame}" in str(error)
        return
    assert not blocked

    record = engine.record
    cols = record.columns()
    capacity = pathways if strategy == "sam2long" else 1
    for obj in scripts:
        # Each frame decided exactly once, in order, and always a kept node of that frame.
        frames_of = [f for o, f, _ in decided if o == obj]
        assert sorted(frames_of) == list(range(frames)) and len(set(frames_of)) == frames
        for o, frame, node in decided:
            if o == obj:
                assert cols.kept[node] and cols.frame[node] == frame and cols.object[node] == obj
        for frame in range(1, frames):
            rows = (cols.object == obj) & (cols.frame == frame)
            kept = rows & cols.kept
            assert 1 <= kept.sum() <= capacity
            assert np.isfinite(cols.iou[kept]).all() and np.isfinite(cols.occlusion[kept]).all()
            assert sorted(cols.slot[kept].tolist()) == list(range(int(kept.sum())))
        # Exact mode: the online output is the final best pathway's masks (node ids may differ
        # where two pathways hold the same candidate of the same parent content).
        if max_lag is None:
            content = contents(record)
            online = {f: content[n] for o, f, n in decided if o == obj}
            assert online == {f: content[n] for f, n in record.best_path(obj).items()}
    # Every candidate left out for a NaN, an inf or an unscorable IoU is counted.
    assert engine.rejected == sum(
        int((~scorable(iou, occlusion, strategy, f)).sum())
        for (o, f), rows in backend.asked.items()
        for iou, occlusion in (script_row(scripts[o], f, r) for r in range(rows))
    )
    assert backend.held <= set(range(len(record)))  # released or still legitimately held


def contents(record: TreeRecord) -> dict[int, tuple[int, ...]]:
    """Each row's content: its root row and chain of candidate indices. Rows with the same
    content carry the same mask."""
    cols = record.columns()
    parents = record.parent_rows()
    out: dict[int, tuple[int, ...]] = {}
    for row in np.argsort(cols.frame, kind="stable").tolist():
        parent = int(parents[row])
        base = out[parent] if parent >= 0 else (row,)
        out[row] = (*base, int(cols.candidate[row]))
    return out


@FUZZ
@given(candidate_sets(), st.integers(1, 4), st.lists(st.integers(1, 9), max_size=2))
def test_engine_trees_round_trip_through_jsonl(
    script: tuple[np.ndarray, np.ndarray], pathways: int, reprompts: list[int]
) -> None:
    """Whatever the engine records (re-prompts included) loads back identically."""
    iou, occlusion = script
    iou = np.where(np.isfinite(iou) & (iou >= 0), iou, 0.3).astype(np.float32)  # all usable
    occlusion = np.where(np.isfinite(occlusion), occlusion, 1.0).astype(np.float32)
    backend = Replay({1: (iou, occlusion)})
    engine = Engine(load_strategy("sam2long", {"pathways": pathways}), backend)
    frames = sorted({0, *(f for f in reprompts if f < iou.shape[0])})
    list(engine.run([Prompt(1, f, mask=np.ones((2, 2), bool)) for f in frames],
                    range(backend.num_frames)))
    assert_round_trip(engine.record)


@st.composite
def random_trees(draw: st.DrawFn) -> TreeRecord:
    """Hand-built trees: any number of objects, frames and slots, any floats (NaN, inf)."""
    record = TreeRecord()
    floats = st.floats(allow_nan=True, allow_infinity=True)
    for obj in range(1, draw(st.integers(1, 3)) + 1):
        previous_slots = 0
        for frame in range(draw(st.integers(1, 6))):
            kept = draw(st.integers(1, 4))
            pruned = draw(st.integers(0, 4))
            n = kept + pruned
            parent = (np.full(n, -1) if previous_slots == 0 else
                      np.asarray(draw(st.lists(st.integers(0, previous_slots - 1),
                                               min_size=n, max_size=n))))
            record.append(
                obj=obj, frame=frame,
                slot=np.concatenate([np.arange(kept), np.full(pruned, -1)]).astype(np.int64),
                parent=parent.astype(np.int64),
                candidate=np.asarray(draw(st.lists(st.integers(-1, 5), min_size=n, max_size=n))),
                score=np.asarray(draw(st.lists(floats, min_size=n, max_size=n)), np.float64),
                iou=np.asarray(draw(st.lists(floats, min_size=n, max_size=n)), np.float64),
                occlusion=np.asarray(draw(st.lists(floats, min_size=n, max_size=n)), np.float64),
                kept=np.arange(n) < kept,
                parent_row=np.full(n, -1, np.int64),
            )
            previous_slots = kept
    return record


@FUZZ
@given(random_trees())
def test_random_trees_round_trip_through_jsonl(record: TreeRecord) -> None:
    path, loaded = save_and_load(record)
    # Saving what was loaded gives the same bytes.
    again = path.with_suffix(".again")
    loaded.save_jsonl(again)
    assert again.read_bytes() == path.read_bytes()


_TMP: list[Path] = []


def round_trip_path() -> Path:
    """A scratch file (hypothesis examples cannot take the function-scoped tmp_path)."""
    return _TMP[0] / "tree.jsonl"


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path) -> Iterable[None]:
    _TMP.insert(0, tmp_path)
    yield
    _TMP.pop(0)


def save_and_load(record: TreeRecord) -> tuple[Path, TreeRecord]:
    """Save `record` as JSON lines and load it back; every column must come back equal."""
    path = round_trip_path()
    record.save_jsonl(path)
    loaded = TreeRecord.load_jsonl(path)
    a, b = record.columns(), loaded.columns()
    for name in ("object", "frame", "slot", "parent", "candidate", "kept"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("score", "iou", "occlusion"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    return path, loaded


def assert_round_trip(record: TreeRecord) -> None:
    _, loaded = save_and_load(record)
    assert np.array_equal(record.parent_rows(), loaded.parent_rows())
    for obj in set(record.columns().object.tolist()):
        assert loaded.best_path(obj) == record.best_path(obj)


@FUZZ
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 12)),
           elements=st.sampled_from([0, 0, 1, 2, 3, 255])),
    st.data(),
)
def test_video_metrics_never_crash_and_stay_in_unit_interval(
    gt: np.ndarray, data: st.DataObject
) -> None:
    """Random id maps (empty frames, void 255, objects appearing late or only predicted)."""
    pred = data.draw(arrays(np.uint8, gt.shape, elements=st.sampled_from([0, 1, 2, 4])))
    evaluator = VideoEvaluator("fuzz")
    for t in range(gt.shape[0]):
        evaluator.add(f"{t:05d}", objects_of(gt[t]), objects_of(pred[t]), gt.shape[1:])
    scores = evaluator.result()
    for obj in scores.objects:
        for values in (obj.j, obj.f, obj.jf):
            assert ((values >= 0) & (values <= 1)).all()
        for stats in (obj.j_stats, obj.f_stats):
            assert 0 <= stats.mean <= 1 and 0 <= stats.recall <= 1 and -1 <= stats.decay <= 1
    if scores.objects:
        _, curve = scores.frame_curve()
        assert ((curve >= 0) & (curve <= 1)).all()
    summary = summarize(scores.objects)
    assert summary.objects == len(scores.objects)
    if scores.objects:
        assert 0 <= summary.jf <= 1 and 0 <= summary.j.recall <= 1
