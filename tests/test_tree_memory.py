"""Memory flat over long streams (issue 14): a stream's and a `treemem run`'s tree record hold
their open tail only, a bounded number of rows however long the video, and what a run writes
to tree.jsonl is the whole record byte for byte (the record `treemem.track` keeps whole)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import treemem
import treemem.pipeline.runner as runner
import treemem.tree as tree
from treemem import Prompt
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.pipeline.inputs import open_backend
from treemem.pipeline.runner import choose_strategy, run_to_folder
from treemem.pipeline.sinks import TREE_FLUSH_FRAMES
from treemem.tree import TreeRecord
from treemem.types import TreememError

DROP = 128
"""Rows dropped at least at once, made small so a short video drops many times."""
ROWS_PER_FRAME = 9
"""sam2long P=3, K=3: the rows one object adds per frame."""


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "_DROP_AT_LEAST", DROP)


@pytest.fixture(scope="module")
def long_video() -> SyntheticVideo:
    return make_video(3, num_frames=800, height=32, width=40, num_objects=2)


def test_a_long_stream_holds_a_bounded_number_of_rows(long_video: SyntheticVideo) -> None:
    max_lag = 15
    prompts = [Prompt(1, 0, mask=long_video.object_mask(1, 0))]
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(long_video, seed=0),
                             prompts=prompts, max_lag=max_lag)
    held, emitted = [], 0
    for pushed, frame in enumerate(long_video.frames, 1):
        emitted += len(tracker.push(frame))
        record = tracker.record
        held.append(record.held)
        # The open tail is held: the rows of every frame not emitted yet.
        assert emitted == pushed or (record.held > 0 and record.columns().frame[0] <= emitted)
    tracker.close()
    # The open tail is at most max_lag + 1 frames of rows; batches drop at least DROP rows
    # and at least half of what is held, so at most DROP + twice the tail stays in memory.
    bound = DROP + 2 * (max_lag + 1) * ROWS_PER_FRAME
    assert max(held) <= bound
    assert len(tracker.record) > 10 * bound
    assert tracker.record.first_row > 0


class Spy(TreeRecord):
    """A run's record that notes the most rows it held after any frame."""

    made: ClassVar[list[Spy]] = []

    def __init__(self, **keep: tree.RecordKeep) -> None:
        super().__init__(**keep)
        self.most = 0
        Spy.made.append(self)

    def forget_before(self, row: int) -> None:
        super().forget_before(row)
        self.most = max(self.most, self.held)


@pytest.mark.parametrize("max_lag", [None, 15])
def test_a_run_holds_its_open_tail_and_writes_the_whole_record(
    long_video: SyntheticVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    max_lag: int | None,
) -> None:
    # Two objects, the second prompted late and the first re-prompted: prompt rows recorded
    # ahead of their frames, and frames that wait for the slower object.
    prompts = [Prompt(1, 0, mask=long_video.object_mask(1, 0)),
               Prompt(2, 300, mask=long_video.object_mask(2, 300)),
               Prompt(1, 500, mask=long_video.object_mask(1, 500))]
    whole = treemem.track(long_video, prompts, "sam2long", max_lag=max_lag)
    whole.record.save_jsonl(tmp_path / "whole.jsonl")
    monkeypatch.setattr(runner, "TreeRecord", Spy)
    Spy.made.clear()
    with open_backend(long_video, "synthetic") as opened:
        run_to_folder(opened, prompts, choose_strategy("sam2long"), tmp_path / "run",
                      max_lag=max_lag, progress=False)
    assert (tmp_path / "run" / "tree.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    (record,) = Spy.made
    assert record.first_row > 0 and len(record) == len(whole.record)
    if max_lag is not None:
        # Held: the open tail and the rows not written yet (tree.jsonl is appended every
        # TREE_FLUSH_FRAMES frames written), for two objects.
        tail = (TREE_FLUSH_FRAMES + max_lag + 1) * 2 * ROWS_PER_FRAME
        assert record.most <= DROP + 2 * tail < len(record) / 4


def test_an_open_record_answers_for_the_rows_it_holds_only() -> None:
    record = TreeRecord(keep="open")
    for frame in range(3 * DROP):  # one row a frame, each the child of the one before
        record.append(obj=1, frame=frame, slot=np.zeros(1, np.int64),
                      parent=np.array([0 if frame else -1]), candidate=np.zeros(1, np.int64),
                      score=np.zeros(1), iou=np.ones(1), occlusion=np.ones(1),
                      kept=np.ones(1, bool), parent_row=np.array([frame - 1]))
    record.forget_before(2 * DROP)
    assert (record.first_row, record.held, len(record)) == (2 * DROP, DROP, 3 * DROP)
    assert record.columns().frame[0] == 2 * DROP
    assert record.trace_back(3 * DROP - 1) == list(range(3 * DROP - 1, 2 * DROP - 1, -1))
    for whole in (lambda: record.best_path(1), record.to_networkx,
                  lambda: record.save_jsonl(Path("never-written.jsonl"))):
        with pytest.raises(TreememError, match="whole tree record"):
            whole()
    with pytest.raises(TreememError, match="dropped before they were written"):
        record.hold_until_written()
    kept = TreeRecord()
    kept.append(obj=1, frame=0, slot=np.zeros(1, np.int64), parent=np.array([-1]),
                candidate=np.zeros(1, np.int64), score=np.zeros(1), iou=np.ones(1),
                occlusion=np.ones(1), kept=np.ones(1, bool), parent_row=np.array([-1]))
    kept.forget_before(1)
    assert kept.held == 1 and kept.first_row == 0


def test_a_record_held_until_written_drops_only_written_rows(tmp_path: Path) -> None:
    record = TreeRecord(keep="open")
    record.hold_until_written()
    for frame in range(4 * DROP):
        record.append(obj=1, frame=frame, slot=np.zeros(1, np.int64),
                      parent=np.array([0 if frame else -1]), candidate=np.zeros(1, np.int64),
                      score=np.zeros(1), iou=np.ones(1), occlusion=np.ones(1),
                      kept=np.ones(1, bool), parent_row=np.array([frame - 1]))
        record.forget_before(frame + 1)
    assert record.first_row == 0  # nothing written yet: nothing dropped
    with open(tmp_path / "tree.jsonl", "w", encoding="utf-8") as stream:
        record.write_new_rows(stream)
    record.forget_before(len(record))
    assert record.held == 0
    assert len(TreeRecord.load_jsonl(tmp_path / "tree.jsonl")) == 4 * DROP
