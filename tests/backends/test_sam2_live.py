"""A random-weight SAM 2 streamed frame by frame through `treemem.stream` gives the file run's
masks, bit for bit (exact mode), and `max_lag` bounds how late a frame comes out."""

from __future__ import annotations

import numpy as np
import pytest

import treemem
from treemem.backends.synthetic_video import SyntheticVideo, make_video

pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import build_random_model  # noqa: E402

FRAMES = 18
"""At least SAM 2's 16 object pointers: the length a stream's pointer positions assume."""


@pytest.fixture(scope="module")
def scene(torch_threads: None) -> tuple[SyntheticVideo, object]:
    return make_video(2, num_frames=FRAMES, height=64, width=80), build_random_model(
        seed=3, image_size=128
    )


def test_sam2_stream_equals_the_file_run(scene: tuple[SyntheticVideo, object]) -> None:
    video, model = scene
    expected = treemem.track(video.frames, video.gt[0], "sam2long", model=model)
    tracker = treemem.stream("sam2long", model=model, prompts=video.gt[0])
    results = [r for frame in video.frames for r in tracker.push(frame)] + tracker.close()
    assert [r.frame for r in results] == list(range(FRAMES))
    for result in results:
        assert np.array_equal(result.ids(), expected.masks[result.frame]), result.frame
    assert tracker.decisions == list(expected.decisions)
    assert expected.masks[1:].any()  # the comparison is not between empty masks


@pytest.mark.parametrize("max_lag", [0, 4])
def test_sam2_stream_max_lag(scene: tuple[SyntheticVideo, object], max_lag: int) -> None:
    video, model = scene
    tracker = treemem.stream("sam2long", model=model, prompts=video.gt[0], max_lag=max_lag)
    came_out = {
        r.frame: t for t, frame in enumerate(video.frames) for r in tracker.push(frame)
    }
    came_out |= {r.frame: FRAMES - 1 for r in tracker.close()}
    assert sorted(came_out) == list(range(FRAMES))
    assert all(t - frame <= max_lag for frame, t in came_out.items())
