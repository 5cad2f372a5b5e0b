"""`compile` on the SAM 2 backend (`--compile`, `track(compile=True)`, `Sam2Backend(compile=True)`):
the model's components and treemem's memory attention run through `torch.compile`, and the
results stay within float32 rounding of the eager model's. Measured here (random-weight SAM 2.1
tiny at 64 px, 4 frames): greedy logits within 2.8e-7, sam2long (P = 3) within 3.4e-7, masks
equal on every pixel; compiling took minutes on this 2-core CPU, so the test is small."""

from __future__ import annotations

import numpy as np
import pytest

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.backends.synthetic_video import make_video

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, build_random_model  # noqa: E402

SIZE = 64
FRAMES = 4
LOGIT_TOLERANCE = 1e-5  # measured 2.8e-7 (greedy) and 3.4e-7 (sam2long)


@pytest.fixture(scope="module")
def models(torch_threads: None) -> tuple[object, object]:
    """The same seeded random weights twice: one model stays eager, one is compiled."""
    return build_random_model(image_size=SIZE), build_random_model(image_size=SIZE)


def greedy_logits(model: object, frames: np.ndarray, mask: np.ndarray, *, compile: bool
                  ) -> dict[int, np.ndarray]:
    backend = Sam2Backend(model, lambda i: frames[i], len(frames), frames.shape[1:3],
                          compile=compile)
    engine = Engine(load_strategy("greedy"), backend)
    return {d.frame: backend.mask_logits(d.node)
            for d in engine.run([Prompt(obj=1, frame=0, mask=mask)], range(len(frames)))}


def test_compiled_model_tracks_as_the_eager_one(models: tuple[object, object]) -> None:
    eager, compiled = models
    video = make_video(3, num_frames=8, height=72, width=96)
    frames, first = video.frames[:FRAMES], video.gt[0]
    want = greedy_logits(eager, frames, first > 0, compile=False)
    got = greedy_logits(compiled, frames, first > 0, compile=True)
    for part in ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder", "memory_encoder"):
        forward = getattr(compiled, part).forward  # type: ignore[attr-defined]
        assert hasattr(forward, "_torchdynamo_orig_callable"), f"{part} is not compiled"
    assert sorted(got) == sorted(want) == list(range(FRAMES))
    for frame in want:
        assert np.abs(got[frame] - want[frame]).max() <= LOGIT_TOLERANCE
        assert np.array_equal(got[frame] > 0, want[frame] > 0)
    # sam2long through the API: batches of 1-3 distinct pathways reuse the compiled graphs.
    runs = [treemem.track(frames, first, "sam2long", backend="sam2", model=model,
                          compile=flag, overrides={"P": 3})
            for model, flag in ((eager, False), (compiled, True))]
    assert np.array_equal(runs[0].masks, runs[1].masks)
    eager_tree, compiled_tree = (run.record.columns() for run in runs)
    for column in ("frame", "slot", "parent", "candidate", "kept"):
        assert np.array_equal(getattr(eager_tree, column), getattr(compiled_tree, column))
    assert np.allclose(eager_tree.score, compiled_tree.score, atol=1e-5)
