"""`samurai` on a random-weight SAM 2 model, checked against SAMURAI's rules frame by frame
(candidate choice, Kalman filter phases, memory selection, boxes, the -1 presence threshold),
and runs with several objects and a re-prompt."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from treemem import Engine, Prompt, load_strategy
from treemem.strategies.samurai import KalmanFilter, box_iou, box_to_xyah, xyah_to_box
from treemem.strategy import StrategySet
from treemem.types import PathwayQuery, ProposalOptions, Proposals

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, build_random_model  # noqa: E402

KF = KalmanFilter()
SIZE = (180, 320)


def _reader(folder: Path) -> tuple[Any, int]:
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))
    return (lambda index: np.array(Image.open(files[index]).convert("RGB"))), len(files)


def _box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _model(seed: int) -> Any:
    """A random model whose IoU head is spread out (as the shared oracle's), so candidates
    differ in predicted IoU."""
    model = build_random_model(seed=seed, image_size=128)
    with torch.no_grad():
        model.sam_mask_decoder.iou_prediction_head.layers[2].weight *= 40.0
    return model


class Spy:
    """Records every propose call's queries and proposals."""

    def __init__(self, backend: Sam2Backend) -> None:
        self.calls: list[tuple[int, list[PathwayQuery], Proposals]] = []
        self.low_res: list[Any] = []
        self.original = backend.propose

        def propose(
            features: Any, queries: list[PathwayQuery], options: ProposalOptions
        ) -> Proposals:
            proposals = self.original(features, queries, options)
            self.calls.append((features.frame, list(queries), proposals))
            self.low_res.append(proposals.batch.low_res.clone())  # type: ignore[attr-defined]
            return proposals

        backend.propose = propose  # type: ignore[method-assign]


def _run(model: Any, folder: Path, strategy: StrategySet, prompts: list[Prompt]) -> tuple:
    read, num_frames = _reader(folder)
    backend = Sam2Backend(model, read, num_frames, SIZE)
    spy = Spy(backend)
    engine = Engine(strategy, backend)
    masks = {(d.frame, d.obj): (backend.mask_logits(d.node) > 0) for d in engine.run(prompts,
                                                                                     range(backend.num_frames))}
    return backend, spy, engine, masks


@pytest.mark.parametrize(
    ("seed", "weight", "reaches"),
    [(0, 0.25, "C"), (0, 0.9, "C"), (1, 0.25, "A")],  # seed 1's IoUs stay <= 0.3: B resets
)
def test_samurai_p1_follows_the_rules_frame_by_frame(
    cups_clip: Path, seed: int, weight: float, reaches: str
) -> None:
    strategy = load_strategy(
        "samurai", {"stable_frames_threshold": "3", "kf_score_weight": str(weight)}
    )
    _, spy, engine, masks = _run(
        _model(seed), cups_clip, strategy, [Prompt(1, 0, mask=_box_mask(60, 140, 40, 120))]
    )
    cols = engine.record.columns()
    frame_of = cols.frame
    mean = cov = None
    stable = 0
    stored: dict[int, tuple[float, float, float | None]] = {}
    phases = []
    for frame, queries, proposals in spy.calls:
        assert proposals.boxes is not None and len(queries) == 1
        iou, boxes, occlusion = proposals.iou[0], proposals.boxes[0], float(proposals.occlusion[0])

        # memory: the reference's scan (t-1 down to 2), t-1 always, last 6 at rank positions
        valid: list[int] = []
        for i in range(frame - 1, 1, -1):
            i_iou, i_occ, i_motion = stored[i]
            if i_iou > 0.5 and i_occ > 0 and (i_motion is None or i_motion > 0):
                valid.insert(0, i)
        if frame - 1 not in valid:
            valid.append(frame - 1)
        expected = [(0, 0)] + [
            (valid[t_pos - 7], 7 - t_pos)
            for t_pos in range(1, 7)
            if t_pos - 7 >= -len(valid) and valid[t_pos - 7] != 0
        ]
        plan = queries[0].plan
        assert [(int(frame_of[r.node]), r.position) for r in plan.spatial] == expected, frame
        assert all(r.weight == 1.0 for r in plan.spatial + plan.pointers)

        # candidate choice and filter, as the reference mutates its single filter
        tau = np.float32(0.3)
        motion = None
        if mean is None or stable == 0:
            phases.append("A")
            best = int(np.argmax(iou))
            mean, cov = KF.initiate(box_to_xyah(boxes[best]))
            stable = 1
        elif stable < 3:
            phases.append("B")
            mean, cov = KF.predict(mean, cov)
            best = int(np.argmax(iou))
            if iou[best] > tau:
                mean, cov = KF.update(mean, cov, box_to_xyah(boxes[best]))
                stable += 1
            else:
                stable = 0
        else:
            phases.append("C")
            mean, cov = KF.predict(mean, cov)
            motions = np.array([box_iou(b, xyah_to_box(mean)) for b in boxes])
            best = int(np.argmax(weight * motions + (1 - weight) * iou.astype(np.float64)))
            motion = float(motions[best])
            if iou[best] < tau:
                stable = 0
            else:
                mean, cov = KF.update(mean, cov, box_to_xyah(boxes[best]))
        kept = np.flatnonzero((cols.frame == frame) & cols.kept)
        assert kept.size == 1 and int(cols.candidate[kept[0]]) == best, frame
        stored[frame] = (float(iou[best]), occlusion, motion)

        # each box is its candidate's: logits upsampled to the input grid, pixels > 0
        low_res = spy.low_res[len(phases) - 1]
        high = torch.nn.functional.interpolate(
            low_res, size=(128, 128), mode="bilinear", align_corners=False
        )[0]
        for k in range(3):
            ys, xs = torch.nonzero(high[k] > 0, as_tuple=True)
            box = [0, 0, 0, 0] if ys.numel() == 0 else [
                int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
            ]
            assert boxes[k].tolist() == box, frame
    assert phases[0] == "A" and reaches in phases[1:]
    assert len(masks) == 12


def test_presence_threshold_keeps_masks_and_pointer_above_minus_one(cups_clip: Path) -> None:
    """With every occlusion logit at -0.5: SAM 2 (threshold 0) empties the masks and uses the
    no-object pointer; SAMURAI (-1) keeps both (the memory encoder keeps sam2's o <= 0 rule,
    which the backend leaves to sam2's own `_encode_new_memory`)."""
    model = _model(0)
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-0.5)
    prompt = [Prompt(1, 0, mask=_box_mask(60, 140, 40, 120))]
    greedy = _run(model, cups_clip, load_strategy("greedy"), prompt)
    samurai = _run(model, cups_clip, load_strategy("samurai"), prompt)
    no_obj_ptr = model.no_obj_ptr
    for (backend, spy, engine, masks), present in ((greedy, False), (samurai, True)):
        assert all(float(p.occlusion.max()) == -0.5 for _, _, p in spy.calls)
        node = int(np.flatnonzero(engine.record.columns().frame == 11)[0])
        stored = backend._memory(node)
        assert bool((stored.low_res_mask > 0).any()) is present
        assert bool(torch.equal(stored.pointer, no_obj_ptr)) is not present
        assert any(masks[(f, 1)].any() for f in range(1, 12)) is present


@pytest.mark.parametrize(
    "prompt",
    [
        Prompt(1, 0, box=(40.0, 60.0, 120.0, 140.0)),
        Prompt(1, 0, points=((80.0, 100.0),), labels=(1,)),
    ],
    ids=["box", "click"],
)
def test_presence_threshold_holds_on_a_decoded_prompt_frame(
    cups_clip: Path, prompt: Prompt
) -> None:
    """A box or click prompt is decoded by the mask decoder like a tracking frame: at
    occlusion logit -0.5, SAM 2's rule (0) empties its mask and sets the no-object pointer,
    SAMURAI's (-1) keeps both; at 0 the prompt is sam2's own `_track_step`, bit for bit."""
    model = _model(0)
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-0.5)
    read, num_frames = _reader(cups_clip)
    backend = Sam2Backend(model, read, num_frames, SIZE)
    features = backend.encode(0)
    plain = backend.prompt(features, prompt, 0, ProposalOptions())
    samurai = backend.prompt(features, prompt, 1, ProposalOptions(presence_threshold=-1.0))
    assert plain.occlusion == samurai.occlusion == np.float32(-0.5)
    assert (plain.box is None) == (samurai.box is None) == (prompt.box is not None)
    sam2_rule, samurai_rule = backend._memory(0), backend._memory(1)
    assert not (sam2_rule.low_res_mask > 0).any() and (samurai_rule.low_res_mask > 0).any()
    assert torch.equal(sam2_rule.pointer, model.no_obj_ptr)
    assert not torch.equal(samurai_rule.pointer, model.no_obj_ptr)

    @torch.inference_mode()
    def sam2_prompt() -> Any:
        _, outputs, _, _ = model._track_step(
            frame_idx=0,
            is_init_cond_frame=True,
            current_vision_feats=features.vision_feats,
            current_vision_pos_embeds=features.vision_pos,
            feat_sizes=features.feat_sizes,
            point_inputs=backend._point_inputs(prompt),
            mask_inputs=None,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=num_frames,
            track_in_reverse=False,
            prev_sam_mask_logits=None,
        )
        return outputs

    outputs = sam2_prompt()
    with torch.no_grad():
        head.bias.fill_(0.5)
    present = backend.prompt(features, prompt, 2, ProposalOptions())
    again = sam2_prompt()
    for node, out, result in ((0, outputs, plain), (2, again, present)):
        stored = backend._memory(node)
        assert torch.equal(stored.low_res_mask, out[3]) and torch.equal(stored.pointer, out[5])
        assert result.iou == float(out[2].max())


def test_threshold_zero_and_no_boxes_leave_proposals_unchanged(cups_clip: Path) -> None:
    read, num_frames = _reader(cups_clip)
    model = _model(2)
    backend = Sam2Backend(model, read, num_frames, SIZE)
    engine = Engine(load_strategy("greedy"), backend)
    spy = Spy(backend)
    for decision in engine.run([Prompt(1, 0, mask=_box_mask(60, 140, 40, 120))],
                               range(backend.num_frames)):
        if decision.frame >= 3:
            break
    frame, queries, first = spy.calls[-1]
    features = backend.encode(frame)
    again = spy.original(features, queries, ProposalOptions(boxes=True, presence_threshold=0.0))
    assert first.boxes is None and again.boxes is not None and again.boxes.shape == (1, 3, 4)
    assert np.array_equal(first.iou, again.iou) and np.array_equal(first.occlusion, again.occlusion)


@pytest.mark.parametrize("name", ["samurai", "samurai-tree"])
def test_samurai_runs_several_objects_and_a_reprompt(cups_clip: Path, name: str) -> None:
    strategy = load_strategy(name, {"stable_frames_threshold": "2"})
    phases: list[tuple[int, str]] = []
    model = strategy.pathway_model
    assert model is not None

    @dataclasses.dataclass(frozen=True)
    class Recorder:
        def start(self, prompt: Any) -> object:
            return model.start(prompt)

        def step(self, state: Any, iou: Any, boxes: Any, occlusion: float) -> Any:
            step = model.step(state, iou, boxes, occlusion)
            phases.append((current[0], step.phase))
            return step

    current = [0]
    recorded = dataclasses.replace(strategy, pathway_model=Recorder())
    prompts = [
        Prompt(1, 0, mask=_box_mask(60, 140, 40, 120)),
        Prompt(2, 0, mask=_box_mask(30, 100, 180, 300)),
        Prompt(1, 6, mask=_box_mask(70, 150, 60, 140)),
    ]
    read, num_frames = _reader(cups_clip)
    backend = Sam2Backend(_model(3), read, num_frames, SIZE)
    engine = Engine(recorded, backend)
    original = backend.propose

    def propose(
        features: Any, queries: list[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        current[0] = features.frame
        return original(features, queries, options)

    backend.propose = propose  # type: ignore[method-assign]
    decisions = list(engine.run(prompts, range(backend.num_frames)))
    assert sorted((d.frame, d.obj) for d in decisions) == [
        (f, o) for f in range(12) for o in (1, 2)
    ]
    by_frame: dict[int, list[str]] = {}
    for frame, phase in phases:
        by_frame.setdefault(frame, []).append(phase)
    rows = strategy.pathways
    # frame 1: both objects start (A); frame 6: object 1 re-prompted, only object 2 tracked;
    # frame 7: object 1 starts again at A (its pathways come first)
    assert by_frame[1] == ["A", "A"]
    assert len(by_frame[6]) == rows
    # object 1 was stable before its re-prompt, and restarts at A right after it
    assert by_frame[5][0] == "C" and by_frame[7][0] == "A"
