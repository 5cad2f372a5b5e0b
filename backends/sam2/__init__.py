"""SAM 2 / SAM 2.1 backend (needs `pip install 'treemem[sam2]'`: torch and sam2)."""

from __future__ import annotations

from treemem.backends.sam2.backend import Sam2Backend, autocast_dtype
from treemem.backends.sam2.loading import (
    build_random_model,
    build_video_model,
    config_for_checkpoint,
    load_checkpoint,
    load_model,
    resolve_config,
)
from treemem.backends.sam2.session import Sam2Session

__all__ = [
    "Sam2Backend",
    "Sam2Session",
    "autocast_dtype",
    "build_random_model",
    "build_video_model",
    "config_for_checkpoint",
    "load_checkpoint",
    "load_model",
    "resolve_config",
]
