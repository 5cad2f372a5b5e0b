"""What the engine tests' stand-in backends share: no model, numbers scripted by each test.

`CheckedMemory` is a backend without `propose` (each test scripts its own): features are the
frame index, masks are empty, and it holds node memories from `prompt`/`commit` until
`release`, raising `MemoryContractError` on any read of a memory it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from treemem import Prompt
from treemem.types import (
    Commit,
    Float32Array,
    MemoryContractError,
    PathwayQuery,
    PromptResult,
    ProposalOptions,
    Proposals,
)


class CheckedMemory:
    """Frame count, frame size, `encode`, and the memory contract; `propose` is the test's.

    `held` is the set of node memories held now, `peak_held` the most held at once.
    """

    def __init__(
        self, num_frames: int, frame_size: tuple[int, int], prompt_occlusion: float = 10.0
    ) -> None:
        self._num_frames = num_frames
        self._frame_size = frame_size
        self.prompt_occlusion = prompt_occlusion
        self.held: set[int] = set()
        self.peak_held = 0

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    def encode(self, frame: int) -> object:
        return frame

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        self._hold([node])
        return PromptResult(1.0, self.prompt_occlusion)

    def check_plans(self, queries: Sequence[PathwayQuery]) -> None:
        """Every memory the queries' plans read is held."""
        for query in queries:
            if not query.plan.nodes() <= self.held:
                raise MemoryContractError(f"plan reads released {query.plan.nodes() - self.held}")

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        self._hold(c.node for c in commits)

    def mask_logits(self, node: int) -> Float32Array:
        if node not in self.held:
            raise MemoryContractError(f"mask of released node {node}")
        return np.full(self._frame_size, -1.0, np.float32)

    def release(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            if node not in self.held:
                raise MemoryContractError(f"released node {node} twice")
            self.held.remove(node)

    def _hold(self, nodes: Iterable[int]) -> None:
        self.held.update(nodes)
        self.peak_held = max(self.peak_held, len(self.held))
