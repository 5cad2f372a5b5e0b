"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

import treemem.pipeline.inputs as inputs


@contextmanager
def _interrupted_at(frame: int) -> Iterator[None]:
    open_model = inputs._open_model

    def open_then_interrupt(
        video: inputs.VideoInput, name: str, spec: inputs.ModelSpec, models: inputs.ModelCache
    ) -> inputs.OpenedVideo:
        opened = open_model(video, name, spec, models)
        encode = opened.backend.encode

        def encode_until(index: int) -> object:
            if index == frame:
                raise KeyboardInterrupt
            return encode(index)

        opened.backend.encode = encode_until  # type: ignore[method-assign]
        return opened

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "_open_model", open_then_interrupt)
        yield


@pytest.fixture
def interrupted_at() -> Callable[[int], AbstractContextManager[None]]:
    """`with interrupted_at(2): main([...])`: a model backend (sam2, sam3) the run layer opens
    inside the block raises KeyboardInterrupt, as Ctrl-C would, when it is asked to encode
    that frame; outside the block runs are left alone (for the `--resume` that follows)."""
    return _interrupted_at
