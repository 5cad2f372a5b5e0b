"""From the engine's decisions to whole frames, and from several objects to one id map.

The engine decides each object's frames on its own schedule (a frame is final once every
surviving pathway of that object agrees on it). A frame is complete when every object that
is tracked on it has been decided; `FrameStream` yields complete frames in tracking order.

A stream tracks in one direction or both (`RunDirection`). Both is one search per direction
on the same backend and tree record: forward from the first prompt frame to the end, then
backward from the last prompt frame to frame 0. Each object's frames from its first prompt
on come from the forward search and the frames before it from the backward search, so every
frame is yielded once (a prompt frame too).

Composition follows what sam2's `tools/vos_inference.py` writes for a palette-PNG dataset
(its predictor built with `non_overlap_masks=True`) and what the SAM2Long reference writes:
each pixel goes to the object with the highest mask logit (ties to the lower id), and is kept
only if that logit is > 0. Only pixels where some object's logit is > 0 can be kept, so each
object's result stores its mask and the logits under it, not a full float map: a frame that
waits for a slower object costs about one byte per pixel per object, not four.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from treemem.backend import Backend
from treemem.engine import Engine, EngineState
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import (
    BoolArray,
    Direction,
    Float32Array,
    FrameDecision,
    InputError,
    Prompt,
    TreememError,
    UInt8Array,
    frame_step,
)

MAX_OBJECT_ID = 255
"""The largest id a palette PNG holds."""

RunDirection = Literal["forward", "backward", "both"]
"""Which way a run tracks from its prompts: one `Direction`, or one search each way."""
RUN_DIRECTIONS: tuple[str, ...] = get_args(RunDirection)


def check_direction(direction: str, name: str = "direction") -> RunDirection:
    """`direction` as a `RunDirection`, or an `InputError` naming the option and choices."""
    if direction not in RUN_DIRECTIONS:
        raise InputError(f"{name} must be one of {', '.join(RUN_DIRECTIONS)}, got {direction!r}")
    return direction  # type: ignore[return-value]


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
    for index, (obj, found) in enumerate(zip(objects, masks, strict=True)):
        if not 0 < obj <= MAX_OBJECT_ID:
            raise ValueError(f"object id {obj} does not fit a palette PNG (1..{MAX_OBJECT_ID})")
        if found.mask.shape != frame_size:
            raise ValueError(f"object {obj}: mask {found.mask.shape}, frame {frame_size}")
        if index == 0:  # nothing is claimed yet: the first object takes its whole mask
            ids[found.mask] = obj
            best[found.mask] = found.positive_logits
            continue
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


@dataclass(eq=False)
class _Search:
    """One direction's search: its engine and the decided masks waiting for a slower object.

    `starts` maps each object tracked this way to the first frame it is tracked on (its first
    prompt reached in tracking order); `next_frame` is the next frame to yield; `last` the
    last frame to yield (None: a stream of unknown length); `frame` the frame searched last.
    """

    engine: Engine
    sign: int
    next_frame: int
    last: int | None
    rejected_before: int
    starts: dict[int, int] = field(default_factory=dict)
    frame: int | None = None
    pending: dict[int, dict[int, ObjectMask]] = field(default_factory=dict)

    def position(self, frame: int) -> int:
        """A frame's place in tracking order (ascending both ways)."""
        return frame * self.sign

    def tracks(self, obj: int, frame: int) -> bool:
        return obj in self.starts and self.position(self.starts[obj]) <= self.position(frame)

    def add_prompts(self, prompts: Sequence[Prompt]) -> None:
        """Prompts on frames not searched yet; an object is tracked from its first prompt at
        or after `next_frame` in tracking order (one behind it is conditioning memory only)."""
        self.engine.add_prompts(prompts)
        for prompt in sorted(prompts, key=lambda p: self.position(p.frame)):
            if self.position(prompt.frame) >= self.position(self.next_frame):
                self.starts.setdefault(prompt.obj, prompt.frame)


@dataclass(frozen=True, eq=False)
class StreamState:
    """A `FrameStream` of a video between two frames (`FrameStream.snapshot`): the running
    search's engine state, the next frame it yields (the frames before it in tracking order
    were yielded), the frame each object is tracked from, the masks of frames some objects
    have been decided on but not all (frame -> object -> mask), and the forced count.

    A two-way stream also says which of its searches was running (`direction`), what the
    searches before it rejected (`rejected_before`), and which forward frames wait for the
    backward search (`waiting`: frame -> result, frames before some object's first prompt).
    `lag_counts` is the stream's tally of lags so far (a resumed run reports the whole run's).
    """

    engine: EngineState
    next_frame: int
    starts: dict[int, int]
    pending: dict[int, dict[int, ObjectMask]]
    forced: int
    direction: Direction = "forward"
    rejected_before: int = 0
    waiting: Mapping[int, FrameResult] = field(default_factory=dict)
    lag_counts: Mapping[int, int] = field(default_factory=dict)


@dataclass(eq=False)
class FrameStream:
    """Runs the search and yields `FrameResult`s in tracking order as they complete.

    Two ways to drive it: `frames()` runs a video of known length, in `direction`, from
    `start_frame` (default: the first prompt frame that way, the earliest forward and the
    latest backward) to `last_frame` (inclusive; default: the end of the video that way);
    "both" takes neither frame (see the module docstring). `track(frames)` runs any iterable
    of frame indices in one direction, of unknown length (a live source), and
    `start`/`step`/`finish` do the same one frame at a time for a caller that is handed frames
    (`treemem.stream`), which may also add prompts between frames (`add_prompts`). Nothing
    here reads the video's length except `frames()` and `frame_count`.

    An object is tracked from its first prompt reached; a prompt behind the first frame
    tracked is conditioning memory only. After (or while) iterating: `record` is the search
    tree, `decisions` the engine's decisions in the order they came, `lags` how many frames
    late each was decided (both only with `keep_decisions`; `lag_counts` tallies the lags
    either way), `forced` how many `max_lag` forced, `rejected` the candidates
    rejected as non-finite. sam2's `max_frame_num_to_track=m` from frame s is
    `last_frame = s + m` forward and `s - m` backward (clamped to the video, as sam2 does).

    `snapshot()` (from `frames()`' `on_frame`) and `restore()` (before `frames()`) let a
    resumed run of a video go on from a snapshot (in either search of "both");
    `decisions` and `lags` then hold the resumed part only.
    """

    backend: Backend
    strategy: StrategySet
    prompts: Sequence[Prompt]
    max_lag: int | None = None
    last_frame: int | None = None
    """Track up to this frame, inclusive (default: the end of the video in the direction)."""
    direction: RunDirection = "forward"
    start_frame: int | None = None
    """The first frame tracked (default: the first prompt frame in the direction)."""
    record: TreeRecord = field(default_factory=TreeRecord)
    keep_decisions: bool = True
    """Keep every decision and lag in `decisions` and `lags` (False: a long stream keeps
    `lag_counts` only, so nothing grows with its length)."""
    decisions: list[FrameDecision] = field(default_factory=list)
    lags: list[int] = field(default_factory=list)
    lag_counts: dict[int, int] = field(default_factory=dict)
    """How many decisions came how many frames late (lag -> count), kept either way."""
    forced: int = 0
    rejected: int = 0
    _added: list[Prompt] = field(default_factory=list, repr=False)
    _search: _Search | None = field(default=None, repr=False)
    _started: bool = field(default=False, repr=False)
    _current: _Search | None = field(default=None, repr=False)
    _restored: StreamState | None = field(default=None, repr=False)
    _waiting: dict[int, FrameResult] = field(default_factory=dict, repr=False)
    """"both": the forward frames waiting for the backward search (see `_both`)."""

    @property
    def objects(self) -> tuple[int, ...]:
        return tuple(sorted({p.obj for p in self.all_prompts}))

    @property
    def all_prompts(self) -> tuple[Prompt, ...]:
        """`prompts` and those added since (`add_prompts`)."""
        return (*self.prompts, *self._added)

    @property
    def first_frame(self) -> int:
        """The first frame tracked (for "both", the forward search's: the earliest prompt)."""
        if self.start_frame is not None:
            return self.start_frame
        step = frame_step("forward" if self.direction == "both" else self.direction)
        frames = [p.frame for p in self.all_prompts]
        if not frames:
            raise InputError("at least one prompt is needed")
        return min(frames, key=lambda f: f * step)

    @property
    def frame_count(self) -> int:
        """How many frames `frames()` visits (both searches' together for "both")."""
        return sum(abs(last - first) + 1 for first, last in map(self._span, self._directions()))

    def _directions(self) -> tuple[Direction, ...]:
        return ("forward", "backward") if self.direction == "both" else (self.direction,)

    def _span(self, direction: Direction) -> tuple[int, int]:
        """(first, last) frame one search of the video tracks, both inclusive."""
        if not self.prompts:
            raise InputError("at least one prompt is needed")
        step = frame_step(direction)
        first = self.start_frame
        if first is None:
            first = min((p.frame for p in self.prompts), key=lambda f: f * step)
        end = self.backend.num_frames - 1 if step > 0 else 0
        last = end if self.last_frame is None else self.last_frame
        if not 0 <= first < self.backend.num_frames or (last - first) * step < 0:
            raise InputError(
                f"cannot track {direction} from frame {first} to frame {last} of a "
                f"{self.backend.num_frames}-frame video"
            )
        return first, max(0, min(last, self.backend.num_frames - 1))

    # --- a video of known length ------------------------------------------------------------

    def frames(self, on_frame: Callable[[int], None] | None = None) -> Iterator[FrameResult]:
        """The complete frames, in tracking order; `on_frame(done)` after each searched
        frame (done counts both searches of "both")."""
        self._begin()
        check_direction(self.direction)
        if self.direction != "both":
            yield from self._video(self.direction, on_frame)
            return
        if self.start_frame is not None or self.last_frame is not None:
            raise InputError("direction 'both' tracks the whole video: give no start or last frame")
        yield from self._both(on_frame)

    def _both(self, on_frame: Callable[[int], None] | None) -> Iterator[FrameResult]:
        """Forward, then backward; each object's frames before its first prompt come from
        the backward search. A forward frame some object still needs from the backward
        search (one before that object's first prompt) waits for it."""
        starts = {obj: min(p.frame for p in self.prompts if p.obj == obj) for obj in self.objects}
        waiting = self._waiting
        first, last = self._span("forward")
        done = last - first + 1  # frames the forward search visits

        def backward_progress(count: int) -> None:
            if on_frame is not None:
                on_frame(done + count)

        restored = self._restored
        if restored is not None:
            waiting.update(restored.waiting)
        if restored is None or restored.direction == "forward":
            for result in self._video("forward", on_frame):
                if any(result.frame < start for start in starts.values()):
                    waiting[result.frame] = result
                else:
                    yield result
        for result in self._video("backward", backward_progress):
            ahead = waiting.pop(result.frame, None)
            if ahead is None:
                if result.frame < min(starts.values()):
                    yield result
                continue
            masks = tuple(
                back if result.frame < starts[obj] else fore
                for obj, fore, back in zip(self.objects, ahead.masks, result.masks, strict=True)
            )
            yield FrameResult(result.frame, self.objects, masks)

    def _video(
        self, direction: Direction, on_frame: Callable[[int], None] | None
    ) -> Iterator[FrameResult]:
        """One search's complete frames of the video, in its tracking order."""
        first, last = self._span(direction)
        search = self._new_search(direction, first, last)
        step = search.sign
        resume_at = first if search.frame is None else search.frame + step
        for frame in range(resume_at, last + step, step):
            yield from self._step(search, frame)
            if on_frame is not None:
                on_frame(search.position(frame) - search.position(first) + 1)
        yield from self._finish(search)
        if search.next_frame != last + step:
            raise TreememError(
                f"frame {search.next_frame} was not decided for every object; this is a "
                "treemem bug, please report it"
            )

    # --- frames one at a time (a source of unknown length) -----------------------------------

    def track(
        self, frames: Iterable[int], on_frame: Callable[[int], None] | None = None
    ) -> Iterator[FrameResult]:
        """The complete frames of `frames` (frame indices in tracking order from the first
        prompt on, any number of them), in order; the end of `frames` finalises what is open."""
        self.start()
        first = self.first_frame
        for frame in frames:
            yield from self.step(frame)
            if on_frame is not None:
                on_frame(abs(frame - first) + 1)
        yield from self.finish()

    def start(self) -> None:
        """Make the engine and store the prompts given so far (at least one)."""
        self._begin()
        if self.direction == "both":
            raise InputError("direction 'both' needs the whole video: use frames()")
        if not self.prompts:
            raise TreememError("at least one prompt is needed")
        self._search = self._new_search(self.direction, self.first_frame, None)

    def add_prompts(self, prompts: Sequence[Prompt]) -> None:
        """More prompts, on frames not searched yet (a new object, or a re-prompt)."""
        self._running().add_prompts(prompts)
        self._added.extend(prompts)

    def step(self, frame: int) -> Iterator[FrameResult]:
        """Search `frame`; yields the frames it completes."""
        yield from self._step(self._running(), frame)

    def finish(self) -> Iterator[FrameResult]:
        """The end of the frames: decide what is still open, yield the frames left."""
        yield from self._finish(self._running())

    # --- internals ---------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._started:
            raise TreememError("a FrameStream runs one search; make a new one to track again")
        self._started = True

    def _running(self) -> _Search:
        if self._search is None:
            raise TreememError("call start() first")
        return self._search

    def _new_search(self, direction: Direction, first: int, last: int | None) -> _Search:
        engine = Engine(self.strategy, self.backend, record=self.record, max_lag=self.max_lag,
                        direction=direction)
        search = _Search(engine, frame_step(direction), first, last, self.rejected)
        restored, self._restored = self._restored, None  # a two-way stream's next search is new
        if restored is None or restored.direction != direction:
            search.add_prompts(self.prompts)
        else:
            search.rejected_before = restored.rejected_before
            engine.restore(restored.engine)
            search.next_frame, search.frame = restored.next_frame, restored.engine.frame
            search.starts.update(restored.starts)
            search.pending.update({f: dict(masks) for f, masks in restored.pending.items()})
            self.forced = restored.forced
            self.lag_counts = dict(restored.lag_counts)
        self._current = search
        return search

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> StreamState:
        """The stream between two frames: call it from `frames()`' `on_frame` callback, when
        every frame decided so far has been yielded (and written by the caller's sinks)."""
        search = self._current
        if search is None or search.frame is None:
            raise TreememError("the stream has not searched a frame yet: nothing to snapshot")
        pending = {frame: dict(masks) for frame, masks in search.pending.items()}
        return StreamState(
            search.engine.snapshot(), search.next_frame, dict(search.starts), pending,
            self.forced, search.engine.direction, search.rejected_before, dict(self._waiting),
            dict(self.lag_counts),
        )

    def restore(self, state: StreamState) -> None:
        """Go on from `state` when `frames()` runs: `record` must be the snapshot's record
        and the backend must hold its memories (see `Engine.restore`)."""
        if self._started:
            raise TreememError("restore a FrameStream before it runs")
        self._restored = state

    def yielded_before(self, state: StreamState) -> list[int]:
        """The frames this stream had yielded when `state` was taken (a resumed run's PNGs
        that must be on disk), in no particular order."""
        if self.direction != "both":
            return list(range(self.first_frame, state.next_frame, frame_step(self.direction)))
        first, last = self._span("forward")
        if state.direction == "forward":
            done = list(range(first, state.next_frame))
        else:  # every forward frame, and the backward ones before the first prompt
            backward = range(self._span("backward")[0], state.next_frame, -1)
            done = [*range(first, last + 1), *(f for f in backward if f < first)]
        return [frame for frame in done if frame not in state.waiting]

    def _step(self, search: _Search, frame: int) -> Iterator[FrameResult]:
        yield from self._decided(search, frame, search.engine.step(frame))

    @property
    def engine(self) -> Engine:
        """The running search's engine (after `start`)."""
        return self._running().engine

    def decided(self, frame: int, decisions: Iterable[FrameDecision]) -> Iterator[FrameResult]:
        """`step` for a caller that runs the engine's frame phases itself (a sweep,
        `treemem.pipeline.sweep`): `decisions` are what `engine.end_frame` yields for
        `frame`; yields the frames they complete."""
        yield from self._decided(self._running(), frame, decisions)

    def _decided(
        self, search: _Search, frame: int, decisions: Iterable[FrameDecision]
    ) -> Iterator[FrameResult]:
        search.frame = frame
        for decision in decisions:
            yield from self._take(search, decision)
        self.rejected = search.rejected_before + search.engine.rejected

    def _finish(self, search: _Search) -> Iterator[FrameResult]:
        for decision in search.engine.finish():
            yield from self._take(search, decision)
        self.rejected = search.rejected_before + search.engine.rejected
        yield from self._complete(search)

    def _take(self, search: _Search, decision: FrameDecision) -> Iterator[FrameResult]:
        """Keep one decision's mask; yield the frames it completes, in tracking order."""
        current = decision.frame if search.frame is None else search.frame
        lag = search.position(current) - search.position(decision.frame)
        self.lag_counts[lag] = self.lag_counts.get(lag, 0) + 1
        if self.keep_decisions:
            self.decisions.append(decision)
            self.lags.append(lag)
        self.forced += decision.forced
        if search.last is not None and search.position(decision.frame) > search.position(
            search.last
        ):
            return
        logits = self.backend.mask_logits(decision.node)
        if logits.shape != self.backend.frame_size:
            raise TreememError(
                f"the backend gave {logits.shape} mask logits for a "
                f"{self.backend.frame_size} video"
            )
        search.pending.setdefault(decision.frame, {})[decision.obj] = ObjectMask.from_logits(logits)
        yield from self._complete(search)

    def _complete(self, search: _Search) -> Iterator[FrameResult]:
        """Yield the searched frames every object tracked on them has been decided on."""
        objects = self.objects
        empty = ObjectMask.empty(self.backend.frame_size)
        while search.frame is not None and search.position(search.next_frame) <= search.position(
            search.frame
        ):
            frame = search.next_frame
            found = search.pending.get(frame, {})
            if any(search.tracks(o, frame) and o not in found for o in objects):
                break
            search.pending.pop(frame, None)
            yield FrameResult(frame, objects, tuple(found.get(o, empty) for o in objects))
            search.next_frame += search.sign


__all__ = [
    "RUN_DIRECTIONS",
    "FrameResult",
    "FrameStream",
    "ObjectMask",
    "RunDirection",
    "StreamState",
    "check_direction",
    "compose_ids",
]
