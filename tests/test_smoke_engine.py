"""A first end-to-end check of the engine with a random stand-in backend."""

from __future__ import annotations

import numpy as np

from treemem import Engine, Prompt, load_strategy
from treemem.types import Commit, PathwayQuery, PromptResult, Proposals


class RandomBackend:
    """Random IoUs and occlusion logits; asserts the engine never reads released memory."""

    def __init__(self, num_frames: int = 30, seed: int = 0) -> None:
        self._num_frames = num_frames
        self.rng = np.random.default_rng(seed)
        self.held: set[int] = set()

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return (4, 4)

    def encode(self, frame: int) -> object:
        return frame

    def prompt(self, features: object, prompt: Prompt, node: int) -> PromptResult:
        self.held.add(node)
        return PromptResult(1.0, 10.0)

    def propose(self, features: object, queries: list[PathwayQuery]) -> Proposals:
        for query in queries:
            assert query.plan.nodes() <= self.held
        n = len(queries)
        return Proposals(
            self.rng.uniform(0, 1, (n, 3)).astype(np.float32),
            self.rng.normal(0, 3, n).astype(np.float32),
        )

    def commit(self, features: object, commits: list[Commit]) -> None:
        self.held.update(c.node for c in commits)

    def mask(self, node: int) -> np.ndarray:
        assert node in self.held
        return np.zeros((4, 4), bool)

    def release(self, nodes: list[int]) -> None:
        self.held.difference_update(nodes)


def test_every_frame_decided_once_and_memory_bounded() -> None:
    for name in ("sam2long", "greedy"):
        backend = RandomBackend(num_frames=200)
        engine = Engine(load_strategy(name), backend)
        decisions = list(engine.run([Prompt(1, 0, mask=np.ones((4, 4), bool))]))
        assert [d.frame for d in decisions] == list(range(200))
        assert len(backend.held) < 60
