"""Video input: an mp4 (any container PyAV decodes) or a folder of JPEG/PNG frames.

Frames are decoded when asked for, never preloaded. A video file keeps its decoder open and
decodes forward, so reading frames in order costs one decode each; a read behind the decoder
(or far ahead of it) seeks to the nearest keyframe instead. Only a few decoded frames are
cached. PyAV and Pillow are imported inside the functions that need them.

Frame counts come from the demuxer's packet index, which is exact for an intact file and
costs no decoding; when the index disagrees with the container header or the file is cut
short, the video is decoded once to count the frames that really decode.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from treemem.types import Closing, InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

UInt8Array = npt.NDArray[np.uint8]

log = logging.getLogger("treemem.io")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
CACHE_FRAMES = 8
_REENCODE_HINT = (
    "re-encode it (e.g. `ffmpeg -i in.mp4 -c:v libx264 out.mp4`) or give a frame folder"
)


class VideoSource(Protocol):
    """Random access to the RGB frames of a video; frames are decoded when read."""

    @property
    def path(self) -> Path: ...

    @property
    def num_frames(self) -> int: ...

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        ...

    @property
    def fps(self) -> float | None:
        """Frames per second from the file, None when unknown (frame folders)."""
        ...

    def read(self, index: int) -> UInt8Array:
        """Frame `index` as an (H, W, 3) uint8 RGB array (a fresh array the caller owns)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoSource: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...


def open_video(path: str | Path) -> VideoSource:
    """Open an mp4 (or other video file PyAV decodes) or a folder of JPEG/PNG frames."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"video not found: {path} (give an mp4 file or a folder of JPEG/PNG frames)"
        )
    if path.is_dir():
        return FrameFolder(path)
    return VideoFile(path)


class _Source(Closing):
    """What both readers share: range checks, the small frame cache, the context manager."""

    _path: Path
    _num_frames: int

    def __init__(self) -> None:
        self._cache: OrderedDict[int, UInt8Array] = OrderedDict()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def num_frames(self) -> int:
        return self._num_frames

    def read(self, index: int) -> UInt8Array:
        if not 0 <= index < self._num_frames:
            raise IndexError(f"frame {index} is outside {self._path} ({self._num_frames} frames)")
        frame = self._cache.get(index)
        if frame is None:
            frame = self._decode(index)
        else:
            self._cache.move_to_end(index)
        return frame.copy()

    def _decode(self, index: int) -> UInt8Array:
        raise NotImplementedError

    def _remember(self, index: int, frame: UInt8Array) -> None:
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self._cache.clear()


# --- video files ------------------------------------------------------------------------------


class VideoFile(_Source):
    """A video file decoded with PyAV, forward by default, seeking only when it must.

    Frames are indexed in presentation order. `_pts` (sorted presentation timestamps, one
    per frame) maps decoded frames to indices; `_keyframes` lists the indices a seek can
    land on. Without timestamps the reader restarts from the first frame to go back.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._next = 0  # index of the frame the open decoder outputs next
        container = self._open()
        try:
            stream = container.streams.video[0]
            height, width = int(stream.codec_context.height), int(stream.codec_context.width)
            header_frames = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate
            self._fps = float(rate) if rate else None
            index = _index_packets(container, stream, path)
        finally:
            container.close()
        if index is None:
            index = _index_by_decoding(self._open(), path)
            height, width = index.height or height, index.width or width
            if index.count and (not index.complete or index.count < header_frames):
                log.warning(
                    "%s is damaged or cut short: reading the %d frames that decode%s",
                    path, index.count, f" of {header_frames}" if header_frames else "",
                )
        if index.count == 0 or height <= 0 or width <= 0:
            raise InputError(
                f"no frame of {path} decodes (the file is damaged or cut short); {_REENCODE_HINT}"
            )
        self._num_frames = index.count
        self._frame_size = (height, width)
        self._pts = index.pts
        self._index_of = {p: i for i, p in enumerate(index.pts or ())}
        self._keyframes = index.keyframes

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    @property
    def fps(self) -> float | None:
        return self._fps

    def _open(self) -> Any:
        import av

        try:
            container = av.open(str(self._path))
        except (av.FFmpegError, OSError) as error:
            raise InputError(
                f"cannot read {self._path} as a video ({_reason(error)}: not a video, or damaged "
                f"or cut short); {_REENCODE_HINT}"
            ) from None
        if not container.streams.video:
            container.close()
            raise InputError(
                f"{self._path} has no video stream (not a video, or cut short); {_REENCODE_HINT}"
            )
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container

    def _decode(self, index: int) -> UInt8Array:
        seek_to = self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]
        if self._frames is None or not seek_to <= self._next <= index:
            self._restart(seek_to)
        assert self._frames is not None
        import av

        try:
            for frame in self._frames:
                found = self._index(frame)
                if found is None:
                    continue
                self._next = found + 1
                if found > index:
                    break
                if found > index - CACHE_FRAMES:
                    self._remember(found, self._to_array(frame, found))
                if found == index:
                    return self._cache[index]
        except av.FFmpegError as error:
            self._frames = None
            raise InputError(
                f"{self._path}: frame {index} cannot be decoded ({_reason(error)}); the file is "
                f"damaged: {_REENCODE_HINT}"
            ) from None
        self._frames = None
        raise InputError(
            f"{self._path}: frame {index} is missing from the file (it may be cut short); "
            f"{_REENCODE_HINT}"
        )

    def _restart(self, keyframe: int) -> None:
        """Seek to keyframe index `keyframe` (or reopen at the start when pts are unknown)."""
        if self._container is None or self._pts is None or keyframe == 0:
            if self._container is not None:
                self._container.close()
            self._container = self._open()
            self._next = 0
        else:
            stream = self._container.streams.video[0]
            self._container.seek(self._pts[keyframe], stream=stream, backward=True, any_frame=False)
            self._next = keyframe
        self._frames = self._container.decode(self._container.streams.video[0])

    def _index(self, frame: Any) -> int | None:
        if self._pts is None:
            return self._next
        found: int | None = self._index_of.get(frame.pts)
        return found

    def _to_array(self, frame: Any, index: int) -> UInt8Array:
        array: UInt8Array = frame.to_ndarray(format="rgb24")
        if array.shape[:2] != self._frame_size:
            raise InputError(
                f"{self._path}: frame {index} is {array.shape[1]}x{array.shape[0]} but the video "
                f"starts at {self._frame_size[1]}x{self._frame_size[0]}; {_REENCODE_HINT}"
            )
        return array

    def close(self) -> None:
        super().close()
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None


@dataclass(frozen=True)
class _FrameIndex:
    """Where each frame is: `pts` (sorted presentation timestamps, one per frame, or None
    when frames carry none) and `keyframes` (sorted indices a seek can land on, always 0)."""

    count: int
    pts: list[int] | None
    keyframes: list[int]
    height: int = 0
    width: int = 0
    complete: bool = True


def _index_packets(container: Any, stream: Any, path: Path) -> _FrameIndex | None:
    """The frame index from the packets alone, no decoding.

    None when the packets cannot be trusted: a read error, a count that disagrees with the
    header, a packet without timestamp or one running past the end of the file (a cut-short
    download). The caller then decodes the file once instead.
    """
    import av

    entries: list[tuple[int, bool]] = []
    file_size = path.stat().st_size
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            if packet.pts is None or packet.is_corrupt:
                return None
            if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > file_size:
                return None
            entries.append((int(packet.pts), bool(packet.is_keyframe)))
    except av.FFmpegError:
        return None
    if not entries or (stream.frames and stream.frames != len(entries)):
        return None
    entries.sort()
    pts = [p for p, _ in entries]
    keyframes = [i for i, (_, key) in enumerate(entries) if key]
    if len(set(pts)) != len(pts) or not keyframes or keyframes[0] != 0:
        return None
    return _FrameIndex(len(pts), pts, keyframes)


def _index_by_decoding(container: Any, path: Path) -> _FrameIndex:
    """Decode the file once: the frames that really decode, their pts and keyframes.

    A truncated or damaged file ends the count at the first frame that fails to decode.
    """
    import av

    stamps: list[int | None] = []
    keys: list[bool] = []
    height = width = 0
    complete = True
    try:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                stamps.append(frame.pts)
                keys.append(bool(frame.key_frame))
                height, width = frame.height, frame.width
        except av.FFmpegError as error:
            log.debug("%s stops decoding after %d frames: %s", path, len(stamps), _reason(error))
            complete = False
    finally:
        container.close()
    known = [p for p in stamps if p is not None]
    if len(known) != len(stamps) or len(set(known)) != len(known):
        # No usable timestamps: frames are indexed in decode order; going back restarts.
        return _FrameIndex(len(stamps), None, [0], height, width, complete)
    order = sorted(range(len(known)), key=known.__getitem__)
    keyframes = sorted({0} | {rank for rank, i in enumerate(order) if keys[i]})
    return _FrameIndex(len(known), [known[i] for i in order], keyframes, height, width, complete)


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip().rstrip(".") or type(error).__name__


# --- frame folders ----------------------------------------------------------------------------


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key that orders `frame2.jpg` before `frame10.jpg` (same as plain sort when the
    numbers are zero-padded, as in DAVIS)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


class FrameFolder(_Source):
    """A folder of JPEG/PNG frames, one file per frame, ordered by name.

    Hidden files and sub-folders are ignored; every other file must be a JPEG or PNG of the
    same size. Headers are checked when the folder is opened, pixels decoded when read.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        files = sorted(
            (p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")),
            key=lambda p: _natural_key(p.name),
        )
        others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            shown = ", ".join(others[:3]) + more
            raise InputError(
                f"frame folder {path} holds files that are not JPEG/PNG frames ({shown}); "
                "move them out of the folder"
            )
        if not files:
            raise InputError(
                f"frame folder {path} is empty; put the frames in it as JPEG or PNG files"
            )
        self._files = files
        self._num_frames = len(files)
        self._frame_size = self._check_sizes(files)

    @staticmethod
    def _check_sizes(files: list[Path]) -> tuple[int, int]:
        from PIL import Image, UnidentifiedImageError

        first: tuple[int, int] | None = None
        for file in files:
            try:
                with Image.open(file) as image:
                    width, height = image.size
            except (UnidentifiedImageError, OSError) as error:
                raise InputError(
                    f"{file} is not a readable image ({_reason(error)}); replace or remove it"
                ) from None
            if first is None:
                first = (height, width)
            elif (height, width) != first:
                raise InputError(
                    f"frame folder {file.parent} mixes image sizes: {files[0].name} is "
                    f"{first[1]}x{first[0]} but {file.name} is {width}x{height}; "
                    "resize the frames to one size"
                )
        assert first is not None
        return first

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    @property
    def frame_names(self) -> list[str]:
        """The frame files' names without suffix, in frame order (output PNGs reuse them)."""
        return [p.stem for p in self._files]

    @property
    def fps(self) -> float | None:
        return None

    def _decode(self, index: int) -> UInt8Array:
        from PIL import Image

        file = self._files[index]
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except OSError as error:
            raise InputError(f"{file} cannot be decoded ({_reason(error)}); replace it") from None
        if array.shape[:2] != self._frame_size:
            raise InputError(f"{file} changed size while the video was open; rerun on fixed frames")
        self._remember(index, array)
        return array
