"""A whole run, from prompts to a run folder or to arrays; what every front end calls.

`search_frames` is the one loop: engine decisions -> complete frames -> sinks; `search_sweep`
is the same for many configurations in one pass (`treemem.pipeline.sweep`). `run_to_folder`
adds the run folder's bookkeeping (settings for --resume, tree.jsonl, run.json, progress);
`treemem run`, `treemem demo` and the bench scripts call it, `treemem.track` the loop alone.
`run_live_source` is `treemem run --live`: a live source into a run folder.
"""

from __future__ import annotations

import itertools
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import treemem
from treemem.backend import Backend, MemoryExport
from treemem.io.stream import LiveSource
from treemem.pipeline.frames import FrameResult, FrameStream, RunDirection, check_direction
from treemem.pipeline.inputs import BackendName, ModelSpec, OpenedVideo, live_backend
from treemem.pipeline.live import LiveState, LiveTracker
from treemem.pipeline.sinks import FrameSink, RunFolder, parameters_record, progress_bar
from treemem.pipeline.snapshots import Snapshot, SnapshotWriter, resume_point
from treemem.pipeline.sweep import SweepStream
from treemem.registry import REGISTRY
from treemem.resume import PARTIAL, SNAPSHOT, run_settings
from treemem.strategy import StrategySet
from treemem.tree import TreeRecord
from treemem.types import ConfigError, Prompt, TreememError, UInt8Array

log = logging.getLogger("treemem.run")


@dataclass(frozen=True)
class StrategyChoice:
    """A strategy set built for a run, with the parameter record it came from (for run.json
    and resume; None for a set built by hand)."""

    strategy: StrategySet
    parameters: Any = None

    @property
    def name(self) -> str:
        return self.strategy.name


def choose_strategy(
    strategy: str | StrategySet | Any, overrides: Mapping[str, object] | None = None
) -> StrategyChoice:
    """A registered name (with overrides), a parameter record with `build()`, or a built
    `StrategySet`."""
    if isinstance(strategy, str):
        params = REGISTRY.create(strategy, overrides)
        return StrategyChoice(params.build(), params)
    if overrides:
        raise ConfigError(
            "overrides apply to a strategy given by name; for a parameter record use "
            "dataclasses.replace(record, ...)"
        )
    if isinstance(strategy, StrategySet):
        return StrategyChoice(strategy)
    build = getattr(strategy, "build", None)
    if callable(build) and not isinstance(strategy, type):
        built = build()
        if isinstance(built, StrategySet):
            return StrategyChoice(built, strategy)
    raise ConfigError(
        f"strategy must be a registered name, a StrategySet or a parameter record with build(), "
        f"got {strategy!r}"
    )


def search_frames(
    stream: FrameStream,
    sinks: Sequence[FrameSink],
    *,
    label: str = "",
    progress: bool | None = False,
    on_frame: Callable[[int], None] | None = None,
) -> float:
    """Run the search, give every complete frame to every sink; returns the wall time of the
    search and mask retrieval, without the sinks' time (writing PNGs is not tracking).
    `progress` None: a bar when stderr is a terminal; `on_frame(done)` after each searched
    frame, for a caller's own progress display."""
    total = stream.frame_count
    with progress_bar(total, label or stream.strategy.name, enabled=progress) as bar:
        searched = _progress(bar, on_frame)
        return _write_timed((sinks, result) for result in stream.frames(searched))


def search_sweep(
    sweep: SweepStream,
    sinks: Sequence[Sequence[FrameSink]],
    *,
    label: str = "",
    progress: bool | None = False,
    on_frame: Callable[[int], None] | None = None,
) -> float:
    """`search_frames` for a sweep: configuration i's frames go to `sinks[i]`; returns the
    wall time of the whole pass (every configuration), without the sinks' time."""
    if len(sinks) != len(sweep.streams):
        raise ValueError(f"{len(sweep.streams)} configurations, {len(sinks)} lists of sinks")
    total = sweep.frame_count
    with progress_bar(total, label or "sweep", enabled=progress) as bar:
        searched = _progress(bar, on_frame)
        return _write_timed((sinks[i], result) for i, result in sweep.frames(searched))


def _progress(bar: Any, on_frame: Callable[[int], None] | None) -> Callable[[int], None]:
    def searched(done: int) -> None:
        bar.update(done - bar.n)
        if on_frame is not None:
            on_frame(done)

    return searched


def _write_timed(results: Iterator[tuple[Sequence[FrameSink], FrameResult]]) -> float:
    """Write each result to its sinks; the wall time spent outside the sinks."""
    started = time.perf_counter()
    sink_seconds = 0.0
    for sinks, result in results:
        writing = time.perf_counter()
        for sink in sinks:
            sink.write(result)
        sink_seconds += time.perf_counter() - writing
    return time.perf_counter() - started - sink_seconds


def run_to_folder(
    opened: OpenedVideo,
    prompts: Sequence[Prompt],
    choice: StrategyChoice,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    max_lag: int | None = None,
    progress: bool | None = None,
    label: str = "",
    extra_sinks: Sequence[FrameSink] = (),
    snapshot_every: int | None = None,
    direction: RunDirection = "forward",
) -> dict[str, Any]:
    """Search and write masks/, tree.jsonl and run.json into `out`; returns what run.json holds.

    With `resume`, an interrupted run in `out` started with the same settings is finished
    (see `treemem.resume`): the files end up identical to an uninterrupted run's, timings in
    run.json aside. It goes on from the run's last snapshot when there is one (written every
    `snapshot_every` searched frames, None: none; see `treemem.pipeline.snapshots`), else it
    searches from the first frame. A KeyboardInterrupt propagates after the folder is left
    resumable. `direction`: track forward, backward or both ways from the prompts
    (`FrameStream`; a two-way run's snapshots are of whichever search is running).
    """
    check_direction(direction)
    parameters = parameters_record(choice.parameters)
    info = {"video": opened.video_info, "backend": opened.backend_info}
    settings = run_settings(choice.name, parameters, info, prompts, max_lag, direction)
    backend = opened.backend
    # The folder's tree.jsonl is the whole record: memory holds its open tail only.
    stream = FrameStream(backend, choice.strategy, prompts, max_lag=max_lag, direction=direction,
                         record=TreeRecord(keep="open"))
    point = None
    if resume and (out / PARTIAL).is_file():
        names = opened.frame_names
        point = resume_point(out, settings,
                             lambda s: (names[f] for f in stream.yielded_before(s.stream)),
                             imports=isinstance(backend, MemoryExport))
    if point is not None:
        assert isinstance(backend, MemoryExport)  # resume_point checked it
        backend.import_memories(point.snapshot.memories)
        stream.record = point.record
        stream.restore(point.snapshot.stream)
        log.info("resuming from the snapshot taken after frame %d", point.snapshot.frame)
    folder = RunFolder.open(
        out, opened.frame_names, settings, stream.record, overwrite=overwrite, resume=resume,
        continue_tree=point is not None,
    )
    on_frame = None
    if snapshot_every is not None and isinstance(backend, MemoryExport):
        exporting = backend
        on_frame = SnapshotWriter(folder, lambda: (stream.snapshot(), exporting), settings,
                                  snapshot_every, total=stream.frame_count)
    if point is not None:
        folder.masks.written = point.snapshot.masks_written
    try:
        seconds = search_frames(stream, [folder, *extra_sinks], label=label, progress=progress,
                                on_frame=on_frame)
    except BaseException:
        folder.close()
        raise
    report = _report(choice, parameters, info, prompts, stream, folder.masks.written, max_lag,
                     seconds, direction)
    folder.finish(report)
    return report


def run_live_to_folder(
    tracker: LiveTracker,
    frames: Callable[[int], Iterable[UInt8Array]],
    choice: StrategyChoice,
    out: Path,
    describe: Callable[[], dict[str, Any]],
    *,
    backend_info: dict[str, Any],
    overwrite: bool = False,
    resume: bool = False,
    snapshot_every: int | None = None,
    progress: bool | None = None,
    extra_sinks: Sequence[FrameSink] = (),
) -> dict[str, Any]:
    """`run_to_folder` for a live source: `frames(pushed)` are the source's frames after the
    first `pushed` ones (0 unless the run resumes from a snapshot), of unknown length, pushed
    to `tracker` as they come; each frame's PNG is written as soon as it is decided, and the
    end of the frames (the source stopped or broke off) decides and writes the rest, then
    run.json. `describe()` says what run.json records about the source, once it has ended.

    Every `snapshot_every` frames pushed the tracker is snapshotted (None: never); with
    `resume` an interrupted run in `out` goes on from its last snapshot with the frames
    `frames(pushed)` gives (see `treemem.pipeline.snapshots`), or from the first frame
    without one."""
    parameters = parameters_record(choice.parameters)
    settings = run_settings(choice.name, parameters, {"video": {"live": True}},
                            tracker.given, tracker.max_lag)
    point = None
    if resume and (out / PARTIAL).is_file():
        point = resume_point(out, settings, _live_yielded)
    if point is not None:
        state = point.snapshot.state
        if not isinstance(state, LiveState):
            raise TreememError(f"{out / SNAPSHOT} is not a live run's snapshot")
        tracker.restore(state, point.snapshot.memories, point.record)
        log.info("resuming from the snapshot taken after frame %d", point.snapshot.frame)
    folder = RunFolder.open(out, None, settings, tracker.record, overwrite=overwrite,
                            resume=resume, continue_tree=point is not None)
    if point is not None:
        folder.masks.written = point.snapshot.masks_written
    snapshots = None
    if snapshot_every is not None:
        snapshots = SnapshotWriter(folder, lambda: _live_snapshot(tracker), settings,
                                   snapshot_every)
    started = time.perf_counter()
    sink_seconds = 0.0

    def pushed(count: int) -> None:
        bar.update(1)
        if snapshots is not None:
            snapshots(count)

    try:
        with progress_bar(None, choice.name, enabled=progress) as bar:
            for result in tracker.track(frames(tracker.pushed), on_frame=pushed):
                writing = time.perf_counter()
                for sink in (folder, *extra_sinks):
                    sink.write(result)
                sink_seconds += time.perf_counter() - writing
    except BaseException:
        folder.close()
        raise
    seconds = time.perf_counter() - started - sink_seconds
    info = {"video": describe(), "backend": backend_info}
    report = _report(choice, parameters, info, tracker.given, tracker, folder.masks.written,
                     tracker.max_lag, seconds, "forward")
    folder.finish(report)
    return report


def _live_yielded(snapshot: Snapshot) -> list[str]:
    """The PNGs a live run had written when `snapshot` was taken (its frames are numbered)."""
    state = snapshot.state
    if not isinstance(state, LiveState):
        return ["(not a live run's snapshot)"]
    first = min(p.frame for p in state.tracked)
    return [f"{frame:05d}" for frame in range(first, state.stream.next_frame)]


def _live_snapshot(tracker: LiveTracker) -> tuple[LiveState, MemoryExport] | None:
    """The tracker's state and backend, once it tracks (None before, or when the backend
    cannot export its memories)."""
    backend = tracker.backend
    if backend is None or not isinstance(backend, MemoryExport):
        return None
    return tracker.snapshot(), backend


class LivePreview(Protocol):
    """Sinks that draw each decided frame over the frame itself (`treemem.viz.preview`):
    they see the frames as they decode (`hold`) and the results as they are decided."""

    sinks: Sequence[FrameSink]

    def hold(self, frames: Iterable[UInt8Array]) -> Iterator[UInt8Array]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LiveRun:
    """How a live run ended: run.json's report, the frames decoded, why the source broke off
    (None: it ended, or Ctrl-C stopped it) and whether Ctrl-C stopped it."""

    report: dict[str, Any]
    decoded: int
    broken: str | None
    stopped: bool


def run_live_source(
    source: LiveSource,
    choice: StrategyChoice,
    out: Path,
    *,
    backend: BackendName | Backend = "sam2",
    model: ModelSpec | None = None,
    mask: UInt8Array | None = None,
    mask_frame: int = 0,
    prompt: Prompt | None = None,
    max_lag: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    snapshot_every: int | None = None,
    progress: bool | None = None,
    preview: Callable[[], LivePreview] | None = None,
) -> LiveRun:
    """`run_live_to_folder` over a `LiveSource`, decoded as it comes: `mask` (object ids) on
    `mask_frame` and `prompt` are the prompts; `preview()`, made once the source is open,
    draws the decided frames. The first Ctrl-C (in the main thread) ends the source after the
    frame being searched, so what is open is decided and written; a second one interrupts at
    once (KeyboardInterrupt, the folder left unfinished). A source that breaks off mid-way
    ends the run as one that ends does, with `broken` saying why. A run resumed from a
    snapshot skips the frames it had pushed when the source is a file (`LiveSource.replayable`),
    and goes on with what a live source sends now."""
    spec = model if model is not None else ModelSpec()
    tracker = LiveTracker(choice.strategy, live_backend(backend, spec), max_lag=max_lag)
    if mask is not None:
        tracker.prompt(mask, frame=mask_frame)
    if prompt is not None:
        tracker.prompt(prompt)
    info = spec.info(backend) if isinstance(backend, str) else {"name": type(backend).__name__}
    source.open()
    shown: LivePreview | None = None
    try:
        shown = None if preview is None else preview()
        with _stop_on_ctrl_c() as stopped:

            def frames(pushed: int) -> Iterable[UInt8Array]:
                decoded = source.frames()
                if pushed and source.replayable:
                    decoded = itertools.islice(decoded, pushed, None)
                elif pushed:
                    log.warning("%s cannot be replayed: the resumed run goes on with the "
                                "frames it sends now, numbered from %d", source.source, pushed)
                held = _until(stopped, decoded)
                return held if shown is None else shown.hold(held)

            report = run_live_to_folder(
                tracker, frames, choice, out, source.describe, backend_info=info,
                overwrite=overwrite, resume=resume, snapshot_every=snapshot_every,
                progress=progress, extra_sinks=() if shown is None else shown.sinks,
            )
    finally:
        source.close()
        if shown is not None:
            shown.close()
    return LiveRun(report, source.decoded, source.broken, stopped[0])


@contextmanager
def _stop_on_ctrl_c() -> Iterator[list[bool]]:
    """The first Ctrl-C sets the flag (the live source then ends after the frame being
    searched) and gives SIGINT back to its previous handler, so a second one interrupts."""
    stopped = [False]
    previous = signal.getsignal(signal.SIGINT)

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped[0] = True
        signal.signal(signal.SIGINT, previous)

    with suppress(ValueError):  # not the main thread (an embedding program): Ctrl-C as usual
        signal.signal(signal.SIGINT, stop)
    try:
        yield stopped
    finally:
        if signal.getsignal(signal.SIGINT) is stop:
            signal.signal(signal.SIGINT, previous)


def _until(stopped: list[bool], frames: Iterator[UInt8Array]) -> Iterator[UInt8Array]:
    for frame in frames:
        if stopped[0]:
            return
        yield frame


def _report(
    choice: StrategyChoice,
    parameters: dict[str, Any],
    info: dict[str, Any],
    prompts: Sequence[Prompt],
    stream: FrameStream | LiveTracker,
    frames: int,
    max_lag: int | None,
    seconds: float,
    direction: RunDirection,
) -> dict[str, Any]:
    """What run.json holds."""
    return {
        "treemem": treemem.__version__,
        "strategy": choice.name,
        "parameters": parameters,
        **info,
        "prompts": [{"object": p.obj, "frame": p.frame, "kind": p.kind} for p in prompts],
        "objects": list(stream.objects),
        "direction": direction,
        "first_frame": stream.first_frame,
        "frames": frames,
        "max_lag": max_lag,
        "forced_decisions": stream.forced,
        "rejected_candidates": stream.rejected,
        "tree_rows": len(stream.record),
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 3) if seconds > 0 else None,
    }
