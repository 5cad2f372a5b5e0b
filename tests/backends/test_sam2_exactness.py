"""The exactness tests: `greedy` equals sam2's own video predictor, the batched pass equals
pathways computed alone, and `sam2long` equals the published reference (shared oracle)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from treemem import Engine, Prompt, load_strategy
from treemem.types import ProposalOptions

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, build_random_model  # noqa: E402


def _reader(folder: Path) -> tuple[Callable[[int], np.ndarray], int, tuple[int, int]]:
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))

    def read(index: int) -> np.ndarray:
        return np.array(Image.open(files[index]).convert("RGB"))

    first = read(0)
    return read, len(files), (first.shape[0], first.shape[1])


def _sam2_predictor_masks(
    model: object, folder: Path, prompts: list[Prompt]
) -> dict[tuple[int, int], np.ndarray]:
    state = model.init_state(video_path=str(folder))  # type: ignore[attr-defined]
    for prompt in sorted(prompts, key=lambda p: (p.frame, p.obj)):
        model.add_new_mask(state, prompt.frame, prompt.obj, prompt.mask)  # type: ignore[attr-defined]
    out = {}
    for frame, obj_ids, logits in model.propagate_in_video(state):  # type: ignore[attr-defined]
        for i, obj in enumerate(obj_ids):
            out[(frame, obj)] = (logits[i, 0] > 0).cpu().numpy()
    return out


def _treemem_masks(
    model: object, folder: Path, prompts: list[Prompt], strategy: str = "greedy"
) -> tuple[dict[tuple[int, int], np.ndarray], Sam2Backend, Engine]:
    read, num_frames, size = _reader(folder)
    backend = Sam2Backend(model, read, num_frames, size)
    engine = Engine(load_strategy(strategy), backend)
    masks = {(d.frame, d.obj): (backend.mask_logits(d.node) > 0) for d in engine.run(prompts,
                                                                                     range(backend.num_frames))}
    return masks, backend, engine


def _box_mask(size: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_greedy_equals_sam2_predictor_one_object_bitwise(oracle_frames: tuple) -> None:
    folder, read, mask = oracle_frames
    model = build_random_model(seed=0, image_size=256)
    state = model.init_state(video_path=str(folder))
    model.add_new_mask(state, 0, 1, mask)
    reference = {f: logits[0, 0].clone() for f, _, logits in model.propagate_in_video(state)}
    backend = Sam2Backend(model, read, 10, mask.shape)
    engine = Engine(load_strategy("greedy"), backend)
    decisions = list(engine.run([Prompt(1, 0, mask=mask)], range(backend.num_frames)))
    assert [d.frame for d in decisions] == list(range(10))
    for decision in decisions:
        logits = torch.nn.functional.interpolate(
            backend.logits(decision.node), size=mask.shape, mode="bilinear", align_corners=False
        )[0, 0]
        assert torch.equal(logits, reference[decision.frame]), decision.frame


def test_greedy_equals_sam2_predictor_two_objects_and_reprompt(cups_clip: Path) -> None:
    size = (180, 320)
    prompts = [
        Prompt(1, 0, mask=_box_mask(size, 60, 140, 40, 120)),
        Prompt(2, 0, mask=_box_mask(size, 30, 100, 180, 300)),
        Prompt(1, 6, mask=_box_mask(size, 70, 150, 60, 140)),
    ]
    model = build_random_model(seed=2, image_size=256)
    expected = _sam2_predictor_masks(model, cups_clip, prompts)
    ours, _, _ = _treemem_masks(model, cups_clip, prompts)
    assert set(ours) == set(expected) and len(ours) == 24
    for key in expected:
        assert np.array_equal(ours[key], expected[key]), key


def test_objects_batched_equal_separate_runs(cups_clip: Path) -> None:
    size = (180, 320)
    first = Prompt(1, 0, mask=_box_mask(size, 60, 140, 40, 120))
    second = Prompt(2, 0, mask=_box_mask(size, 30, 100, 180, 300))
    model = build_random_model(seed=4, image_size=128)
    together, _, _ = _treemem_masks(model, cups_clip, [first, second], "sam2long")
    alone_1, _, _ = _treemem_masks(model, cups_clip, [first], "sam2long")
    alone_2, _, _ = _treemem_masks(model, cups_clip, [second], "sam2long")
    for (frame, obj), mask in together.items():
        alone = (alone_1 if obj == 1 else alone_2)[(frame, obj)]
        assert np.mean(mask == alone) >= 0.999


def test_batched_pathways_equal_each_pathway_alone(cups_clip: Path) -> None:
    """The search's real plans at a branching frame, proposed together and one by one."""
    read, num_frames, size = _reader(cups_clip)
    model = build_random_model(seed=5, image_size=128)
    backend = Sam2Backend(model, read, num_frames, size)
    engine = Engine(load_strategy("sam2long", {"delta_conf": 100.0}), backend)
    captured: list[tuple[object, list]] = []
    original = backend.propose

    def spy(features: object, queries: list, options: ProposalOptions) -> object:
        captured.append((features, list(queries)))
        return original(features, queries, options)

    backend.propose = spy  # type: ignore[method-assign]
    for decision in engine.run([Prompt(1, 0, mask=_box_mask(size, 60, 140, 40, 120))],
                               range(backend.num_frames)):
        if decision.frame >= 4:
            break
    features, queries = next((f, q) for f, q in reversed(captured) if len(q) == 3)
    options = ProposalOptions()
    together = original(features, queries, options)
    for row, query in enumerate(queries):
        alone = original(features, [query], options)
        np.testing.assert_allclose(alone.iou[0], together.iou[row], atol=1e-5)
        np.testing.assert_allclose(alone.occlusion[0], together.occlusion[row], atol=1e-4)
    twice = original(features, queries + queries, options)
    np.testing.assert_array_equal(twice.iou[:3], twice.iou[3:])
    np.testing.assert_array_equal(twice.iou[:3], together.iou)


ORACLE = Path(__file__).resolve().parents[3] / "shared" / "oracle"
ORACLE_SHA = "b98cc05e28b342a5c48abf723e2e3d0c9f89116cc4b17d510bfc7f083e601d6f"


def _oracle_checkpoint(path: Path) -> Path:
    """Rebuild the oracle's random-weight checkpoint exactly as its script does."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(1)
    state = build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu"
    ).state_dict()
    state["sam_mask_decoder.iou_prediction_head.layers.2.weight"] *= 40.0
    state["sam_mask_decoder.pred_obj_score_head.layers.2.weight"] *= 3000.0
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"].fill_(-116.5)
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].cpu().numpy().tobytes())
    assert digest.hexdigest() == ORACLE_SHA
    torch.save({"model": state}, path)
    return path


def test_sam2long_equals_reference_oracle(oracle_frames: tuple, tmp_path: Path) -> None:
    from treemem.backends.sam2 import load_model

    _, read, mask = oracle_frames
    reference = np.load(ORACLE / "reference.npz")
    checkpoint = _oracle_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    model = load_model(checkpoint, device="cpu")
    backend = Sam2Backend(model, read, 10, mask.shape)
    overrides = {
        "P": int(reference["P"]),
        "delta_iou": float(reference["delta_iou"]),
        "delta_conf": float(reference["delta_conf"]),
    }
    engine = Engine(load_strategy("sam2long", overrides), backend)
    decisions = engine.run([Prompt(1, 0, mask=mask)], range(backend.num_frames))
    masks = {d.frame: backend.mask_logits(d.node) > 0 for d in decisions}
    columns = engine.record.columns()
    for i, frame in enumerate(reference["frames"].tolist()):
        kept = np.flatnonzero((columns.frame == frame) & columns.kept)
        kept = kept[np.argsort(columns.slot[kept])]
        assert columns.parent[kept].tolist() == reference["parent"][i].tolist(), frame
        np.testing.assert_allclose(columns.score[kept], reference["score"][i], atol=1e-4)
        np.testing.assert_allclose(columns.iou[kept], reference["iou"][i], atol=1e-4)
        np.testing.assert_allclose(columns.occlusion[kept], reference["occ"][i], atol=1e-3)
    for frame in range(10):
        agreement = np.mean(masks[frame] == reference["masks"][frame])
        assert agreement >= 0.999, (frame, agreement)
    greedy = np.load(ORACLE / "greedy.npz")["masks"]
    assert any(not np.array_equal(masks[f], greedy[f]) for f in range(10))
