"""The run layer's side of the SAM 3 backend, without SAM 3: how `sam3` is opened, refused
and reported (`treemem strategies`), on any machine."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from treemem.cli import main
from treemem.pipeline.inputs import BACKEND_OPTIONS, BACKENDS, ModelSpec, open_backend, runs_on
from treemem.registry import REGISTRY
from treemem.types import ConfigError, InputError, ProposalOptions


@pytest.mark.skipif(
    importlib.util.find_spec("sam3") is not None,
    reason="sam3 is installed: the missing-extra message is for machines without it",
)
def test_sam3_without_the_extra_is_one_line(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam3.pt"
    checkpoint.write_bytes(b"")
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match=r"pip install 'treemem\[sam3\]'"):
        open_backend(frames, "sam3", ModelSpec(checkpoint)).backend  # noqa: B018


def test_a_sam3_spec_is_checked_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the sam3 backend needs a checkpoint.*sam3\.pt"):
        ModelSpec().check("sam3")
    checkpoint = tmp_path / "sam3.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(ConfigError, match="--image-size applies to sam2"):
        ModelSpec(checkpoint, image_size=224).check("sam3")
    with pytest.raises(ConfigError, match="'sam2', 'sam3', 'synthetic'"):
        open_backend(None, "sam4")  # type: ignore[arg-type]


def test_strategies_says_where_each_set_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies"]) == 0
    listing = capsys.readouterr().out.splitlines()
    needs_hooks = {"dam4sam", "dam4sam-tree"}  # promotion and mask statistics: not on sam3
    for name in REGISTRY.names():
        line = listing[listing.index(next(x for x in listing if x.startswith(f"{name}:"))) + 1]
        where = "sam2, synthetic" if name in needs_hooks else "sam2, sam3, synthetic"
        assert line == f"    runs on: {where}", (name, line)
    assert set(BACKEND_OPTIONS) == set(BACKENDS)


def test_a_set_runs_only_where_its_options_are_implemented() -> None:
    asked = ProposalOptions(boxes=True, presence_threshold=-1.0)
    assert runs_on(asked) == BACKENDS
    assert runs_on(ProposalOptions()) == BACKENDS
    narrow = {**BACKEND_OPTIONS, "synthetic": frozenset({"presence_threshold"})}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("treemem.pipeline.inputs.BACKEND_OPTIONS", narrow)
        assert runs_on(asked) == ("sam2", "sam3")
        assert runs_on(dataclasses.replace(asked, boxes=False)) == BACKENDS
