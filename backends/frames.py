"""Model input frames for the SAM-2-style backends (SAM 2, SAM 3's tracker): sam2's
preprocessing, read ahead on a thread only when a core is free for it.

Both models take a square float32 image: PIL resize of the RGB frame to the model's size, /255,
then normalised by a per-channel mean and std. sam2's predictor decodes every frame before it
tracks (`init_state`), so decoding never competes with the model; treemem decodes as it goes
(a live source has no end to preload). Reading the next frame on a thread while the model
works on this one hides the decoding where that thread has a core of its own (a GPU does the
model's work: 0.015 s/frame off greedy at 1024 px on an H100; more CPU cores than torch's
threads). Where it has none (the CPU with torch on every core, the usual case), the reader
thread takes a core from one of torch's intra-op threads, whose parallel regions then wait for
the slowest thread: the frame costs more wall time for the same CPU time. There the frame is
read in line, as sam2 does, just before use. Measured on this project's 2-core CPU, 2 torch
threads, tiny, whole process against sam2's predictor (bench/whole_process.py, 2026-12-03):
at 512 px, 48 frames, reading ahead took 1.128x sam2's wall time and in line 0.993x (median
of 5, in line faster in 5 of 5 pairs); at 1024 px, 24 frames, 0.998x and 0.976x (4 of 4).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Callable

    from treemem.types import UInt8Array


def spare_core(device: torch.device) -> bool:
    """Whether a reader thread can work without taking a core from torch's threads."""
    if device.type != "cpu":
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) > torch.get_num_threads()


class FrameImages:
    """Frame `i`'s (1, 3, S, S) model input on the device, from `read_frame(i)` (H, W, 3 uint8).

    `read_ahead` (default: `spare_core(device)`) starts the next frame in tracking order on
    one reader thread as soon as a frame is taken: frame - 1 after frame + 1 (tracking
    backward), else frame + 1, within `num_frames`; never on a source of unknown length,
    whose next frame may not have arrived. All reads go through that one thread, so a video
    reader is never used concurrently.
    """

    def __init__(
        self,
        read_frame: Callable[[int], UInt8Array],
        frame_size: tuple[int, int],
        image_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        device: torch.device,
        num_frames: int | None,
        *,
        read_ahead: bool | None = None,
    ) -> None:
        self._read_frame = read_frame
        self._frame_size = frame_size
        self._image_size = image_size
        self._mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self._device = device
        self._num_frames = num_frames
        self.read_ahead = spare_core(device) if read_ahead is None else read_ahead
        self._reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="treemem-frames")
            if self.read_ahead
            else None
        )
        self._pending: dict[int, Future[torch.Tensor]] = {}
        self._last: int | None = None

    def image(self, frame: int) -> torch.Tensor:
        """Frame `frame` decoded and preprocessed now, on the calling thread."""
        from PIL import Image

        from treemem.types import InputError

        rgb = self._read_frame(frame)
        if rgb.shape[:2] != self._frame_size:
            raise InputError(
                f"frame {frame} is {rgb.shape[1]}x{rgb.shape[0]}, the video is "
                f"{self._frame_size[1]}x{self._frame_size[0]}: all frames must have one size"
            )
        size = self._image_size
        resized = np.array(Image.fromarray(rgb).convert("RGB").resize((size, size))) / 255.0
        image = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
        image -= self._mean
        image /= self._std
        return image.to(self._device)[None]

    def take(self, frame: int) -> torch.Tensor:
        """Frame `frame`'s input (read ahead when it was the expected one); starts the next."""
        backward = self._last is not None and self._last == frame + 1
        self._last = frame
        if self._reader is None:
            return self.image(frame)
        future = self._pending.pop(frame, None)
        if future is None:
            future = self._reader.submit(self.image, frame)
        self._pending.clear()
        following = frame - 1 if backward else frame + 1
        if self._num_frames is not None and 0 <= following < self._num_frames:
            self._pending[following] = self._reader.submit(self.image, following)
        return future.result()
