"""The push API (`treemem.stream`): a stream equals the file run, `max_lag` bounds the delay,
prompts may come later, and wrong use is one clear error."""

from __future__ import annotations

import collections
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import treemem
from treemem import Prompt
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.pipeline.frames import FrameResult
from treemem.types import InputError

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    return make_video(4, num_frames=40, height=48, width=64, num_objects=2)


def pushed(tracker: treemem.LiveTracker, frames: np.ndarray) -> list[tuple[int, FrameResult]]:
    """(index of the frame pushed when it came out, result); close() counts as the last."""
    out = [(t, r) for t, frame in enumerate(frames) for r in tracker.push(frame)]
    return out + [(len(frames) - 1, r) for r in tracker.close()]


@pytest.mark.parametrize("strategy", ["sam2long", "greedy", "samurai-tree"])
@pytest.mark.parametrize("max_lag", [None, 0, 3])
def test_a_stream_equals_the_file_run(video: SyntheticVideo, strategy: str,
                                      max_lag: int | None) -> None:
    expected = treemem.track(video, video.gt[0], strategy, max_lag=max_lag)
    tracker = treemem.stream(strategy, backend=SyntheticBackend(video), prompts=video.gt[0],
                             max_lag=max_lag, keep_record=True)
    results = pushed(tracker, video.frames)
    assert [r.frame for _, r in results] == list(range(video.num_frames))
    for _, result in results:
        assert np.array_equal(result.ids(), expected.masks[result.frame]), result.frame
    assert tracker.decisions == list(expected.decisions)
    assert tracker.lags == list(expected.lags)
    assert tracker.lag_counts == dict(collections.Counter(expected.lags))


@pytest.mark.parametrize("max_lag", [0, 1, 5, 15])
def test_no_frame_comes_out_later_than_max_lag(video: SyntheticVideo, max_lag: int) -> None:
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video), prompts=video.gt[0],
                             max_lag=max_lag)
    results = pushed(tracker, video.frames)
    late = [(t, r.frame) for t, r in results if t - r.frame > max_lag]
    assert late == []
    assert tracker.decisions == [] and tracker.lags == []  # kept with keep_record only
    assert max(tracker.lag_counts) <= max_lag
    assert sum(tracker.lag_counts.values()) == video.num_frames * len(tracker.objects)


def test_exact_frames_come_out_once_decided_not_only_at_the_end(video: SyntheticVideo) -> None:
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video), prompts=video.gt[0])
    results = pushed(tracker, video.frames)
    during = [r.frame for t, r in results if t < video.num_frames - 1]
    assert len(during) > video.num_frames // 2


def test_frames_before_the_first_prompt_are_not_tracked(video: SyntheticVideo) -> None:
    tracker = treemem.stream("greedy", backend=SyntheticBackend(video))
    assert tracker.push(video.frames[0]) == [] and tracker.push(video.frames[1]) == []
    results = tracker.push(video.frames[2], prompts=video.gt[2])
    results += tracker.track(video.frames[3:])
    assert [r.frame for r in results] == list(range(2, video.num_frames))
    assert np.array_equal(results[0].ids(), video.gt[2])


def test_a_new_object_and_a_re_prompt_while_streaming(video: SyntheticVideo) -> None:
    first = Prompt(1, 0, mask=video.object_mask(1, 0))
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video), prompts=first,
                             keep_record=True)
    results: list[FrameResult] = []
    for t, frame in enumerate(video.frames):
        given = None
        if t == 6:
            given = Prompt(2, 6, mask=video.object_mask(2, 6))
        if t == 20:
            given = [Prompt(1, 20, mask=video.object_mask(1, 20))]
        results += tracker.push(frame, prompts=given)
    results += tracker.close()
    assert [r.frame for r in results] == list(range(video.num_frames))
    # A result lists the objects prompted when it came out; object 2 is nowhere before 6.
    assert {r.objects for r in results if r.frame >= 6} == {(1, 2)}
    assert all(not (r.ids() == 2).any() for r in results if r.frame < 6)
    by_frame = {r.frame: r for r in results}
    assert np.array_equal(by_frame[6].ids() == 2, video.object_mask(2, 6))
    assert np.array_equal(by_frame[20].ids() == 1, video.object_mask(1, 20))  # ties: lower id
    assert int((tracker.record.columns().rule == "prompt").sum()) == 3


def test_wrong_use_is_one_clear_error(video: SyntheticVideo) -> None:
    tracker = treemem.stream("greedy", backend=SyntheticBackend(video), prompts=video.gt[0])
    tracker.push(video.frames[0])
    with pytest.raises(InputError, match="all frames must have one size"):
        tracker.push(video.frames[1][:, :32])
    with pytest.raises(InputError, match="uint8 RGB"):
        tracker.push(video.frames[1].astype(np.float32))
    with pytest.raises(InputError, match="pushed already"):
        tracker.prompt(Prompt(1, 0, mask=video.object_mask(1, 0)))
    tracker.close()
    with pytest.raises(InputError, match="closed"):
        tracker.push(video.frames[1])
    with pytest.raises(InputError, match="SyntheticBackend"):
        treemem.stream("greedy", backend="synthetic")


def test_the_live_page_example_prints_what_the_page_shows() -> None:
    blocks = FENCE.findall((Path(__file__).resolve().parents[1] / "docs" / "live.md").read_text())
    index = next(i for i, (lang, code) in enumerate(blocks) if "SyntheticBackend(" in code)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[index][1], "docs/live.md", "exec"), {})
    assert blocks[index + 1][0] == "text"
    assert printed.getvalue() == blocks[index + 1][1]
