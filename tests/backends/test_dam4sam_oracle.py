"""`dam4sam` equals the published DAM4SAM tracker, frame by frame, on the shared case.

The case (../shared/oracle/dam4sam/README.md): SAM 2.1 tiny with random weights from seed
11 (the checkpoint is rebuilt by the case's own script and checked by its sha256), 16 frames
at the model's size, a mask prompt on frame 0, and a decoder shim keyed by the frame being
decoded that makes the distractor memory fire on frames 2 and 12 and exercises every gate
(no size ratio, absent, spacing, low IoU, a 1.5x area, a near alternative, alternatives
inside the mask, IoU exactly float32(0.8), occlusion logit exactly 0).

The shim fixes masks and choices; what reveals a wrong memory read are the object pointers
(the output tokens are never replaced) and the 1e-3 x real part of the low-res logits, both
computed by memory attention over the frames the rule selected. They are compared within
POINTER_ATOL and LOGIT_ATOL, set a little above the largest difference measured here
(reported by the test's message when it fails).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oracle import ProposeLog, frame_of_call, load_module

from treemem import Engine, Prompt, load_strategy
from treemem.strategies.dam4sam import DistractorStep
from treemem.strategy import Promotion, PromotionStep
from treemem.types import MaskStats, MemoryHistory, PromptResult

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, load_checkpoint  # noqa: E402
from treemem.backends.sam2.loading import build_model  # noqa: E402

ORACLE = Path(__file__).resolve().parents[3] / "shared" / "oracle" / "dam4sam"
CASE = ORACLE / "case"
CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
POINTER_ATOL = 5e-7
LOGIT_ATOL = 2e-6
GATES = {"added": 0, "iou": 1, "size": 2, "empty": 3, "spacing": 4, "no alternative": 5, "box": 6}


@dataclasses.dataclass
class Run:
    """Per-frame quantities of one treemem run, laid out as the trace's arrays."""

    chosen: np.ndarray
    ious: np.ndarray
    occlusion: np.ndarray
    area: np.ndarray
    area_lowres: np.ndarray
    boxes: np.ndarray
    ratio: np.ndarray
    gate: np.ndarray
    box_ious: np.ndarray
    cond_frames: list[list[int]]
    sel_cond: list[list[int]]
    mem_frames: list[list[int]]
    mem_tpos: list[list[int]]
    ram_frames: list[list[int]]
    ptr_frames: list[list[int]]
    ptr_pos: np.ndarray
    lowres: np.ndarray
    pointers: np.ndarray
    masks: np.ndarray


def _model(tmp: Path) -> Any:
    """The case's checkpoint, rebuilt by its own script (which checks the sha256), loaded
    into the tiny model at the case's image size."""
    case = json.loads((CASE / "case.json").read_text())
    checkpoint = tmp / "dam4sam_case.pt"
    done = subprocess.run(
        [sys.executable, ORACLE / "make_checkpoint.py", CASE / "case.json", checkpoint],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    model = build_model(CONFIG, image_size=int(case["image_size"]))
    load_checkpoint(model, checkpoint, CONFIG)
    return model


def _padded(rows: list[list[int]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), -1)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def run_case(name: str, overrides: dict[str, str], model: Any) -> Run:
    from PIL import Image

    files = sorted((CASE / "frames").glob("*.jpg"))

    def read(index: int) -> np.ndarray:
        return np.array(Image.open(files[index]).convert("RGB"))

    size = read(0).shape[:2]
    frames = len(files)
    backend = Sam2Backend(model, read, frames, size)
    shim = load_module(ORACLE / "decoder_shim.py", "dam4sam_oracle_shim")
    original = shim.install(
        model.sam_mask_decoder,
        frame_of_call(backend),
        shim.load_schedule(str(CASE / "shim.json")),
    )
    log = ProposeLog.install(backend)
    committed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    commit = backend.commit

    def keep_pointers(features: Any, proposals: Any, commits: Any) -> None:
        commit(features, proposals, commits)
        for c in commits:
            pointer = backend.pointer(c.node)[0].float().numpy()
            committed[c.node] = (pointer, proposals.batch.low_res[0].float().numpy())

    backend.commit = keep_pointers  # type: ignore[method-assign]

    strategy = load_strategy(name, overrides)
    gate = strategy.promotion
    assert gate is not None
    steps: dict[int, DistractorStep] = {}

    @dataclasses.dataclass(frozen=True)
    class Recorder:
        def start(self, prompt: PromptResult) -> object:
            return gate.start(prompt)

        def step(
            self, state: object, frame: int, iou: Any, occlusion: float, stats: MaskStats
        ) -> PromotionStep:
            step = gate.step(state, frame, iou, occlusion, stats)
            assert isinstance(step, DistractorStep)
            steps[frame] = step
            return step

    recorder: Promotion = Recorder()
    engine = Engine(dataclasses.replace(strategy, promotion=recorder), backend)
    histories: dict[int, MemoryHistory] = {}
    propose = backend.propose

    def note_history(features: Any, queries: Any, options: Any) -> Any:
        histories[features.frame] = engine.beams[1].best.history  # what recall read
        return propose(features, queries, options)

    backend.propose = note_history  # type: ignore[method-assign]
    mask = np.array(Image.open(CASE / "mask0.png")) > 0
    run = Run(
        chosen=np.full(frames, -1),
        ious=np.full((frames, 3), np.nan),
        occlusion=np.full(frames, np.nan),
        area=np.zeros(frames, np.int64),
        area_lowres=np.zeros(frames, np.int64),
        boxes=np.full((frames, 3, 4), -1),
        ratio=np.full(frames, np.nan),
        gate=np.full(frames, -1),
        box_ious=np.full((frames, 2), np.nan),
        cond_frames=[[] for _ in range(frames)],
        sel_cond=[[] for _ in range(frames)],
        mem_frames=[[] for _ in range(frames)],
        mem_tpos=[[] for _ in range(frames)],
        ram_frames=[[] for _ in range(frames)],
        ptr_frames=[[] for _ in range(frames)],
        ptr_pos=np.full((frames, 16), np.nan),
        lowres=np.full((frames, 3, 64, 64), np.nan, np.float32),
        pointers=np.full((frames, 256), np.nan, np.float32),
        masks=np.zeros((frames, *size), bool),
    )
    try:
        for decision in engine.run([Prompt(1, 0, mask=mask)], range(frames)):
            run.masks[decision.frame] = backend.mask_logits(decision.node) > 0
    finally:
        model.sam_mask_decoder.forward = original

    frame_of = engine.record.columns().frame
    columns = engine.record.columns()
    for frame, queries, proposals in log.calls:
        assert len(queries) == 1 and proposals.stats is not None
        plan = queries[0].plan
        kept = np.flatnonzero((columns.frame == frame) & columns.kept)
        assert kept.size == 1
        node, k = int(kept[0]), int(columns.candidate[kept[0]])
        run.chosen[frame] = k
        history = histories[frame]
        run.cond_frames[frame] = [e.frame for e in history.conditioning] + [
            e.frame for e in history.recent if e.promoted
        ]
        run.ious[frame] = proposals.iou[0]
        run.occlusion[frame] = proposals.occlusion[0]
        run.area[frame] = proposals.stats.area[0, k]
        run.area_lowres[frame] = proposals.stats.area_lowres[0, k]
        run.boxes[frame] = proposals.stats.boxes[0]
        decision = steps[frame].decision(k)
        run.gate[frame] = GATES[decision.gate]
        run.ratio[frame] = decision.size_ratio
        run.box_ious[frame, : len(decision.box_ious)] = decision.box_ious
        conditioning = [r for r in plan.spatial if r.position == 0]
        recent = [r for r in plan.spatial if r.position > 0]
        run.sel_cond[frame] = [int(frame_of[r.node]) for r in conditioning]
        run.ram_frames[frame] = [int(frame_of[r.node]) for r in recent]
        run.mem_frames[frame] = [int(frame_of[r.node]) for r in plan.spatial]
        # SAM 2's temporal encoding index: 6 for conditioning, rank - 1 for the others
        run.mem_tpos[frame] = [6 if r.position == 0 else r.position - 1 for r in plan.spatial]
        run.ptr_frames[frame] = [int(frame_of[r.node]) for r in plan.pointers]
        assert plan.pointer_span is not None
        t_diff_max = np.float32(min(plan.pointer_span, 16) - 1)
        positions = np.array([r.position for r in plan.pointers], np.float32) / t_diff_max
        run.ptr_pos[frame, : positions.size] = positions
        run.pointers[frame], run.lowres[frame] = committed[node]
    return run


@pytest.fixture(scope="module")
def trace(torch_threads: None) -> dict[str, np.ndarray]:
    if not (CASE / "trace.npz").is_file():
        pytest.skip("the shared DAM4SAM oracle case is not present")
    with np.load(CASE / "trace.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def model(trace: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _model(tmp_path_factory.mktemp("dam4sam"))


@pytest.fixture(scope="module")
def dam4sam(model: Any) -> Run:
    return run_case("dam4sam", {}, model)


def test_dam4sam_equals_the_reference_on_every_frame(
    dam4sam: Run, trace: dict[str, np.ndarray]
) -> None:
    run = dam4sam
    frames = trace["masks"].shape[0]
    tracked = slice(1, frames)

    # the shim's numbers and the candidates it paints
    assert np.array_equal(run.ious[tracked], trace["ious"][tracked].astype(np.float32))
    assert np.array_equal(run.occlusion[tracked], trace["obj_logit"][tracked].astype(np.float32))
    # boxes: the trace writes -1 for an empty candidate, treemem [0, 0, 0, 0] (MaskStats)
    empty = (trace["cand_boxes"] == -1).all(axis=-1)
    assert np.array_equal(run.boxes[~empty], trace["cand_boxes"][~empty])
    assert not run.boxes[tracked][empty[tracked]].any()
    assert run.chosen[tracked].tolist() == trace["chosen"][tracked].tolist()
    assert run.area[tracked].tolist() == trace["n_pix_video"][tracked].tolist()
    assert run.area_lowres[tracked].tolist() == trace["n_pix_lowres"][tracked].tolist()

    # the distractor memory's decision: size ratio, the gate that failed or the addition
    np.testing.assert_allclose(run.ratio[tracked], trace["size_ratio"][tracked], rtol=0, atol=1e-12)
    assert run.gate[tracked].tolist() == trace["gate"][tracked].tolist()
    np.testing.assert_allclose(run.box_ious, trace["alt_box_ious"], rtol=0, atol=1e-12)
    assert (run.gate == 0).astype(int).tolist()[1:] == trace["added"][1:].tolist()

    # memory: conditioning frames, the selected ones in order, RAM, tpos, pointers
    assert np.array_equal(_padded(run.cond_frames, 8)[tracked], trace["cond_frames"][tracked])
    assert np.array_equal(_padded(run.sel_cond, 4), trace["sel_cond"])
    assert np.array_equal(_padded(run.ram_frames, 7), trace["ram_frames"])
    assert np.array_equal(_padded(run.mem_frames, 8), trace["mem_frames"])
    assert np.array_equal(_padded(run.mem_tpos, 8), trace["mem_tpos"])
    assert np.array_equal(_padded(run.ptr_frames, 16), trace["ptr_frames"])
    np.testing.assert_allclose(run.ptr_pos, trace["ptr_pos"], rtol=0, atol=1e-7)

    # the masks, pixel for pixel
    for frame in range(frames):
        assert np.array_equal(run.masks[frame], trace["masks"][frame]), frame

    # what memory attention read: pointers and the model's own part of the low-res logits
    pointer_gap = np.abs(run.pointers[tracked] - trace["obj_ptr"][tracked])
    logit_gap = np.abs(run.lowres[tracked] - trace["lowres_logits"][tracked])
    worst = f"largest differences: pointer {pointer_gap.max():.3g}, logits {logit_gap.max():.3g}"
    assert pointer_gap.max() <= POINTER_ATOL, worst
    assert logit_gap.max() <= LOGIT_ATOL, worst


def test_dam4sam_tree_with_one_pathway_makes_the_same_choices(dam4sam: Run, model: Any) -> None:
    tree = run_case("dam4sam-tree", {"P": "1"}, model)
    assert tree.chosen.tolist() == dam4sam.chosen.tolist()
    assert tree.gate.tolist() == dam4sam.gate.tolist()
    assert tree.mem_frames == dam4sam.mem_frames and tree.ptr_frames == dam4sam.ptr_frames
    assert np.array_equal(tree.pointers, dam4sam.pointers, equal_nan=True)
    assert np.array_equal(tree.masks, dam4sam.masks)
