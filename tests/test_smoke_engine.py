"""A first end-to-end check of the engine with a random stand-in backend."""

from __future__ import annotations

import numpy as np
from scripted import CheckedMemory

from treemem import Engine, Prompt, load_strategy
from treemem.types import PathwayQuery, ProposalOptions, Proposals


class RandomBackend(CheckedMemory):
    """Random IoUs and occlusion logits; the engine must never read released memory."""

    def __init__(self, num_frames: int = 30, seed: int = 0) -> None:
        super().__init__(num_frames, (4, 4))
        self.rng = np.random.default_rng(seed)

    def propose(
        self, features: object, queries: list[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        self.check_plans(queries)
        n = len(queries)
        return Proposals(
            self.rng.uniform(0, 1, (n, 3)).astype(np.float32),
            self.rng.normal(0, 3, n).astype(np.float32),
        )


def test_every_frame_decided_once_and_memory_bounded() -> None:
    for name in ("sam2long", "greedy"):
        backend = RandomBackend(num_frames=200)
        engine = Engine(load_strategy(name), backend)
        decisions = list(engine.run([Prompt(1, 0, mask=np.ones((4, 4), bool))],
                                    range(backend.num_frames)))
        assert [d.frame for d in decisions] == list(range(200))
        assert len(backend.held) < 60
