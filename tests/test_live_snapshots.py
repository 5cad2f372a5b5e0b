"""Resume without replaying, for live sources (issue 14, item 5): a `treemem run --live` (here
`run_live_source`, which it calls) that dies at frame 900 of 1,000 goes on from its last
snapshot. A file source skips the frames the snapshot had pushed and the folder ends up
byte-identical to an uninterrupted run's, recomputing at most `snapshot_every` frames; a
live source that cannot be replayed goes on with the frames it sends now, numbered after the
snapshot's. The random-weight SAM 2 case (a real SIGKILL) is in tests/backends/test_sam2_live.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.io.stream import LiveSource
from treemem.pipeline.live import LiveState, LiveTracker
from treemem.pipeline.runner import LiveRun, choose_strategy, run_live_source
from treemem.pipeline.sinks import run_files
from treemem.pipeline.snapshots import read_snapshot
from treemem.resume import PARTIAL, SNAPSHOT
from treemem.tree import TreeRecord
from treemem.types import TreememError, UInt8Array

pytest.importorskip("PIL.Image")

FRAMES, KILL, EVERY = 1000, 900, 64


class Died(BaseException):
    """The process dying at a frame (what SIGKILL is to the real run)."""


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    """Two objects, so snapshots hold frames decided for one object only."""
    return make_video(11, num_frames=FRAMES, height=48, width=64, num_objects=2)


class Source(LiveSource):
    """The video's frames from `start` on, as a file (`replayable`) or a camera would send."""

    def __init__(self, video: SyntheticVideo, *, replayable: bool, start: int = 0,
                 count: int | None = None) -> None:
        super().__init__("frames")
        self.video, self.start, self.count = video, start, count
        self._replayable = replayable

    @property
    def replayable(self) -> bool:
        return self._replayable

    def open(self) -> LiveSource:
        return self

    def frames(self) -> Iterator[UInt8Array]:
        end = None if self.count is None else self.start + self.count
        for frame in self.video.frames[self.start:end]:
            self.decoded += 1
            yield frame

    def close(self) -> None:
        pass


def run(video: SyntheticVideo, source: Source, out: Path, *, resume: bool = False,
        die_at: int | None = None, encoded: list[int] | None = None) -> LiveRun:
    backend = SyntheticBackend(video)
    encode = backend.encode

    def encode_or_die(frame: int) -> object:
        if frame == die_at:
            raise Died
        if encoded is not None:
            encoded.append(frame)
        return encode(frame)

    backend.encode = encode_or_die  # type: ignore[method-assign]
    return run_live_source(source, choose_strategy("sam2long"), out, backend=backend,
                           mask=video.gt[0], progress=False, resume=resume,
                           snapshot_every=EVERY)



def died_at_900(video: SyntheticVideo, out: Path) -> None:
    with pytest.raises(Died):
        run(video, Source(video, replayable=True), out, die_at=KILL)
    assert (out / PARTIAL).is_file() and not (out / "run.json").exists()
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None and isinstance(snapshot.state, LiveState)
    assert snapshot.frame == (KILL // EVERY) * EVERY - 1  # 895: the last before the kill


@pytest.fixture(scope="module")
def whole(video: SyntheticVideo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("whole") / "run"
    ran = run(video, Source(video, replayable=True), out)
    assert ran.report["frames"] == FRAMES and not (out / SNAPSHOT).exists()
    return run_files(out)


def test_a_live_run_of_a_file_resumes_from_its_snapshot(
    video: SyntheticVideo, whole: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    died_at_900(video, out)
    encoded: list[int] = []
    ran = run(video, Source(video, replayable=True), out, resume=True, encoded=encoded)
    assert ran.decoded == FRAMES  # the 896 frames the snapshot pushed were decoded, skipped
    assert encoded == list(range(896, FRAMES))  # searched from the snapshot on, nothing else
    assert len(encoded) - (FRAMES - KILL) <= EVERY  # frames the dead run had searched already
    assert run_files(out) == whole


def test_a_live_source_goes_on_with_what_it_sends_after_the_resume(
    video: SyntheticVideo, whole: dict[str, bytes], tmp_path: Path
) -> None:
    """A camera cannot be replayed: its frames after the resume are numbered on from the
    snapshot's (here it sends the frames from 896 on, so the run equals the whole one)."""
    out = tmp_path / "run"
    died_at_900(video, out)
    run(video, Source(video, replayable=False, start=896), out, resume=True)
    files, expected = run_files(out), dict(whole)
    key = "run.json (timings removed)"
    report, expected_report = json.loads(files.pop(key)), json.loads(expected.pop(key))
    assert files == expected
    assert report["video"].pop("frames") == FRAMES - 896  # what the source decoded this time
    expected_report["video"].pop("frames")
    assert report == expected_report
    short = tmp_path / "short"
    died_at_900(video, short)
    ran = run(video, Source(video, replayable=False, start=896, count=50), short, resume=True)
    names = sorted(p.name for p in (short / "masks").glob("*.png"))
    assert ran.report["frames"] == 946 and names[-1] == "00945.png" and len(names) == 946


def test_a_resume_without_a_snapshot_searches_from_the_first_frame(
    video: SyntheticVideo, whole: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    died_at_900(video, out)
    (out / SNAPSHOT).unlink()
    encoded: list[int] = []
    run(video, Source(video, replayable=True), out, resume=True, encoded=encoded)
    assert encoded[0] == 0 and len(encoded) >= FRAMES
    assert run_files(out) == whole


def test_restore_needs_a_fresh_tracker(video: SyntheticVideo) -> None:
    strategy = choose_strategy("greedy").strategy
    tracker = LiveTracker(strategy, lambda size, read: SyntheticBackend(video))
    tracker.prompt(video.gt[0])
    for frame in video.frames[:3]:
        tracker.push(frame)
    state = tracker.snapshot()
    memories = tracker.backend.export_memories()  # type: ignore[union-attr]
    with pytest.raises(TreememError, match="before anything is pushed"):
        tracker.restore(state, memories, TreeRecord.continuing(0))
    fresh = LiveTracker(strategy, lambda size, read: SyntheticBackend(video))
    with pytest.raises(TreememError, match="rows"):  # the record must go on from the snapshot's
        fresh.restore(state, memories, TreeRecord.continuing(0))
    again = LiveTracker(strategy, lambda size, read: SyntheticBackend(video))
    rows = len(tracker.record)
    again.restore(state, memories, TreeRecord.continuing(rows))
    ahead = [r.ids() for frame in video.frames[3:8] for r in tracker.push(frame)]
    resumed = [r.ids() for frame in video.frames[3:8] for r in again.push(frame)]
    assert again.pushed == tracker.pushed == 8
    assert len(ahead) == len(resumed) > 0
    assert all(np.array_equal(a, b) for a, b in zip(ahead, resumed, strict=True))
