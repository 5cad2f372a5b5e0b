"""`--compile`: SAM 2's components through `torch.compile`, as sam2's VOS-optimised predictor.

sam2 1.1.0's `SAM2VideoPredictorVOS` replaces the `forward` of the memory encoder, memory
attention, prompt encoder and mask decoder with compiled ones (and compiles the image encoder
through `compile_image_encoder`). treemem does the same for the modules it calls, plus its
own key-weighted memory attention (`attention.weighted_memory_attention`, which stands in for
sam2's `MemoryAttention.forward`), so every model call of a frame runs compiled.

Two choices differ from sam2's, on purpose:
- On CUDA the mode is "max-autotune-no-cudagraphs": sam2's "max-autotune" replays CUDA graphs,
  whose outputs are overwritten by the next call, and treemem keeps several calls' outputs
  alive at once (stored memories, P pathways' candidates); sam2 clones them instead. On the CPU
  the default mode is used (max-autotune only tunes GPU kernels).
- Shapes are left to torch's automatic dynamic shapes instead of `dynamic=False`: the batch is
  the number of distinct pathways, which changes from frame to frame, and a static batch would
  recompile for every count; after the first change torch compiles one graph with a symbolic
  batch. The memory attention's memory length varies too (sam2 compiles it `dynamic=True`).

Compiled kernels fuse and reorder floating-point work, so results are not bit-identical to the
eager model: `tests/backends/test_sam2_compile.py` states and checks the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from treemem.backends.sam2.attention import weighted_memory_attention

_COMPILED = "_treemem_compiled"


def compile_mode(device: torch.device) -> str | None:
    """The torch.compile mode for `device` (None: torch's default)."""
    return "max-autotune-no-cudagraphs" if device.type == "cuda" else None


def compile_model(model: Any) -> None:
    """Compile the forward of the image encoder, prompt encoder, mask decoder and memory
    encoder of `model` in place (as sam2's VOS predictor does); a second call does nothing."""
    if getattr(model, _COMPILED, False):
        return
    mode = compile_mode(next(model.parameters()).device)
    for part in (
        model.image_encoder,
        model.sam_prompt_encoder,
        model.sam_mask_decoder,
        model.memory_encoder,
    ):
        part.forward = torch.compile(part.forward, mode=mode)
    setattr(model, _COMPILED, True)


def compiled_memory_attention(device: torch.device) -> Callable[..., torch.Tensor]:
    """`weighted_memory_attention` compiled; the memory length is dynamic from the start."""
    return torch.compile(weighted_memory_attention, mode=compile_mode(device), dynamic=True)
