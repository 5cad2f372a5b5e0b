"""Every backend passes the conformance suite (conformance.py), and the suite catches defects.

To accept a new backend, add a factory to `CASES` returning its `BackendCase` (a small video,
two mask prompts, its held-memory count) and make every check pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from conformance import (
    CHECKS,
    EXPORT_CHECKS,
    BackendCase,
    check_commit_reads_only_its_proposals,
    check_mask_stats,
    check_memory_export,
    check_pointer_span,
    check_promotion,
    check_release,
    check_rows_independent,
)

from treemem.backend import Backend
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import make_video
from treemem.pipeline.inputs import BACKEND_OPTIONS
from treemem.types import (
    Commit,
    Float32Array,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
)


def synthetic_case() -> BackendCase:
    video = make_video(0, num_frames=8, height=48, width=64, num_objects=2)
    prompts = tuple(Prompt(obj, 0, mask=video.object_mask(obj, 0)) for obj in (1, 2))
    return BackendCase(
        "synthetic",
        make=lambda: SyntheticBackend(video, seed=3),
        prompts=prompts,
        held=lambda backend: backend.held,  # type: ignore[attr-defined]
    )


def sam2_case() -> BackendCase:
    """A seeded random-weight SAM 2.1 tiny at 64 px (see `_torch_case`)."""
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from treemem.backends.sam2 import Sam2Backend, build_random_model

    model = build_random_model(seed=0, image_size=64)
    return _torch_case("sam2", Sam2Backend, model, model.sam_mask_decoder)


def sam3_case() -> BackendCase:
    """A seeded random-weight reduced SAM 3 tracker (2 ViT blocks, 112 px; see `_torch_case`)."""
    pytest.importorskip("torch")
    pytest.importorskip("sam3", reason="sam3 is not installed (pip install 'treemem[sam3]')")
    from treemem.backends.sam3 import Sam3Backend, build_random_model, small_config

    model = build_random_model(small_config(112), seed=0)
    case = _torch_case("sam3", Sam3Backend, model, model.tracker.sam_mask_decoder)
    no_dam4sam_hooks = frozenset({"boxes", "presence_threshold"})
    return dataclasses.replace(case, supported=no_dam4sam_hooks)


def _torch_case(
    name: str, backend: Callable[..., Backend], model: object, decoder: Any
) -> BackendCase:
    """A SAM-style backend over 4 noise frames of 40x56 (not square, so mask logits must be
    resized to the video, not the model's input), two box-shaped mask prompts, the IoU head's
    answers spread (as the shared oracle's model has them) so candidates differ."""
    import torch

    with torch.no_grad():
        decoder.iou_prediction_head.layers[2].weight *= 40.0
    size = (40, 56)
    frames = np.random.default_rng(0).integers(0, 256, (4, *size, 3), dtype=np.uint8)
    masks = [np.zeros(size, bool), np.zeros(size, bool)]
    masks[0][6:22, 8:30] = True
    masks[1][20:36, 30:52] = True
    return BackendCase(
        name,
        make=lambda: backend(model, lambda index: frames[index], len(frames), size),
        prompts=(Prompt(1, 0, mask=masks[0]), Prompt(2, 0, mask=masks[1])),
        held=lambda made: made.stored_memories,  # type: ignore[attr-defined]
        batch_atol=1e-5,
    )


CASES: dict[str, Callable[[], BackendCase]] = {
    "synthetic": synthetic_case, "sam2": sam2_case, "sam3": sam3_case,
}
_built: dict[str, BackendCase] = {}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> BackendCase:
    if request.param in ("sam2", "sam3"):  # exactness depends on the thread count
        request.getfixturevalue("torch_threads" if request.param == "sam2" else "sam3_threads")
    if request.param not in _built:
        _built[request.param] = CASES[request.param]()
    return _built[request.param]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_backend_conforms(case: BackendCase, check: Callable[[BackendCase], None]) -> None:
    check(case)


def test_backend_options_table_is_what_each_backend_implements(case: BackendCase) -> None:
    """`treemem strategies` reports from the run layer's table; check_options proves the case's
    `supported` set, so the table must equal it."""
    assert BACKEND_OPTIONS[case.name] == case.supported
EXPORTING = {"synthetic", "sam2"}


@pytest.mark.parametrize("check", EXPORT_CHECKS, ids=lambda check: check.__name__)
def test_backend_exports_memories(case: BackendCase, check: Callable[[BackendCase], None]) -> None:
    """The synthetic and SAM 2 backends implement the optional `MemoryExport` (snapshots
    need it); the SAM 3 backend does not yet (its runs do not snapshot)."""
    if case.name not in EXPORTING:
        pytest.skip(f"the {case.name} backend has no MemoryExport yet")
    check(case)


# --- the suite catches defects -------------------------------------------------------------------


class Forwarding:
    """A backend that forwards every call to `inner`; the defects below override one rule."""

    def __init__(self, inner: SyntheticBackend) -> None:
        self.inner = inner

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.inner.frame_size

    @property
    def held(self) -> int:
        return self.inner.held

    def encode(self, frame: int) -> object:
        return self.inner.encode(frame)

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        return self.inner.prompt(features, prompt, node, options)

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        return self.inner.propose(features, queries, options)

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        self.inner.commit(features, proposals, commits)

    def mask_logits(self, node: int) -> Float32Array:
        return self.inner.mask_logits(node)

    def release(self, nodes: Iterable[int]) -> None:
        self.inner.release(nodes)


class IgnoresRelease(Forwarding):
    """Never frees anything: memory grows with the video, released nodes stay readable."""

    def release(self, nodes: Iterable[int]) -> None:
        pass


class RowsOutOfOrder(Forwarding):
    """Answers a batch's rows rotated by one (a gather with the wrong index)."""

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        proposals = self.inner.propose(features, queries, options)
        boxes = None if proposals.boxes is None else np.roll(proposals.boxes, 1, axis=0)
        return Proposals(
            np.roll(proposals.iou, 1, axis=0),
            np.roll(proposals.occlusion, 1, axis=0),
            boxes,
            proposals.batch,
        )


class CommitsTheLastProposals(Forwarding):
    """The old hidden pairing: commit picks up whatever the last propose left behind."""

    def __init__(self, inner: SyntheticBackend) -> None:
        super().__init__(inner)
        self._last: Proposals | None = None

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        self._last = self.inner.propose(features, queries, options)
        return self._last

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        assert self._last is not None
        self.inner.commit(features, self._last, commits)


class IgnoresPromotion(Forwarding):
    """Commits a promoted candidate as a plain one (the re-encoding never happens)."""

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        plain = [dataclasses.replace(c, promote=False) for c in commits]
        self.inner.commit(features, proposals, plain)


class IgnoresPointerSpan(Forwarding):
    """Reads every plan as if its pointers were normalised by the video's length."""

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        plain = [
            PathwayQuery(q.obj, dataclasses.replace(q.plan, pointer_span=None)) for q in queries
        ]
        return self.inner.propose(features, plain, options)


class ShiftedStats(Forwarding):
    """Mask statistics one row off (measured on the wrong masks)."""

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        proposals = self.inner.propose(features, queries, options)
        if proposals.stats is None:
            return proposals
        rows = np.roll(np.arange(len(queries)), 1)
        return dataclasses.replace(proposals, stats=proposals.stats.rows(rows))
class ImportsNothing(Forwarding):
    """Exports, but its import stores nothing: a resumed run would read released memory."""

    def export_memories(self) -> bytes:
        return self.inner.export_memories()

    def import_memories(self, data: bytes) -> None:
        pass


class ImportShiftsMasks(ImportsNothing):
    """Imports every memory one pixel off (a resize that rounds the wrong way)."""

    def import_memories(self, data: bytes) -> None:
        self.inner.import_memories(data)
        memory = self.inner._memory
        for node, stored in memory.items():
            memory[node] = dataclasses.replace(stored, mask=np.roll(stored.mask, 1, axis=1))


def _wrapped(defect: type[Forwarding]) -> BackendCase:
    synthetic = synthetic_case()
    make = synthetic.make

    def build() -> Backend:
        inner = make()
        assert isinstance(inner, SyntheticBackend)
        return defect(inner)

    return dataclasses.replace(synthetic, name=defect.__name__, make=build)


def _failures(case: BackendCase) -> set[str]:
    failed = set()
    for check in CHECKS:
        try:
            check(case)
        except AssertionError:
            failed.add(check.__name__)
    return failed


def test_a_faithful_wrapper_passes_every_check() -> None:
    """The control: wrapping alone breaks nothing, so the failures below are the defects'."""
    assert _failures(_wrapped(Forwarding)) == set()


@pytest.mark.parametrize(
    ("defect", "caught_by"),
    [
        (IgnoresRelease, check_release),
        (RowsOutOfOrder, check_rows_independent),
        (CommitsTheLastProposals, check_commit_reads_only_its_proposals),
        (IgnoresPromotion, check_promotion),
        (IgnoresPointerSpan, check_pointer_span),
        (ShiftedStats, check_mask_stats),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_the_suite_catches_a_defective_backend(
    defect: type[Forwarding], caught_by: Callable[[BackendCase], None]
) -> None:
    case = _wrapped(defect)
    with pytest.raises(AssertionError):
        caught_by(case)
    assert caught_by.__name__ in _failures(case)


@pytest.mark.parametrize("defect", [ImportsNothing, ImportShiftsMasks],
                         ids=lambda value: value.__name__)
def test_the_export_check_catches_a_defective_import(defect: type[Forwarding]) -> None:
    with pytest.raises(AssertionError, match="export"):
        check_memory_export(_wrapped(defect))


def test_a_backend_without_export_fails_the_export_check() -> None:
    with pytest.raises(AssertionError, match="does not implement MemoryExport"):
        check_memory_export(_wrapped(Forwarding))


def test_a_backend_refuses_options_it_does_not_implement() -> None:
    """The rule the options check relies on, on a case declaring no support for boxes."""
    case = dataclasses.replace(synthetic_case(), supported=frozenset({"presence_threshold"}))

    class NoBoxes(Forwarding):
        def propose(
            self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
        ) -> Proposals:
            options.check("no-boxes", {"presence_threshold"})
            return self.inner.propose(features, queries, options)

    def build() -> Backend:
        inner = synthetic_case().make()
        assert isinstance(inner, SyntheticBackend)
        return NoBoxes(inner)

    assert _failures(dataclasses.replace(case, make=build)) == set()
    # ...and a backend that silently ignores the option fails the options check.
    assert "check_options" in _failures(dataclasses.replace(case, make=_wrapped(Forwarding).make))
