"""Live sources: frames that arrive one at a time, from a source of unknown length.

`LiveTracker` is what `treemem.stream` returns and what `treemem run --live` drives: each
`push(frame)` searches that frame and returns the frames it completes (exact: as soon as
they are decided; with `max_lag` L: at most L frames after they arrived), and `close()` (the
end of the stream) finalises what is open. It is `FrameStream` stepped by hand, so a stream's
masks equal a file run's, frame for frame, on the same frames and prompts.

Nothing is read ahead and nothing is kept behind: the backend reads the newest frame only
(`LiveFrames`), the search keeps what it keeps on a file (its pathways' memories and the
undecided frames' masks), and the tree record holds its open tail only (`TreeRecord`
keep="open": the rows of frames not decided yet; `treemem run --live` writes every row to
tree.jsonl before it drops it), so memory stays flat however long the stream runs.
`keep_record=True` keeps the whole record in memory instead (about 2.5 kB a frame for
sam2long P=3), and every decision and lag (`decisions`, `lags`), for a caller that reads them
after the stream; without it only a tally of the lags (`lag_counts`) is kept.

`snapshot()` between pushes and `restore()` on a fresh tracker let a stream go on after its
process died (`treemem run --live --snapshot-every N ... --resume`): the search, the prompts
and how many frames were pushed; the backend's memories travel beside it
(`MemoryExport.export_memories`), and the tree record's rows up to the snapshot are the
caller's to keep (a run folder's tree.jsonl). A restored tracker numbers the next frame pushed
after the snapshot's last, whatever the source sends next: a replayed file must skip the frames
the snapshot has pushed (`LiveState.pushed`), a live source simply goes on.

Prompts may come with the first frame or later: a prompt is stored as a conditioning memory
when its frame arrives, so it conditions the frames from there on. A file run stores every
prompt before tracking (as sam2 does), so a later prompt also conditions frames before it
there: with re-prompts a stream and a file run differ on the frames before the re-prompt
and on what follows from them; with every prompt on the first frame they are equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from treemem.backend import Backend, MemoryExport
from treemem.pipeline.frames import FrameResult, FrameStream, StreamState
from treemem.pipeline.inputs import as_prompts, check_prompt
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import FrameDecision, InputError, Prompt, TreememError, UInt8Array

LiveBackendMaker = Callable[[tuple[int, int], Callable[[int], UInt8Array]], Backend]
"""(frame size, frame reader) -> the backend a stream runs on, made when the first frame
arrives (its size is not known before)."""

LivePrompts = Prompt | Sequence[Prompt] | str | os.PathLike[str] | np.ndarray | None
"""Prompts for a stream: `Prompt` records (on their own frames), or a mask of object ids
(an (H, W) array or a PNG path) on the frame it is given with."""


@dataclass(eq=False)
class LiveFrames:
    """The frames a live backend reads: only the newest one is held (the search reads each
    frame once, when it is searched), so nothing of the past stays in memory."""

    index: int = -1
    frame: UInt8Array | None = field(default=None, repr=False)

    def put(self, index: int, frame: UInt8Array) -> None:
        self.index, self.frame = index, frame

    def read(self, index: int) -> UInt8Array:
        if self.frame is None or index != self.index:
            raise InputError(
                f"frame {index} is not held: a live source holds its newest frame "
                f"({self.index}) only"
            )
        return np.array(self.frame)


@dataclass(frozen=True)
class LiveState:
    """A `LiveTracker` between two pushes (`LiveTracker.snapshot`): its stream's state, how
    many frames were pushed, their size, the prompts the search holds (`tracked`), those on
    frames not pushed yet (`waiting`) and every prompt given (`given`)."""

    stream: StreamState
    pushed: int
    frame_size: tuple[int, int]
    tracked: tuple[Prompt, ...]
    waiting: tuple[Prompt, ...]
    given: tuple[Prompt, ...]


@dataclass(eq=False)
class LiveTracker:
    """Tracks the prompted objects through frames pushed one at a time (see the module
    docstring). Frame indices count the pushed frames from 0.

    ```python
    tracker = treemem.stream("sam2long", checkpoint="sam2.1_hiera_tiny.pt", prompts=mask)
    for frame in camera:
        for result in tracker.push(frame):
            show(result.frame, result.ids())
    for result in tracker.close():
        show(result.frame, result.ids())
    ```

    Frames before the first prompt are not tracked (their push returns nothing), as a file
    run starts at its first prompt.
    """

    strategy: StrategySet
    make_backend: LiveBackendMaker = field(repr=False)
    max_lag: int | None = None
    frame_size: tuple[int, int] | None = None
    """(height, width) of the frames: set by the first frame when not given."""
    keep_record: bool = False
    """Keep the whole tree record in memory (default: its open tail only, see the module
    docstring)."""
    _waiting: list[Prompt] = field(default_factory=list, repr=False)
    _masks: list[tuple[int, Any]] = field(default_factory=list, repr=False)
    _frames: LiveFrames = field(default_factory=LiveFrames, repr=False)
    _backend: Backend | None = field(default=None, repr=False)
    _stream: FrameStream | None = field(default=None, repr=False)
    _record: TreeRecord = field(init=False, repr=False)
    _closed: bool = False
    pushed: int = 0
    """How many frames were pushed (the index the next one gets)."""
    given: list[Prompt] = field(default_factory=list)
    """Every prompt given so far, as records (a mask becomes records at the first frame)."""

    def __post_init__(self) -> None:
        self._record = TreeRecord(keep="all" if self.keep_record else "open")

    def prompt(self, prompts: LivePrompts, frame: int | None = None) -> None:
        """Prompts on frames not pushed yet: `Prompt`s on their own frames, a mask on `frame`
        (default: the next frame pushed); a new object, or a re-prompt of a tracked one."""
        self._check_open()
        if prompts is None:
            return
        if isinstance(prompts, (str, os.PathLike, np.ndarray)):
            at = self.pushed if frame is None else frame
            if at < self.pushed:
                raise InputError(f"the mask prompt is on frame {at}, which was pushed already")
            self._masks.append((at, prompts))
            return
        found = [prompts] if isinstance(prompts, Prompt) else list(prompts)
        for prompt in found:
            if not isinstance(prompt, Prompt):
                raise InputError("prompts must be Prompt records, a mask array or a mask PNG path")
            if prompt.frame < self.pushed:
                raise InputError(
                    f"the prompt for object {prompt.obj} is on frame {prompt.frame}, which was "
                    f"pushed already; prompt frame {self.pushed} or later"
                )
            if self.frame_size is not None:
                check_prompt(prompt, self.frame_size, None)
        self._waiting += found
        self.given += found

    def push(self, frame: UInt8Array, prompts: LivePrompts = None) -> list[FrameResult]:
        """Search one more frame ((H, W, 3) uint8 RGB), with `prompts` on it if given;
        returns the frames this completes, in order (often none, or several at once)."""
        self.prompt(prompts)
        index = self._accept(frame)
        due = self._due(index)
        if self._stream is None and not due:
            return []
        backend = self._open_backend()
        self._frames.put(index, frame)
        if self._stream is None:
            self._stream = FrameStream(backend, self.strategy, due, max_lag=self.max_lag,
                                       record=self._record, keep_decisions=self.keep_record)
            self._stream.start()
        elif due:
            self._stream.add_prompts(due)
        return list(self._stream.step(index))

    def close(self) -> list[FrameResult]:
        """The end of the stream: decide what is open; returns the frames left, in order."""
        if self._closed:
            return []
        self._closed = True
        if self._stream is None:
            return []
        return list(self._stream.finish())

    def track(
        self, frames: Iterable[UInt8Array], on_frame: Callable[[int], None] | None = None
    ) -> Iterator[FrameResult]:
        """The pull form: every complete frame of `frames` (any iterable, of any length), in
        order; the end of `frames` closes the tracker. `on_frame(pushed)` after each push."""
        for frame in frames:
            yield from self.push(frame)
            if on_frame is not None:
                on_frame(self.pushed)
        yield from self.close()

    # --- what the search recorded ---------------------------------------------------------

    @property
    def record(self) -> TreeRecord:
        """The search tree: its open tail, or every row with `keep_record`."""
        return self._record

    @property
    def objects(self) -> tuple[int, ...]:
        return () if self._stream is None else self._stream.objects

    @property
    def backend(self) -> Backend | None:
        """The backend the stream runs on, once the first prompted frame has arrived."""
        return self._backend

    @property
    def decisions(self) -> list[FrameDecision]:
        """The engine's decisions in the order they came (with `keep_record` only)."""
        return [] if self._stream is None else self._stream.decisions

    @property
    def lags(self) -> list[int]:
        """Frames between each decision's frame arriving and its decision, in order (with
        `keep_record` only)."""
        return [] if self._stream is None else self._stream.lags

    @property
    def lag_counts(self) -> dict[int, int]:
        """How many decisions came how many frames late (lag -> count)."""
        return {} if self._stream is None else self._stream.lag_counts

    @property
    def forced(self) -> int:
        return 0 if self._stream is None else self._stream.forced

    @property
    def rejected(self) -> int:
        return 0 if self._stream is None else self._stream.rejected

    @property
    def first_frame(self) -> int | None:
        return None if self._stream is None else self._stream.first_frame

    # --- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> LiveState:
        """The tracker between two pushes, once a frame has been tracked (see the module
        docstring): take it when every frame its pushes returned has been written."""
        if self._stream is None or self.frame_size is None:
            raise TreememError("no frame has been tracked yet: nothing to snapshot")
        self._resolve_masks()
        return LiveState(
            self._stream.snapshot(), self.pushed, self.frame_size, self._stream.all_prompts,
            tuple(self._waiting), tuple(self.given),
        )

    def restore(self, state: LiveState, memories: bytes, record: TreeRecord) -> None:
        """Go on from `state` in a fresh tracker: `memories` are the backend's at the
        snapshot and `record` the tree record that goes on from its rows (an "open" one that
        numbers its rows on from those written: `TreeRecord.continuing`)."""
        if self.pushed or self._stream is not None or self._closed:
            raise TreememError("restore a LiveTracker before anything is pushed")
        if len(record) != state.stream.engine.tree_rows:
            raise TreememError(
                f"the tree record has {len(record)} rows, the snapshot "
                f"{state.stream.engine.tree_rows}: give the record that goes on from its rows"
            )
        if self.frame_size is not None and self.frame_size != state.frame_size:
            raise InputError(
                f"the snapshot's frames are {state.frame_size}, this tracker's "
                f"{self.frame_size} (height, width)"
            )
        self.frame_size, self.pushed = state.frame_size, state.pushed
        self._waiting, self.given = list(state.waiting), list(state.given)
        self._masks.clear()
        backend = self._open_backend()
        if not isinstance(backend, MemoryExport):
            raise TreememError(f"{type(backend).__name__} cannot import memories")
        backend.import_memories(memories)
        self._record = record
        self._stream = FrameStream(backend, self.strategy, state.tracked, max_lag=self.max_lag,
                                   record=record, keep_decisions=self.keep_record)
        self._stream.restore(state.stream)
        self._stream.start()

    # --- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("the stream is closed; make a new one to track again")

    def _accept(self, frame: UInt8Array) -> int:
        """Check a pushed frame; returns its index."""
        self._check_open()
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise InputError(
                f"a frame is (H, W, 3) uint8 RGB, got shape {array.shape} dtype {array.dtype}"
            )
        size = (int(array.shape[0]), int(array.shape[1]))
        if self.frame_size is None:
            self.frame_size = size
            for prompt in self._waiting:
                check_prompt(prompt, size, None)
        elif size != self.frame_size:
            raise InputError(
                f"frame {self.pushed} is {size[1]}x{size[0]}, the stream is "
                f"{self.frame_size[1]}x{self.frame_size[0]}: all frames must have one size"
            )
        self.pushed += 1
        return self.pushed - 1

    def _resolve_masks(self) -> None:
        """Mask prompts become `Prompt` records (the frame size is known)."""
        assert self.frame_size is not None
        for frame, mask in self._masks:
            found = as_prompts(mask, self.frame_size, None, frame)
            self._waiting += found
            self.given += found
        self._masks.clear()

    def _due(self, index: int) -> list[Prompt]:
        """The prompts on frame `index` (masks given for it become prompts now)."""
        self._resolve_masks()
        due = [p for p in self._waiting if p.frame == index]
        self._waiting = [p for p in self._waiting if p.frame != index]
        return due

    def _open_backend(self) -> Backend:
        if self._backend is None:
            assert self.frame_size is not None
            self._backend = self.make_backend(self.frame_size, self._frames.read)
            if self._backend.frame_size != self.frame_size:
                raise InputError(
                    f"the backend reads {self._backend.frame_size} frames, the stream's are "
                    f"{self.frame_size} (height, width)"
                )
        return self._backend


__all__ = ["LiveFrames", "LiveState", "LiveTracker"]
