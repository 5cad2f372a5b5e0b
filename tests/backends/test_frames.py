"""The SAM-2-style backends' input frames (`treemem.backends.frames`): read ahead on a thread or
in line, the same tensors either way, and never a read past the source's end."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from treemem.backends.frames import FrameImages, spare_core
from treemem.types import InputError

SIZE = (24, 40)


def make(
    read_ahead: bool, num_frames: int | None = 6
) -> tuple[FrameImages, list[tuple[int, str]]]:
    reads: list[tuple[int, str]] = []

    def read(frame: int) -> np.ndarray:
        reads.append((frame, threading.current_thread().name))
        rng = np.random.default_rng(frame)
        return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)

    images = FrameImages(read, SIZE, 32, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), torch.device("cpu"),
                         num_frames, read_ahead=read_ahead)
    return images, reads


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 3, 4, 3, 2, 1]])
def test_read_ahead_gives_the_frames_read_in_line(order: list[int]) -> None:
    ahead, ahead_reads = make(True)
    inline, inline_reads = make(False)
    for frame in order:
        assert torch.equal(ahead.take(frame), inline.take(frame))
    assert [f for f, _ in inline_reads] == order
    assert all(name == threading.current_thread().name for _, name in inline_reads)
    assert all(name.startswith("treemem-frames") for _, name in ahead_reads)
    for pending in ahead._pending.values():
        pending.result()
    # what was taken, and after each take the next frame in tracking order within the video
    following = {
        frame - 1 if previous == frame + 1 else frame + 1
        for previous, frame in zip([None, *order], order, strict=False)
    }
    assert {f for f, _ in ahead_reads} == set(order) | (following & set(range(6)))


def test_a_source_of_unknown_length_is_never_read_ahead() -> None:
    images, reads = make(True, num_frames=None)
    for frame in range(4):
        images.take(frame)
    for pending in images._pending.values():
        pending.result()
    assert [f for f, _ in reads] == [0, 1, 2, 3]


def test_a_frame_of_another_size_is_an_input_error() -> None:
    images = FrameImages(lambda i: np.zeros((10, 10, 3), np.uint8), SIZE, 32, (0, 0, 0),
                         (1, 1, 1), torch.device("cpu"), 3, read_ahead=False)
    with pytest.raises(InputError, match="all frames must have one size"):
        images.take(0)


def test_a_reader_thread_only_where_torch_leaves_a_core() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cores = len(__import__("os").sched_getaffinity(0))
        assert spare_core(torch.device("cpu")) == (cores > 1)
        torch.set_num_threads(cores)
        assert not spare_core(torch.device("cpu"))
        assert spare_core(torch.device("cuda"))
    finally:
        torch.set_num_threads(threads)
