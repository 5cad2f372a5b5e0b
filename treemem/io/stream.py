"""A live video source: anything PyAV opens, decoded frame by frame as it arrives.

A file, an `rtsp://` or `http://` URL, a capture device (`/dev/video0` with format `v4l2`),
or `-` for an encoded stream on standard input. Nothing is preloaded and nothing is counted
ahead: the length is unknown until the source ends. A source that breaks off (a cut
connection, a truncated file, a device unplugged, nothing received for `timeout` seconds)
ends the frames as a source that stops does; `broken` then says why, so the caller can
finish what was decided and report it in one line. A cut that falls exactly between two
packets reads as a clean end to FFmpeg, and so here too. PyAV is imported when a source is
opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from treemem.types import InputError

UInt8Array = npt.NDArray[np.uint8]

STDIN = "-"
DEFAULT_TIMEOUT = 30.0
"""Seconds a source may send nothing (while opening, and between packets) before it counts as
broken."""


@dataclass(eq=False)
class LiveSource:
    """The RGB frames of `source`, in the order they decode (see the module docstring).

    `format` is FFmpeg's demuxer name, for sources it cannot guess (`v4l2`, `avfoundation`,
    `dshow`, `mpegts` on a pipe); `options` are FFmpeg options for the demuxer or protocol
    (e.g. `rtsp_transport=tcp`).
    """

    source: str
    format: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    decoded: int = 0
    """Frames decoded so far."""
    broken: str | None = None
    """Why the source broke off mid-way (None while it has not, and when it ended cleanly)."""
    fps: float | None = None
    _container: Any = field(default=None, repr=False)

    def open(self) -> LiveSource:
        """Open the source; a source that cannot be opened is an `InputError` (one line)."""
        import av

        # FFmpeg's own pipe protocol hands on what arrived; a Python file object would wait
        # for a whole read buffer (32 KiB) first, which a slow stream fills in seconds.
        target = "pipe:0" if self.source == STDIN else self.source
        try:
            self._container = av.open(
                target, format=self.format, options=dict(self.options), timeout=self.timeout
            )
            stream = self._container.streams.video[0]
        except IndexError:
            self.close()
            raise InputError(f"{self._name()} has no video stream") from None
        except (av.error.FFmpegError, OSError) as error:
            self.close()
            raise InputError(f"cannot open {self._name()}: {_cause(error)}") from None
        # Frame threading stays off: with it FFmpeg drops a truncated packet silently, and a
        # cut stream would look like one that ended.
        rate = stream.average_rate
        self.fps = float(rate) if rate else None
        return self

    @property
    def replayable(self) -> bool:
        """Whether opening the source again gives the same frames from the first (a file on
        disk; not a URL, a device, a pipe or standard input)."""
        return self.source != STDIN and Path(self.source).is_file()

    def frames(self) -> Iterator[UInt8Array]:
        """(H, W, 3) uint8 RGB frames as they decode, until the source ends or breaks."""
        import av

        if self._container is None:
            self.open()
        try:
            for frame in self._container.decode(video=0):
                self.decoded += 1
                yield frame.to_ndarray(format="rgb24")
        except (av.error.FFmpegError, OSError) as error:
            self.broken = _cause(error)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def describe(self) -> dict[str, Any]:
        """What run.json records about the source."""
        return {"source": self.source, "format": self.format, "live": True,
                "frames": self.decoded, "fps": self.fps, "broken": self.broken}

    def _name(self) -> str:
        return "standard input" if self.source == STDIN else self.source


def _cause(error: BaseException) -> str:
    """FFmpeg's words for an error, without PyAV's errno prefix."""
    text = getattr(error, "strerror", None) or str(error)
    return str(text).rstrip(".")
