"""SAM 2 / SAM 2.1 backend (needs `pip install 'treemem[sam2]'`: torch and sam2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from treemem.backends.sam2.backend import Sam2Backend
from treemem.backends.sam2.loading import (
    build_random_model,
    config_for_checkpoint,
    load_checkpoint,
    load_model,
)

__all__ = [
    "Sam2Backend",
    "build_random_model",
    "config_for_checkpoint",
    "load_checkpoint",
    "load_model",
    "open_backend",
]


def open_backend(
    *,
    read_frame: Callable[[int], np.ndarray],
    num_frames: int,
    frame_size: tuple[int, int],
    checkpoint: Path,
    config: str | None = None,
    device: str | None = None,
    offload: bool = False,
    image_size: int | None = None,
) -> Sam2Backend:
    """Load a checkpoint and wrap it as a backend over a video's frames."""
    model = load_model(Path(checkpoint), config=config, device=device, image_size=image_size)
    return Sam2Backend(model, read_frame, num_frames, frame_size, offload=offload)
