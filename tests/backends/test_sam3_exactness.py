"""The SAM 3 backend equals SAM 3's own video tracker, mask logits bit for bit.

The reference is the sam3 package's `Sam3TrackerPredictor` (add_new_mask, then
propagate_in_video), with selection off (treemem's `greedy`) and on (`sam3-memory`), on one
object, with a seeded reduced random-weight model built from the package's own classes (2 ViT
blocks, 128 wide, 112 px). The predictor hard-codes CUDA in a few places (`.cuda()` on
memories and frames, pinned memory for pointer positions, a CUDA storage device): this test,
and only this test, makes `Tensor.cuda` and `Tensor.pin_memory` return the tensor itself while
the reference runs, and asks for CPU storage. Both sides read the same preprocessed frames
(the backend's `image`), so what is compared is the tracker.

Random weights give occlusion logits near 0.2 and frame scores near 0.05, so SAM 3's default
threshold (0.01) keeps every frame; the rule is also run with a threshold at the median score
(some frames dropped), and with the object-score head scaled and biased so the object is
absent on some frames (score 0) at thresholds 0 and -0.5 (every frame eligible again).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from treemem import Engine, Prompt, load_strategy
from treemem.strategies.sam3_memory import frame_score
from treemem.types import MemoryEntry

torch = pytest.importorskip("torch")
pytest.importorskip("sam3", reason="sam3 is not installed (pip install 'treemem[sam3]')")

from treemem.backends.sam3 import (  # noqa: E402
    Sam3Backend,
    Sam3Tracker,
    build_random_model,
    small_config,
)
from treemem.backends.sam3.loading import (  # noqa: E402
    VISION_PREFIX,
    build_memory_attention,
    build_memory_encoder,
    build_vision,
    tracker_options,
)
from treemem.backends.synthetic_video import make_video  # noqa: E402

NUM_FRAMES = 20


@pytest.fixture(scope="module")
def video(sam3_threads: None) -> Any:
    return make_video(3, num_frames=NUM_FRAMES, height=72, width=96)


def reference_predictor(model: Sam3Tracker, selection: bool, mf_threshold: float) -> Any:
    """SAM 3's tracking predictor with `model`'s weights, as SAM 3's `build_tracker` sets it up
    (its predictor-only settings included), on the CPU."""
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor
    from sam3.model.vl_combiner import SAM3VLBackbone

    config = model.config
    options = tracker_options(config) | {
        "use_memory_selection": selection, "mf_threshold": mf_threshold,
    }
    predictor = Sam3TrackerPredictor(
        backbone=SAM3VLBackbone(visual=build_vision(config), text=None, scalp=1),
        transformer=build_memory_attention(config),
        maskmem_backbone=build_memory_encoder(config),
        clear_non_cond_mem_around_input=True,
        fill_hole_area=0,
        always_start_from_first_ann_frame=False,
        non_overlap_masks_for_output=False,
        **options,
    )
    state = {
        "backbone.vision_backbone." + key[len(VISION_PREFIX):]: value
        for key, value in model.checkpoint_state().items()
        if key.startswith(VISION_PREFIX)
    }
    state |= model.tracker.state_dict()
    predictor.load_state_dict(state, strict=True)
    return predictor.eval()


def reference_logits(
    model: Sam3Tracker, video: Any, mask: np.ndarray, monkeypatch: pytest.MonkeyPatch, *,
    selection: bool, mf_threshold: float = 0.01,
) -> dict[int, Any]:
    """Frame -> (H, W) video-resolution logits from SAM 3's own predictor."""
    predictor = reference_predictor(model, selection, mf_threshold)
    frames = Sam3Backend(model, lambda i: video.frames[i], NUM_FRAMES, mask.shape)
    images = torch.cat([frames.images.image(i) for i in range(NUM_FRAMES)])
    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
        patch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)
        state = predictor.init_state(
            video_height=mask.shape[0], video_width=mask.shape[1], num_frames=NUM_FRAMES,
            offload_state_to_cpu=True,
        )
        state["images"] = images
        predictor.add_new_mask(state, 0, 1, torch.from_numpy(mask))
        out = {}
        for frame, _, _, video_res, _ in predictor.propagate_in_video(
            state, start_frame_idx=0, max_frame_num_to_track=NUM_FRAMES, reverse=False,
            tqdm_disable=True, propagate_preflight=True,
        ):
            out[frame] = video_res[0, 0].clone()
    return out


def treemem_run(
    model: Sam3Tracker, video: Any, mask: np.ndarray, strategy: str,
    overrides: dict[str, object] | None = None,
) -> tuple[dict[int, Any], list[MemoryEntry]]:
    """Frame -> (H, W) logits from the SAM 3 backend, and the kept entry of each tracked frame
    (its IoU and occlusion logit, what SAM 3's score reads)."""
    backend = Sam3Backend(model, lambda i: video.frames[i], NUM_FRAMES, mask.shape)
    engine = Engine(load_strategy(strategy, overrides), backend)
    logits = {
        d.frame: torch.from_numpy(backend.mask_logits(d.node))
        for d in engine.run([Prompt(1, 0, mask=mask)], range(NUM_FRAMES))
    }
    columns = engine.record.columns()
    kept = np.flatnonzero(columns.kept & (columns.frame > 0))
    entries = [
        MemoryEntry(int(i), int(columns.frame[i]), float(columns.iou[i]),
                    float(columns.occlusion[i]))
        for i in kept
    ]
    return logits, entries


def assert_bitwise(ours: dict[int, Any], reference: dict[int, Any]) -> None:
    assert sorted(ours) == sorted(reference) == list(range(NUM_FRAMES))
    for frame in range(NUM_FRAMES):
        assert torch.equal(ours[frame], reference[frame]), f"frame {frame} differs"


def test_greedy_equals_sam3_tracker_without_selection(
    video: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_random_model(small_config(112), seed=0)
    mask = video.object_mask(1, 0)
    ours, _ = treemem_run(model, video, mask, "greedy")
    assert_bitwise(ours, reference_logits(model, video, mask, monkeypatch, selection=False))


def test_sam3_memory_equals_sam3_tracker_with_selection(
    video: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At SAM 3's threshold (every random-weight frame eligible), and at the median score,
    where the rule drops about half the frames."""
    model = build_random_model(small_config(112), seed=0)
    mask = video.object_mask(1, 0)
    ours, entries = treemem_run(model, video, mask, "sam3-memory")
    scores = [frame_score(e) for e in entries]
    assert min(scores) > 0.01
    assert_bitwise(ours, reference_logits(model, video, mask, monkeypatch, selection=True))
    greedy, _ = treemem_run(model, video, mask, "greedy")
    assert any(not torch.equal(ours[f], greedy[f]) for f in range(NUM_FRAMES))

    median = float(np.median(scores))
    ours, entries = treemem_run(model, video, mask, "sam3-memory", {"mf_threshold": median})
    scores = [frame_score(e) for e in entries]
    assert min(scores) <= median < max(scores)
    assert_bitwise(ours, reference_logits(
        model, video, mask, monkeypatch, selection=True, mf_threshold=median
    ))


def test_sam3_memory_equals_sam3_tracker_when_the_object_is_absent(
    video: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object-score head's last layer scaled up (random weights move its logit by
    thousandths between frames) and its bias moved to the median logit of a greedy run, so the
    object is absent (logit <= 0, score 0) on some frames: threshold 0 keeps exactly the
    present frames; a negative threshold keeps every frame."""
    model = build_random_model(small_config(112), seed=0)
    mask = video.object_mask(1, 0)
    head = model.tracker.sam_mask_decoder.pred_obj_score_head.layers[-1]
    with torch.no_grad():
        head.weight *= 300.0
        _, entries = treemem_run(model, video, mask, "greedy")
        head.bias -= float(np.median([e.occlusion for e in entries]))
    ours, entries = treemem_run(model, video, mask, "sam3-memory", {"mf_threshold": 0.0})
    scores = [frame_score(e) for e in entries]
    assert 0.0 in scores and max(scores) > 0.0
    assert_bitwise(ours, reference_logits(
        model, video, mask, monkeypatch, selection=True, mf_threshold=0.0
    ))
    ours, _ = treemem_run(model, video, mask, "sam3-memory", {"mf_threshold": -0.5})
    assert_bitwise(ours, reference_logits(
        model, video, mask, monkeypatch, selection=True, mf_threshold=-0.5
    ))
