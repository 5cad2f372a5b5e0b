"""Driving a shared oracle case (../shared/oracle/*) on treemem's SAM 2 backend.

The oracle cases replace the mask decoder's outputs by a schedule keyed by the frame being
segmented (their shims), so an implementation must say, at each decoder call, which frame it
is decoding. On treemem's backend that is the frame of the `FrameFeatures` that `prompt` and
`propose` receive. `frame_of_call` provides it; `ProposeLog` records every propose call (the
memory plans read and the proposals returned). Both oracle tests use these, not copies.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from treemem.types import PathwayQuery, ProposalOptions, Proposals


def load_module(path: Path, name: str) -> ModuleType:
    """Import a shim shipped with an oracle case (a loose .py file) under `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_of_call(backend: Any) -> Callable[[], int | None]:
    """Wrap `backend.prompt` and `.propose` so that, while either runs, the returned getter
    answers the frame being segmented (None between calls): what a frame-keyed decoder shim
    asks at every decoder call, however many rows the call batches."""
    current: list[int | None] = [None]
    for name in ("prompt", "propose"):
        inner = getattr(backend, name)

        def wrapped(features: Any, *args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            current[0] = features.frame
            try:
                return _inner(features, *args, **kwargs)
            finally:
                current[0] = None

        setattr(backend, name, wrapped)
    return lambda: current[0]


@dataclass
class ProposeLog:
    """Every `propose` call of a backend: (frame, queries, proposals), in call order."""

    calls: list[tuple[int, list[PathwayQuery], Proposals]] = field(default_factory=list)

    @classmethod
    def install(cls, backend: Any) -> ProposeLog:
        log = cls()
        inner = backend.propose

        def spy(features: Any, queries: list[PathwayQuery], options: ProposalOptions) -> Proposals:
            proposals = inner(features, queries, options)
            log.calls.append((features.frame, list(queries), proposals))
            return proposals

        backend.propose = spy
        return log

    @property
    def frame(self) -> int:
        """The frame of the latest call (what a strategy stepped after it is tracking)."""
        return self.calls[-1][0]


def state_dict_sha256(model: Any) -> str:
    """The oracle cases' checkpoint digest: keys sorted, each key's name then its bytes."""
    state = model.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].cpu().numpy().tobytes())
    return digest.hexdigest()
