"""Video and mask input/output (PyAV and Pillow are imported only when a file is opened)."""

from treemem.io.masks import davis_palette, read_mask, validate_mask, write_palette_png
from treemem.io.video import VideoSource, open_video

__all__ = [
    "VideoSource",
    "davis_palette",
    "open_video",
    "read_mask",
    "validate_mask",
    "write_palette_png",
]
