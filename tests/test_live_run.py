"""`run_live_source` (what `treemem run --live` calls): a source into a run folder, the first
Ctrl-C ending the source after the frame being searched, a preview seeing every decided frame,
a source that breaks off reported, not raised."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

import treemem
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.io.masks import read_mask
from treemem.io.stream import LiveSource
from treemem.pipeline.frames import FrameResult
from treemem.pipeline.runner import LiveRun, choose_strategy, run_live_source
from treemem.types import UInt8Array

STOP_AT = 10
"""The frame whose decoding the test's Ctrl-C arrives during."""


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    return make_video(6, num_frames=24, height=48, width=64, num_objects=2)


class Frames(LiveSource):
    """A `LiveSource` over arrays: Ctrl-C (a real SIGINT to this process) while frame
    `interrupt_at` decodes, or a break-off after `break_after` frames."""

    def __init__(self, frames: np.ndarray, interrupt_at: int | None = None,
                 break_after: int | None = None) -> None:
        super().__init__("frames")
        self.array, self.interrupt_at, self.break_after = frames, interrupt_at, break_after
        self.opened = self.closed = False

    def open(self) -> LiveSource:
        self.opened = True
        return self

    def frames(self) -> Iterator[UInt8Array]:
        for index, frame in enumerate(self.array):
            if index == self.break_after:
                self.broken = "connection reset"
                return
            if index == self.interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)
            self.decoded += 1
            yield frame

    def close(self) -> None:
        self.closed = True


class Shown:
    """A preview that records the frames it holds and the results it is given."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self.written: list[int] = []
        self.sinks = [self]
        self.closed = False

    def hold(self, frames: Iterable[UInt8Array]) -> Iterator[UInt8Array]:
        for frame in frames:
            self.held.append(len(self.held))
            yield frame

    def write(self, result: FrameResult) -> None:
        self.written.append(result.frame)

    def close(self) -> None:
        self.closed = True


def _run(video: SyntheticVideo, source: Frames, out: Path, shown: Shown | None = None) -> LiveRun:
    try:
        return run_live_source(
            source, choose_strategy("sam2long"), out, backend=SyntheticBackend(video),
            mask=video.gt[0], progress=False, preview=None if shown is None else lambda: shown,
        )
    except KeyboardInterrupt:
        pytest.fail("the first Ctrl-C interrupted the run instead of ending the source")


def _expected(video: SyntheticVideo, frames: int) -> list[np.ndarray]:
    """What `treemem.stream` gives for the first `frames` frames."""
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video), prompts=video.gt[0])
    results = [r for frame in video.frames[:frames] for r in tracker.push(frame)]
    return [r.ids() for r in results + tracker.close()]


def test_the_first_ctrl_c_ends_the_source_and_writes_what_was_searched(
    video: SyntheticVideo, tmp_path: Path
) -> None:
    before = signal.getsignal(signal.SIGINT)
    source, shown, out = Frames(video.frames, interrupt_at=STOP_AT), Shown(), tmp_path / "out"
    ran = _run(video, source, out, shown)
    assert signal.getsignal(signal.SIGINT) is before
    assert ran.stopped and ran.broken is None and ran.decoded == STOP_AT + 1
    assert ran.report["frames"] == STOP_AT and (out / "run.json").is_file()
    written = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in written] == [f"{t:05d}.png" for t in range(STOP_AT)]
    expected = _expected(video, STOP_AT)
    assert all(np.array_equal(read_mask(p), e) for p, e in zip(written, expected, strict=True))
    assert shown.held == list(range(STOP_AT)) and shown.written == list(range(STOP_AT))
    assert source.opened and source.closed and shown.closed


def test_a_source_that_breaks_off_is_reported_with_what_was_decided(
    video: SyntheticVideo, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    ran = _run(video, Frames(video.frames, break_after=7), out)
    assert not ran.stopped and ran.broken == "connection reset" and ran.decoded == 7
    report = json.loads((out / "run.json").read_text())
    assert report["frames"] == 7 and report["video"]["broken"] == "connection reset"
    assert report["backend"] == {"name": "SyntheticBackend"}
