"""Video readers on real input: clips cut at run time from ../shared/data/videos, frame folders,
and every kind of bad input (each a one-line InputError)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

from treemem.io import video as video_module  # noqa: E402
from treemem.io.video import CACHE_FRAMES, FrameFolder, VideoFile, open_video  # noqa: E402
from treemem.types import InputError  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "videos"
SOURCE = VIDEOS / "bedroom.mp4"


def cut_clip(destination: Path, packets: int, *, faststart: bool = False) -> Path:
    """Copy the first `packets` packets (decode order: always decodable) of a real video."""
    if not SOURCE.is_file():
        pytest.skip(f"shared test video missing: {SOURCE}")
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(SOURCE)) as source, av.open(str(destination), "w", options=options) as out:
        stream_in = source.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        copied = 0
        for packet in source.demux(stream_in):
            if packet.dts is None:
                continue
            if copied == packets:
                break
            packet.stream = stream_out
            out.mux(packet)
            copied += 1
    return destination


def reference_frames(path: Path) -> list[np.ndarray]:
    """Every frame that decodes, in order, straight from PyAV."""
    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError:
            pass
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 24)


@pytest.fixture(scope="module")
def clip_frames(clip: Path) -> list[np.ndarray]:
    return reference_frames(clip)


def one_line_error(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


class CountingRestarts:
    """Counts how often the reader seeks or reopens (sequential reads should not)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = VideoFile._restart

        def restart(reader: VideoFile, keyframe: int) -> None:
            self.count += 1
            original(reader, keyframe)

        monkeypatch.setattr(VideoFile, "_restart", restart)


# --- mp4 ---------------------------------------------------------------------------------------


def test_mp4_metadata_and_sequential_reads(
    clip: Path, clip_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    restarts = CountingRestarts(monkeypatch)
    with open_video(clip) as video:
        assert video.num_frames == len(clip_frames) == 24
        assert video.frame_size == (540, 960)
        assert video.fps == pytest.approx(30.0)
        for index, expected in enumerate(clip_frames):
            frame = video.read(index)
            assert frame.dtype == np.uint8 and frame.shape == (540, 960, 3)
            np.testing.assert_array_equal(frame, expected)
            assert len(video._cache) <= CACHE_FRAMES
    assert restarts.count == 1  # opened once, then decoded forward only


def test_mp4_backward_and_random_reads(
    clip: Path, clip_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    restarts = CountingRestarts(monkeypatch)
    with open_video(clip) as video:
        for index in (20, 3, 23, 0, 12, 11, 12, 13):
            np.testing.assert_array_equal(video.read(index), clip_frames[index])
        assert restarts.count >= 2  # going back from 20 to 3 had to seek or reopen
        returned = video.read(13)
        returned[:] = 0  # the caller owns the array: the cache is untouched
        np.testing.assert_array_equal(video.read(13), clip_frames[13])
        with pytest.raises(IndexError):
            video.read(24)


def test_header_without_frame_count_is_counted(tmp_path: Path) -> None:
    """Matroska stores no frame count (stream.frames == 0): the packets are counted."""
    clip = cut_clip(tmp_path / "clip.mkv", 17)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == 0
    expected = reference_frames(clip)
    with open_video(clip) as video:
        assert video.num_frames == len(expected) == 17
        np.testing.assert_array_equal(video.read(16), expected[16])
        np.testing.assert_array_equal(video.read(2), expected[2])


def test_mp4_cut_in_half_reads_the_frames_that_exist(tmp_path: Path) -> None:
    """Index at the front (faststart): the header promises every frame; only the first
    half decodes. The reader counts the frames that decode and reads each of them."""
    whole = cut_clip(tmp_path / "whole.mp4", 24, faststart=True)
    data = whole.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    expected = reference_frames(half)
    assert 0 < len(expected) < 24
    with open_video(half) as video:
        assert video.num_frames == len(expected)
        for index in (*range(len(expected)), 0, len(expected) - 1):
            np.testing.assert_array_equal(video.read(index), expected[index])


def test_mp4_cut_in_half_without_its_index_is_refused(tmp_path: Path) -> None:
    """Index at the end (the muxer's default): half a file has no index at all."""
    whole = cut_clip(tmp_path / "whole.mp4", 24)
    data = whole.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo:
        open_video(half)
    message = one_line_error(excinfo)
    assert str(half) in message and "re-encode" in message


@pytest.mark.parametrize("keep", [0, 64, 3000])
def test_truncated_headers_are_refused(tmp_path: Path, keep: int) -> None:
    whole = cut_clip(tmp_path / "whole.mp4", 8, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:keep])
    with pytest.raises(InputError) as excinfo:
        open_video(cut)
    assert str(cut) in one_line_error(excinfo)


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(InputError) as excinfo:
        open_video(junk)
    assert "cannot read" in one_line_error(excinfo)
    with pytest.raises(InputError) as excinfo:
        open_video(tmp_path / "nowhere.mp4")
    assert "not found" in one_line_error(excinfo)


def test_damaged_middle_reads_or_errors_clearly(tmp_path: Path) -> None:
    """Bytes overwritten in the middle: every read either returns a frame or says which
    frame is damaged; none raises anything but InputError."""
    whole = cut_clip(tmp_path / "whole.mp4", 24, faststart=True)
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes(4000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with open_video(damaged) as video:
        assert 0 < video.num_frames <= 24
        for index in range(video.num_frames):
            try:
                assert video.read(index).shape == (540, 960, 3)
            except InputError as error:
                assert f"frame {index}" in str(error) and "\n" not in str(error)


def test_packet_index_is_trusted_only_when_consistent(clip: Path) -> None:
    with av.open(str(clip)) as container:
        index = video_module._index_packets(container, container.streams.video[0], clip)
    assert index is not None and index.count == 24 and index.keyframes[0] == 0
    assert index.pts == sorted(index.pts or [])


# --- frame folders -------------------------------------------------------------------------------


@pytest.fixture()
def frame_folder(tmp_path: Path, clip_frames: list[np.ndarray]) -> tuple[Path, list[np.ndarray]]:
    """Eleven small real frames, named so that natural order differs from plain sorting."""
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = []
    for index, frame in enumerate(clip_frames[:11]):
        small = Image.fromarray(frame).resize((96, 54))
        small.save(folder / f"frame{index}.png")
        frames.append(np.asarray(small))
    (folder / ".DS_Store").write_bytes(b"hidden files are ignored")
    (folder / "subfolder").mkdir()
    return folder, frames


def test_frame_folder_reads_in_natural_order(frame_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, frames = frame_folder
    with open_video(folder) as video:
        assert isinstance(video, FrameFolder)
        assert video.num_frames == 11 and video.frame_size == (54, 96) and video.fps is None
        for index in (0, 1, 10, 2, 10):
            np.testing.assert_array_equal(video.read(index), frames[index])


def test_frame_folder_jpeg_and_gray_frames_read_as_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((8, 12, 3), 200, np.uint8)).save(folder / "00000.jpg")
    Image.fromarray(np.full((8, 12), 90, np.uint8)).save(folder / "00001.png")
    with open_video(folder) as video:
        assert video.read(0).shape == video.read(1).shape == (8, 12, 3)
        assert abs(int(video.read(1)[0, 0, 0]) - 90) <= 1


def test_empty_frame_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        open_video(tmp_path)
    assert "empty" in one_line_error(excinfo)


def test_frame_folder_with_mixed_sizes(frame_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, _ = frame_folder
    Image.fromarray(np.zeros((54, 95, 3), np.uint8)).save(folder / "frame7.png")
    with pytest.raises(InputError) as excinfo:
        open_video(folder)
    message = one_line_error(excinfo)
    assert "mixes image sizes" in message and "frame7.png is 95x54" in message


def test_frame_folder_with_other_files(frame_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, _ = frame_folder
    (folder / "notes.txt").write_text("not a frame")
    with pytest.raises(InputError) as excinfo:
        open_video(folder)
    assert "notes.txt" in one_line_error(excinfo)


def test_frame_folder_with_a_broken_image(frame_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, _ = frame_folder
    (folder / "frame5.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(InputError) as excinfo:
        open_video(folder)
    assert "frame5.png" in one_line_error(excinfo)
