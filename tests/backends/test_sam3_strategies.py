"""Every strategy set runs on the SAM 3 backend, its key weighting is SAM 3's memory attention,
and a search's memory stays flat with the video's length (seeded reduced random-weight model:
meaningless masks, real bookkeeping)."""

from __future__ import annotations

import numpy as np
import pytest

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.pipeline.inputs import runs_on
from treemem.registry import REGISTRY

torch = pytest.importorskip("torch")
pytest.importorskip("sam3", reason="sam3 is not installed (pip install 'treemem[sam3]')")

from treemem.backends.sam3 import Sam3Backend, build_random_model, small_config  # noqa: E402
from treemem.backends.sam3.attention import (  # noqa: E402
    memory_attention,
    weighted_memory_attention,
)
from treemem.backends.synthetic_video import make_video  # noqa: E402


@pytest.fixture(scope="module")
def model(sam3_threads: None) -> object:
    return build_random_model(small_config(112), seed=0)


@pytest.mark.parametrize(
    "strategy", [n for n in REGISTRY.names() if "sam3" in runs_on(load_strategy(n).options())]
)
def test_every_strategy_set_runs_on_sam3(model: object, strategy: str) -> None:
    """Two objects, 12 frames: every frame of every object decided, from the backend's masks;
    SAMURAI's sets read candidate boxes, the trees keep several pathways."""
    video = make_video(2, num_frames=12, height=48, width=64, num_objects=2)
    backend = Sam3Backend(model, lambda i: video.frames[i], 12, (48, 64))  # type: ignore[arg-type]
    result = treemem.track(None, video.first_frame_prompts(), strategy, backend=backend)
    assert result.masks.shape == (12, 48, 64) and result.objects == (1, 2)
    assert sorted((d.obj, d.frame) for d in result.decisions) == [
        (obj, frame) for obj in (1, 2) for frame in range(12)
    ]
    columns = result.record.columns()
    pathways = load_strategy(strategy).pathways
    assert np.bincount(columns.frame[columns.kept & (columns.object == 1)]).max() == pathways


def test_memory_is_flat_over_1000_frames(model: object) -> None:
    """sam2long (P = 3) over 1,000 frames, decisions at most 2 frames late: the memories held
    never exceed the pathways' windows (SAM2Long's 16 pointers, the prompt, the lag), and the
    bytes held late in the video are no more than early on."""
    video = make_video(6, num_frames=1000, height=32, width=40)
    backend = Sam3Backend(model, lambda i: video.frames[i], 1000, (32, 40))  # type: ignore[arg-type]
    engine = Engine(load_strategy("sam2long"), backend, max_lag=2)
    held: dict[int, int] = {}
    for decision in engine.run([Prompt(1, 0, mask=video.object_mask(1, 0))], range(1000)):
        held[decision.frame] = backend.stored_bytes
    assert sorted(held) == list(range(1000))
    assert backend.peak_stored <= 3 * (16 + 2 + 2) + 1
    early = max(held[f] for f in range(100, 200))
    assert max(held[f] for f in range(200, 1000)) <= early


def test_key_weights_of_one_are_sam3_s_own_memory_attention(model: object) -> None:
    """The ported key weighting (SAM2Long's w_low / w_high) runs SAM 3's layers: all weights 1
    give SAM 3's own forward bit for bit, and other weights change the output."""
    encoder = model.tracker.transformer.encoder  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(0)

    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    tokens, rows, pointers = 64, 2, 16  # the 8 x 8 grid of 112 px; 4 pointers of 4 tokens
    current, current_pos = noise(tokens, rows, 256), noise(tokens, rows, 256)
    memory, memory_pos = noise(2 * tokens + pointers, rows, 64), noise(2 * tokens + pointers,
                                                                        rows, 64)
    weights = torch.ones(2 * tokens + pointers, rows, 1)
    with torch.inference_mode():
        plain = memory_attention(encoder, current, current_pos, memory, memory_pos, pointers, None)
        ones = weighted_memory_attention(
            encoder, current, current_pos, memory, memory_pos, pointers, weights
        )
        weights[:tokens] = 0.95
        weights[tokens:] = 1.05
        weighted = weighted_memory_attention(
            encoder, current, current_pos, memory, memory_pos, pointers, weights
        )
    assert torch.equal(plain, ones)
    assert not torch.allclose(plain, weighted, atol=1e-4)
