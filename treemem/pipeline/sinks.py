"""Where per-frame results go: memory, a folder of palette PNGs, a run folder.

Every file a sink creates or writes goes through `output_errors`, so a parent that is a file,
a missing permission, or a full or read-only disk ends as one `OutputError` naming the path
and the cause (the CLI prints it as one line, exit code 2), never as a traceback. Files are
written atomically and a run folder stays resumable after any such error.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from treemem.io.atomic import remove_temporaries, write_json
from treemem.io.masks import read_mask, write_palette_png
from treemem.pipeline.frames import FrameResult
from treemem.resume import PARTIAL, SNAPSHOT, begin, finish
from treemem.tree import TreeRecord
from treemem.types import InputError, OutputError, UInt8Array

RUN_FILES = ("run.json", PARTIAL, "tree.jsonl", "masks")
TREE_FLUSH_FRAMES = 50


@contextmanager
def output_errors(path: Path, action: str = "write") -> Iterator[None]:
    """Turn an `OSError` while writing `path` into one `OutputError` naming path and cause."""
    try:
        yield
    except OSError as error:
        raise OutputError(describe_output_error(path, error, action)) from None


def file_in_the_way(path: Path) -> Path | None:
    """The file standing where `path` or one of its parent folders must be, if any."""
    return next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)


def describe_output_error(path: Path, error: OSError, action: str = "write") -> str:
    """`cannot write PATH: CAUSE; WHAT TO DO`, the cause in words (no traceback)."""
    code = error.errno
    cause = os.strerror(code) if code else str(error)
    if code == errno.ENOTDIR or (code == errno.EEXIST and not Path(path).is_dir()):
        blocker = file_in_the_way(Path(path))
        cause = f"{blocker} is a file, not a folder" if blocker is not None else cause
    hint = {
        errno.ENOSPC: "free some space and rerun (a run folder resumes with --resume)",
        errno.EACCES: "choose a folder you may write to",
        errno.EPERM: "choose a folder you may write to",
        errno.EROFS: "choose a folder on a writable disk",
    }.get(code or 0, "choose another output path")
    return f"cannot {action} {path}: {cause}; {hint}"


def make_folder(path: Path) -> None:
    with output_errors(path, "create"):
        path.mkdir(parents=True, exist_ok=True)


class FrameSink(Protocol):
    """Receives complete frames in frame order."""

    def write(self, result: FrameResult) -> None: ...


@dataclass(eq=False)
class IdArraySink:
    """(T, H, W) uint8 object ids in memory (frames not tracked stay background)."""

    ids: UInt8Array

    @classmethod
    def for_video(cls, num_frames: int, frame_size: tuple[int, int]) -> IdArraySink:
        return cls(np.zeros((num_frames, *frame_size), dtype=np.uint8))

    def write(self, result: FrameResult) -> None:
        self.ids[result.frame] = result.ids()


@dataclass(eq=False)
class PaletteFolderSink:
    """One DAVIS palette PNG per frame, `folder/NAME.png` with NAME from `names` (None: the
    frame number, `00042`, for a live source whose length is unknown), written atomically as
    each frame completes.

    With `keep_equal` (a resumed run) a PNG already on disk holding the same ids is left
    untouched, any other one is replaced.
    """

    folder: Path
    names: Sequence[str] | None
    keep_equal: bool = False
    written: int = 0

    def __post_init__(self) -> None:
        make_folder(self.folder)
        remove_temporaries(self.folder, "*.png")

    def write(self, result: FrameResult) -> None:
        ids = result.ids()
        name = f"{result.frame:05d}" if self.names is None else self.names[result.frame]
        path = self.folder / f"{name}.png"
        if not (self.keep_equal and _holds(path, ids)):
            with output_errors(path):
                write_palette_png(path, ids)
        self.written += 1


def _holds(path: Path, ids: UInt8Array) -> bool:
    """Whether the PNG at `path` exists and holds exactly `ids`."""
    if not path.is_file():
        return False
    try:
        found = read_mask(path)
    except InputError:
        return False
    return found.shape == ids.shape and bool((found == ids).all())


def write_report(path: Path, report: dict[str, Any]) -> None:
    """A JSON record written atomically, its errors as `OutputError`."""
    with output_errors(path):
        write_json(path, report)


# --- the run folder -----------------------------------------------------------------------------


def check_output(out: Path, *, overwrite: bool, resume: bool = False) -> None:
    """Refuse a file, or a folder holding another run unless `overwrite`, or `resume` when
    that run is finished (nothing is written)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    blocker = file_in_the_way(out.parent)
    if blocker is not None:
        raise OutputError(f"cannot create {out}: {blocker} is a file, not a folder; "
                          "choose another output path")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume and "run.json" in found:
        raise InputError(
            f"{out} holds a finished run (run.json), nothing to resume; pass --overwrite to run "
            "it again"
        )
    if found and not (overwrite or resume):
        raise InputError(
            f"{out} already holds a run ({found[0]}); pass --overwrite to replace it, --resume "
            "to finish an interrupted one, or choose another --out"
        )


def clear_run(out: Path) -> None:
    """Remove a previous run's files, run.json first so a half-cleared folder never looks done.

    Only treemem's own files go: run.json, run.partial.json, snapshot.bin, tree.jsonl and
    masks/*.png.
    """
    with output_errors(out, "clear"):
        for name in ("run.json", PARTIAL, SNAPSHOT, "tree.jsonl"):
            (out / name).unlink(missing_ok=True)
        masks = out / "masks"
        if masks.is_dir():
            for file in masks.iterdir():
                if file.is_file() and (file.suffix == ".png" or file.name.endswith(".tmp")):
                    file.unlink()


@dataclass(eq=False)
class RunFolder:
    """A `treemem run` output folder: masks/ (palette PNGs), tree.jsonl, run.json.

    `open` checks and prepares the folder and records the run's settings (run.partial.json);
    `finish` writes run.json last, so a folder without it holds an unfinished, resumable run.
    """

    out: Path
    masks: PaletteFolderSink
    record: TreeRecord
    resuming: bool
    _tree: IO[str] | None = field(default=None, repr=False)
    _frames: int = 0

    @classmethod
    def open(
        cls,
        out: Path,
        names: Sequence[str] | None,
        settings: dict[str, Any],
        record: TreeRecord,
        *,
        overwrite: bool = False,
        resume: bool = False,
        continue_tree: bool = False,
    ) -> RunFolder:
        """`continue_tree`: append to tree.jsonl (a resume from a snapshot, which has cut it
        back to the snapshot's rows) instead of writing it afresh."""
        check_output(out, overwrite=overwrite, resume=resume)
        make_folder(out)
        if overwrite:
            clear_run(out)
        with output_errors(out / PARTIAL):
            resuming = begin(out, settings, resume=resume)
            for name in ("run.json", PARTIAL, SNAPSHOT):
                remove_temporaries(out, name)
        masks = PaletteFolderSink(out / "masks", names, keep_equal=resuming)
        with output_errors(out / "tree.jsonl"):
            mode = "a" if continue_tree and resuming else "w"
            tree = open(out / "tree.jsonl", mode, encoding="utf-8")  # noqa: SIM115 (closed in finish)
        record.hold_until_written()  # an "open" record drops rows only once in tree.jsonl
        return cls(out, masks, record, resuming, tree)

    def write(self, result: FrameResult) -> None:
        self.masks.write(result)
        self._frames += 1
        if self._frames % TREE_FLUSH_FRAMES == 0:
            self.flush_tree()

    def flush_tree(self) -> None:
        """Append the tree rows recorded since the last flush."""
        if self._tree is None:
            return
        with output_errors(self.out / "tree.jsonl"):
            self.record.write_new_rows(self._tree)
            self._tree.flush()

    def sync_tree(self) -> tuple[int, int]:
        """Flush every recorded row to tree.jsonl and fsync it (a snapshot counts on them
        being on disk); returns the rows and bytes the file holds."""
        self.flush_tree()
        if self._tree is None:
            raise OutputError(f"{self.out / 'tree.jsonl'} is closed")
        with output_errors(self.out / "tree.jsonl"):
            os.fsync(self._tree.fileno())
            size = os.fstat(self._tree.fileno()).st_size
        return len(self.record), size

    def finish(self, report: dict[str, Any]) -> None:
        """The last tree rows, then run.json; the run is no longer resumable."""
        self.flush_tree()
        self.close()
        write_report(self.out / "run.json", report)
        finish(self.out)

    def close(self) -> None:
        if self._tree is not None:
            with suppress(OSError):  # the error that stopped the run was already reported
                self._tree.close()
            self._tree = None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """run.json of a run folder, {} when it has none (an interrupted run)."""
    path = run_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not JSON ({error})") from None
    return info if isinstance(info, dict) else {}


def read_run_tree(path: Path) -> tuple[Path, TreeRecord]:
    """(the run folder, its tree) from a run folder or a tree.jsonl path."""
    tree_path = path / "tree.jsonl" if path.is_dir() else path
    if not tree_path.is_file():
        raise InputError(f"no tree at {tree_path}: give a `treemem run` output folder")
    return tree_path.parent, TreeRecord.load_jsonl(tree_path)


TIMINGS = ("seconds", "fps")
"""run.json's fields that differ between two runs of the same thing."""


def run_files(out: Path) -> dict[str, bytes]:
    """Every file of a finished run folder by its relative path, run.json without its timings
    (`TIMINGS`): two folders compare equal iff they hold the same run (how a resumed run is
    checked against an uninterrupted one)."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    report = json.loads(files.pop("run.json"))
    for key in TIMINGS:
        report.pop(key, None)
    files["run.json (timings removed)"] = json.dumps(report, sort_keys=True).encode()
    return files


def interrupted_message(out: Path) -> str:
    """After Ctrl-C: clear half-written PNGs, say how many frames are safe and how to finish."""
    folder = out / "masks"
    remove_temporaries(folder, "*.png")
    written = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
    return (
        f"interrupted; {written} finished frame(s) are in {folder}; run the same command "
        "with --resume to finish"
    )


def parameters_record(params: Any) -> dict[str, Any]:
    """A strategy parameter record as JSON-ready values (run.json, resume settings)."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    return {}


def progress_bar(total: int | None, label: str, *, unit: str = "frames",
                 enabled: bool | None = None, stream: IO[str] | None = None) -> Any:
    """A tqdm bar on stderr, off by default when stderr is not a terminal (logs and CI)."""
    from tqdm import tqdm

    out = stream if stream is not None else sys.stderr
    show = out.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=label or None, unit=f" {unit}", file=out, disable=not show,
                dynamic_ncols=True, leave=True)
