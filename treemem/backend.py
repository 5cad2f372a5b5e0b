"""The model side of the search, as the engine sees it.

One call per frame for each job, batched over every pathway of every object: the engine
passes node ids and memory plans, never tensors it must inspect, and backends keep masks and
features on their own device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from treemem.types import Commit, Float32Array, PathwayQuery, Prompt, PromptResult, Proposals


class Backend(Protocol):
    """A segmentation model driven by the beam search."""

    @property
    def num_frames(self) -> int:
        """Length of the video the backend reads frames from."""
        ...

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the video, the resolution of `mask`."""
        ...

    def encode(self, frame: int) -> object:
        """Run the image encoder once for `frame`; the result is opaque to the engine."""
        ...

    def prompt(self, features: object, prompt: Prompt, node: int) -> PromptResult:
        """Turn a user prompt into a conditioning memory stored under `node`."""
        ...

    def propose(
        self,
        features: object,
        queries: Sequence[PathwayQuery],
        *,
        boxes: bool = False,
        presence_threshold: float = 0.0,
    ) -> Proposals:
        """K candidates for each query row, all rows in one batched pass.

        `boxes`: also return each candidate's box (`Proposals.boxes`). A row whose occlusion
        logit is <= `presence_threshold` gets empty masks and the no-object pointer (SAM 2's
        rule at 0). The engine passes these keywords only when a strategy set asks for them,
        so a backend that supports neither may omit them."""
        ...

    def commit(self, features: object, commits: Sequence[Commit]) -> None:
        """Encode the memory (and keep the mask) of each kept candidate under its node."""
        ...

    def mask_logits(self, node: int) -> Float32Array:
        """(H, W) float32 mask logits of a committed or prompted node at video resolution.

        The node's mask is `logits > 0`. Logits rather than a boolean mask because several
        objects are composed into one id map by the highest logit per pixel (sam2's
        non-overlap rule), which a boolean mask cannot decide."""
        ...

    def release(self, nodes: Iterable[int]) -> None:
        """Forget these nodes' memories and masks: no pathway can read them any more."""
        ...
