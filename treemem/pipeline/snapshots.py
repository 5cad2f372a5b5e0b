"""Snapshots of a running search, so `--resume` goes on from the last one, not from frame 0.

Every `every` searched frames (`treemem run --snapshot-every N`) the run folder's
`snapshot.bin` is replaced by one holding everything the search needs to go on: the engine's
state (each object's beam with its memory histories and pathway-model states such as
SAMURAI's Kalman filters, the lineage, what re-prompts need), the frame stream's writer
position and the masks of frames decided for some objects only, the backend's memories
(`treemem.backend.MemoryExport`: every node still held), and how far masks/ and tree.jsonl
were written. The open tail of the tree record is flushed (and fsynced) to tree.jsonl first,
so the snapshot only needs its length. The video reader needs nothing: it reads frames by
index and seeks to the frame after the snapshot's itself.

A live run (`treemem run --live`) snapshots its tracker the same way (`LiveState`: the
stream's state, the frames pushed, the prompts), every `every` frames pushed. Its resume goes
on with the frames the source sends next, numbered after the snapshot's: a file source skips
the frames the snapshot had pushed first (so the output equals an uninterrupted run's), a live
one (a camera, a URL, standard input) cannot be replayed and simply goes on.

A snapshot is written atomically (temporary file, fsync, rename, fsync of the folder), so a
kill at any moment leaves the previous one whole. `resume_point` reads it back for a resumed
run: it must belong to the same run settings, tree.jsonl must hold at least the rows it
counts and masks/ every frame before its writer position; tree.jsonl is then cut back to the
snapshot's length (a killed run may have gone on writing), its rows counted, and the search
restored; the resumed record holds none of those rows (memory holds the open tail only, as in
any `treemem run`) and numbers its rows on from them. Without a usable snapshot the resume
searches from the first frame, as before snapshots existed.

The file is a pickle read by an unpickler that accepts only treemem's records, numpy arrays
and plain containers; it is a private, version-bound file of one run folder (like the
folder's other files, trust it as you trust the folder), not an exchange format.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from treemem.backend import MemoryExport
from treemem.pipeline.frames import StreamState
from treemem.pipeline.live import LiveState
from treemem.pipeline.sinks import RunFolder, output_errors
from treemem.resume import SNAPSHOT, first_difference
from treemem.tree import TreeRecord
from treemem.types import ConfigError, InputError, TreememError

log = logging.getLogger("treemem.snapshots")

DEFAULT_EVERY = 100
"""Frames between snapshots by default: a resume recomputes at most this many frames."""
FORMAT = 3
"""Bumped whenever what a snapshot holds changes; a snapshot of another format is not used."""


@dataclass(frozen=True)
class Snapshot:
    """What `snapshot.bin` holds (see the module docstring).

    state: the frame stream's (a video) or the live tracker's (`treemem run --live`);
    memories: the backend's `export_memories()`; masks_written: PNGs written (frames
    first..stream.next_frame - 1); tree_rows, tree_bytes: the rows and bytes of tree.jsonl.
    """

    format: int
    settings: Mapping[str, Any]
    state: StreamState | LiveState
    memories: bytes
    masks_written: int
    tree_rows: int
    tree_bytes: int

    @property
    def stream(self) -> StreamState:
        """The frame stream's state (a live tracker's holds one)."""
        return self.state.stream if isinstance(self.state, LiveState) else self.state

    @property
    def frame(self) -> int:
        """The last frame searched before the snapshot."""
        return self.stream.engine.frame


def write_atomically(path: Path, data: bytes) -> None:
    """`data` to `path`: a temporary file beside it, fsynced, renamed over it, the folder
    fsynced; a kill at any point leaves `path` as it was or complete."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class _Unpickler(pickle.Unpickler):
    """Builds only treemem's own classes, numpy arrays and plain containers: a snapshot is
    data, so no function but numpy's array rebuilders may be named in it."""

    _NUMPY: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
        ("collections", "deque"), ("builtins", "set"), ("builtins", "frozenset"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._NUMPY:
            return super().find_class(module, name)
        if module == "treemem" or module.startswith("treemem."):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a snapshot does not hold {module}.{name}")


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot at `path`; None (and a warning) when it is missing, unreadable or of
    another format: the resume then searches from the first frame."""
    if not path.is_file():
        return None
    try:
        snapshot = _Unpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # any unpickling failure means: do not use it
        log.warning("%s is unreadable (%s); searching again from the first frame", path, error)
        return None
    if not isinstance(snapshot, Snapshot) or snapshot.format != FORMAT:
        log.warning("%s is not a snapshot of this treemem version; searching again from the "
                    "first frame", path)
        return None
    return snapshot


@dataclass(frozen=True)
class ResumePoint:
    """A usable snapshot and the tree record that goes on from it: "open", numbering its rows
    on from those tree.jsonl holds up to the snapshot (see `resume_point`)."""

    snapshot: Snapshot
    record: TreeRecord


def resume_point(
    out: Path, settings: Mapping[str, Any], yielded: Callable[[Snapshot], Iterable[str]],
    *, imports: bool = True,
) -> ResumePoint | None:
    """The snapshot a resumed run in `out` goes on from, or None to search from the start
    (no snapshot, an unusable one, or a backend that cannot import memories: `imports`
    False). `yielded(s)` names the PNGs (without .png) the run had written when `s` was taken.

    Raises `InputError` when the snapshot belongs to a run with other settings. Cuts
    tree.jsonl back to the snapshot's length; nothing else is changed until the run goes on.
    """
    snapshot = read_snapshot(out / SNAPSHOT)
    if snapshot is None:
        return None
    difference = first_difference(dict(snapshot.settings), dict(settings))
    if difference is not None:
        raise InputError(
            f"cannot resume from {out / SNAPSHOT}: it was written by a run with other settings "
            f"({difference}); give the interrupted run's options, or --overwrite"
        )
    if not imports:
        log.warning("the backend cannot import memories; searching again from the first frame")
        return None
    tree = out / "tree.jsonl"
    size = tree.stat().st_size if tree.is_file() else -1
    written = {p.stem for p in (out / "masks").glob("*.png")}
    missing = next((name for name in yielded(snapshot) if name not in written), None)
    if size < snapshot.tree_bytes or missing is not None:
        what = f"masks/{missing}.png is missing" if missing else "tree.jsonl is shorter"
        log.warning("%s does not match the run folder (%s); searching again from the first "
                    "frame", out / SNAPSHOT, what)
        return None
    with output_errors(tree):
        os.truncate(tree, snapshot.tree_bytes)
        with open(tree, encoding="utf-8") as lines:
            rows = sum(1 for line in lines if line.strip())
    if rows != snapshot.tree_rows:
        raise TreememError(
            f"{tree} holds {rows} rows up to the snapshot, which counted "
            f"{snapshot.tree_rows}; pass --overwrite to start again"
        )
    return ResumePoint(snapshot, TreeRecord.continuing(rows))


SnapshotSource = Callable[[], tuple[StreamState | LiveState, MemoryExport] | None]
"""What a snapshot is taken of: the running state and the backend holding its memories, or
None while there is nothing to snapshot (a live source's frames before its first prompt)."""


@dataclass(eq=False)
class SnapshotWriter:
    """`search_frames`' (or a live run's) `on_frame` callback: a snapshot after every
    `every`-th searched frame (none after the last of `total`, None: a source of unknown
    length; `count`, `seconds` and `last_bytes` say what they cost)."""

    folder: RunFolder
    take: SnapshotSource
    settings: Mapping[str, Any]
    every: int
    total: int | None = None
    count: int = 0
    seconds: float = 0.0
    last_bytes: int = 0

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"snapshot interval must be >= 1 frame, got {self.every}")

    def __call__(self, done: int) -> None:
        if done % self.every or (self.total is not None and done >= self.total):
            return
        started = time.perf_counter()
        tree_rows, tree_bytes = self.folder.sync_tree()
        taken = self.take()
        if taken is None:
            return
        state, backend = taken
        snapshot = Snapshot(
            FORMAT, dict(self.settings), state, backend.export_memories(),
            self.folder.masks.written, tree_rows, tree_bytes,
        )
        data = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
        path = self.folder.out / SNAPSHOT
        with output_errors(path):
            write_atomically(path, data)
        seconds = time.perf_counter() - started
        self.count += 1
        self.last_bytes = len(data)
        self.seconds += seconds
        log.info("snapshot after frame %d: %d bytes (%d of them memories) in %.1f ms",
                 snapshot.frame, len(data), len(snapshot.memories), 1000 * seconds)


__all__ = [
    "DEFAULT_EVERY",
    "ResumePoint",
    "Snapshot",
    "SnapshotSource",
    "SnapshotWriter",
    "read_snapshot",
    "resume_point",
    "write_atomically",
]
