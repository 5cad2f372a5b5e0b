"""From the engine's decisions to whole frames, and from several objects to one id map.

The engine decides each object's frames on its own schedule (a frame is final once every
surviving pathway of that object agrees on it). A frame is complete when every object that
is tracked on it has been decided; `FrameStream` yields complete frames in order.

Composition follows what sam2's `tools/vos_inference.py` writes for a palette-PNG dataset
(its predictor built with `non_overlap_masks=True`) and what the SAM2Long reference writes:
each pixel goes to the object with the highest mask logit (ties to the lower id), and is kept
only if that logit is > 0. Only pixels where some object's logit is > 0 can be kept, so each
object's result stores its mask and the logits under it, not a full float map: a frame that
waits for a slower object costs about one byte per pixel per object, not four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from treemem.backend import Backend
from treemem.engine import Engine, EngineState
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import (
    BoolArray,
    Float32Array,
    FrameDecision,
    Prompt,
    TreememError,
    UInt8Array,
)

MAX_OBJECT_ID = 255
"""The largest id a palette PNG holds."""


@dataclass(frozen=True, eq=False)
class ObjectMask:
    """One object's mask on one frame, with the logits under it (for composition).

    mask: (H, W) bool, `logits > 0`; positive_logits: (mask.sum(),) float32, the logits of
    the mask's pixels in row-major order.
    """

    mask: BoolArray
    positive_logits: Float32Array

    @classmethod
    def from_logits(cls, logits: Float32Array) -> ObjectMask:
        mask = np.asarray(logits > 0)
        return cls(mask, np.asarray(logits[mask], dtype=np.float32))

    @classmethod
    def empty(cls, frame_size: tuple[int, int]) -> ObjectMask:
        return cls(np.zeros(frame_size, bool), np.zeros(0, np.float32))


def compose_ids(objects: Sequence[int], masks: Sequence[ObjectMask]) -> UInt8Array:
    """(H, W) uint8 object ids from per-object masks: the highest logit wins a pixel two
    objects claim, ties go to the lower id, background where no logit is > 0.

    `objects` are the ids, ascending, in the order of `masks`.
    """
    if list(objects) != sorted(set(objects)):
        raise ValueError(f"object ids must be distinct and ascending, got {list(objects)}")
    if not masks:
        raise ValueError("compose_ids needs at least one object")
    frame_size = masks[0].mask.shape
    ids = np.zeros(frame_size, dtype=np.uint8)
    best = np.full(frame_size, -np.inf, dtype=np.float32)
    for obj, found in zip(objects, masks, strict=True):
        if not 0 < obj <= MAX_OBJECT_ID:
            raise ValueError(f"object id {obj} does not fit a palette PNG (1..{MAX_OBJECT_ID})")
        if found.mask.shape != frame_size:
            raise ValueError(f"object {obj}: mask {found.mask.shape}, frame {frame_size}")
        rows, cols = np.nonzero(found.mask)
        wins = found.positive_logits > best[rows, cols]  # strict: a tie keeps the lower id
        rows, cols = rows[wins], cols[wins]
        best[rows, cols] = found.positive_logits[wins]
        ids[rows, cols] = obj
    return ids


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Every tracked object's mask on one frame (objects not yet prompted there: empty)."""

    frame: int
    objects: tuple[int, ...]
    masks: tuple[ObjectMask, ...]

    def stacked_masks(self) -> BoolArray:
        """(len(objects), H, W) bool, overlapping as each object was tracked (sam2's
        per-object output)."""
        return np.stack([m.mask for m in self.masks])

    def ids(self) -> UInt8Array:
        """(H, W) uint8 id map by `compose_ids`."""
        return compose_ids(self.objects, self.masks)


@dataclass(frozen=True, eq=False)
class StreamState:
    """A `FrameStream` between two frames (`FrameStream.snapshot`): the engine's state, the
    next frame to yield (frames before it were yielded), the masks of frames some objects
    have been decided on but not all (frame -> object -> mask), and the forced count."""

    engine: EngineState
    next_frame: int
    pending: dict[int, dict[int, ObjectMask]]
    forced: int


@dataclass(eq=False)
class FrameStream:
    """Runs the search and yields `FrameResult`s in frame order as they complete.

    After (or while) iterating: `record` is the search tree, `decisions` the engine's
    decisions in the order they came, `lags` how many frames late each was decided,
    `forced` how many `max_lag` forced, `rejected` the candidates rejected as non-finite.
    `on_frame(done, total)` is called after each searched frame (progress).

    `snapshot()` (from `on_frame`) and `restore()` (before `frames`) let a resumed run go on
    from a snapshot; `decisions` and `lags` then hold the resumed part only.
    """

    backend: Backend
    strategy: StrategySet
    prompts: Sequence[Prompt]
    max_lag: int | None = None
    last_frame: int | None = None
    """Track up to this frame (default: the end of the video)."""
    record: TreeRecord = field(default_factory=TreeRecord)
    decisions: list[FrameDecision] = field(default_factory=list)
    lags: list[int] = field(default_factory=list)
    forced: int = 0
    rejected: int = 0
    _started: bool = field(default=False, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    _pending: dict[int, dict[int, ObjectMask]] = field(default_factory=dict, repr=False)
    _next_frame: int = field(default=0, repr=False)
    _restored: StreamState | None = field(default=None, repr=False)

    @property
    def objects(self) -> tuple[int, ...]:
        return tuple(sorted({p.obj for p in self.prompts}))

    @property
    def first_frame(self) -> int:
        return min(p.frame for p in self.prompts)

    @property
    def end_frame(self) -> int:
        """One past the last tracked frame."""
        end = self.backend.num_frames
        return end if self.last_frame is None else min(end, self.last_frame + 1)

    def frames(self, on_frame: Callable[[int], None] | None = None) -> Iterator[FrameResult]:
        """The complete frames, in order; `on_frame(done)` after each searched frame."""
        if self._started:
            raise TreememError("a FrameStream runs one search; make a new one to track again")
        self._started = True
        objects = self.objects
        if not self.prompts:
            raise TreememError("at least one prompt is needed")
        starts = {obj: min(p.frame for p in self.prompts if p.obj == obj) for obj in objects}
        first, end = self.first_frame, self.end_frame
        empty = ObjectMask.empty(self.backend.frame_size)
        engine = Engine(self.strategy, self.backend, record=self.record, max_lag=self.max_lag)
        self._engine, self._next_frame, pending = engine, first, self._pending
        if self._restored is not None:
            engine.restore(self._restored.engine)
            self._next_frame, self.forced = self._restored.next_frame, self._restored.forced
            pending.update(self._restored.pending)
            first = self._restored.engine.frame + 1
        searched = [first - 1]

        def progress(frame: int) -> None:
            searched[0] = frame
            if on_frame is not None:
                on_frame(frame - self.first_frame + 1)

        for decision in engine.run(self.prompts, frames=range(first, end), progress=progress):
            self.decisions.append(decision)
            self.lags.append(min(searched[0] + 1, end - 1) - decision.frame)
            self.forced += decision.forced
            if decision.frame >= end:
                continue
            logits = self.backend.mask_logits(decision.node)
            if logits.shape != self.backend.frame_size:
                raise TreememError(
                    f"the backend gave {logits.shape} mask logits for a "
                    f"{self.backend.frame_size} video"
                )
            pending.setdefault(decision.frame, {})[decision.obj] = ObjectMask.from_logits(logits)
            while (next_frame := self._next_frame) < end:
                found = pending.get(next_frame, {})
                if any(starts[o] <= next_frame and o not in found for o in objects):
                    break
                pending.pop(next_frame, None)
                masks = tuple(found.get(o, empty) for o in objects)
                yield FrameResult(next_frame, objects, masks)
                self._next_frame = next_frame + 1
        self.rejected = engine.rejected
        if self._next_frame < end:
            raise TreememError(
                f"frame {self._next_frame} was not decided for every object; this is a treemem "
                "bug, please report it"
            )

    def snapshot(self) -> StreamState:
        """The stream between two frames: call it from `frames`' `on_frame` callback, when
        every frame decided so far has been yielded (and written by the caller's sinks)."""
        if self._engine is None:
            raise TreememError("the stream has not started: nothing to snapshot")
        pending = {frame: dict(masks) for frame, masks in self._pending.items()}
        return StreamState(self._engine.snapshot(), self._next_frame, pending, self.forced)

    def restore(self, state: StreamState) -> None:
        """Go on from `state` when `frames` runs: `record` must be the snapshot's record and
        the backend must hold its memories (see `Engine.restore`)."""
        if self._started:
            raise TreememError("restore a FrameStream before it runs")
        self._restored = state


__all__ = ["FrameResult", "FrameStream", "ObjectMask", "StreamState", "compose_ids"]
