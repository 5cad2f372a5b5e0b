"""DAVIS palette PNGs: the palette, atomic writes, the mask formats read, prompt validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from treemem.io.masks import (  # noqa: E402
    davis_palette,
    mask_prompts,
    object_ids,
    read_mask,
    validate_mask,
    write_palette_png,
)
from treemem.types import InputError  # noqa: E402

# The real videos' frame size (bedroom.mp4 is 960x540, the gallery videos 1280x720).
FRAME_SIZE = (540, 960)


def box_mask(y0: int, y1: int, x0: int, x1: int, value: int = 1) -> np.ndarray:
    ids = np.zeros(FRAME_SIZE, np.uint8)
    ids[y0:y1, x0:x1] = value
    return ids


def one_line(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_davis_palette_known_colours() -> None:
    palette = np.asarray(davis_palette()).reshape(256, 3)
    expected = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        3: (128, 128, 0),
        4: (0, 0, 128),
        5: (128, 0, 128),
        6: (0, 128, 128),
        7: (128, 128, 128),
        8: (64, 0, 0),
        9: (192, 0, 0),
        255: (224, 224, 192),
    }
    for index, colour in expected.items():
        assert tuple(palette[index]) == colour
    assert len({tuple(c) for c in palette}) == 256  # every id has its own colour


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    ids = box_mask(100, 300, 200, 500)
    ids[350:400, 600:700] = 2
    ids[0, 0] = 255
    path = tmp_path / "00000.png"
    write_palette_png(path, ids)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    np.testing.assert_array_equal(read_mask(path), ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.png"]  # no temp file left


def test_write_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    write_palette_png(path, box_mask(0, 10, 0, 10))
    write_palette_png(path, box_mask(5, 20, 5, 20, value=3))
    np.testing.assert_array_equal(read_mask(path), box_mask(5, 20, 5, 20, value=3))
    with pytest.raises(ValueError):
        write_palette_png(path, np.zeros((4, 4), np.int32))  # type: ignore[arg-type]
    np.testing.assert_array_equal(read_mask(path), box_mask(5, 20, 5, 20, value=3))
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


@pytest.mark.parametrize("on", [1, 255])
def test_grayscale_binary_masks(tmp_path: Path, on: int) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(box_mask(10, 20, 30, 40) * np.uint8(on)).save(path)
    np.testing.assert_array_equal(read_mask(path), box_mask(10, 20, 30, 40))


def test_one_bit_and_rgb_masks(tmp_path: Path) -> None:
    ids = box_mask(10, 20, 30, 40)
    Image.fromarray(ids.astype(bool)).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "bits.png"), ids)
    ids[50:60, 70:80] = 2
    palette = np.asarray(davis_palette(), np.uint8).reshape(256, 3)
    Image.fromarray(palette[ids]).save(tmp_path / "colours.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "colours.png"), ids)
    gray_rgb = np.repeat((ids > 0).astype(np.uint8)[..., None] * 255, 3, axis=2)
    Image.fromarray(gray_rgb).save(tmp_path / "gray_rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "gray_rgb.png"), (ids > 0).astype(np.uint8))


def test_unreadable_masks(tmp_path: Path) -> None:
    gray = box_mask(10, 20, 30, 40) * np.uint8(255)
    gray[0, 0] = 128
    Image.fromarray(gray).save(tmp_path / "soft.png")
    with pytest.raises(InputError) as excinfo:
        read_mask(tmp_path / "soft.png")
    assert "not binary" in one_line(excinfo)

    rgb = np.zeros((*FRAME_SIZE, 3), np.uint8)
    rgb[5:9, 5:9] = (10, 200, 30)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    with pytest.raises(InputError) as excinfo:
        read_mask(tmp_path / "photo.png")
    assert "DAVIS palette" in one_line(excinfo)

    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError) as excinfo:
        read_mask(tmp_path / "text.png")
    assert "cannot read mask" in one_line(excinfo)

    with pytest.raises(InputError) as excinfo:
        read_mask(tmp_path / "missing.png")
    assert "not found" in one_line(excinfo)


def test_validate_accepts_a_good_mask() -> None:
    ids = box_mask(100, 300, 200, 500)
    ids[400:450, 10:50] = 4
    assert validate_mask(ids, FRAME_SIZE) == [1, 4]
    assert validate_mask(ids, FRAME_SIZE, max_objects=2) == [1, 4]


def test_validate_refuses_wrong_size() -> None:
    with pytest.raises(InputError) as excinfo:
        validate_mask(box_mask(1, 5, 1, 5), (720, 1280), name="mask first.png")
    assert "mask first.png is 960x540 but the video is 1280x720" in one_line(excinfo)


def test_validate_refuses_empty_and_all_ones() -> None:
    with pytest.raises(InputError) as excinfo:
        validate_mask(np.zeros(FRAME_SIZE, np.uint8), FRAME_SIZE)
    assert "empty" in one_line(excinfo)
    with pytest.raises(InputError) as excinfo:
        validate_mask(np.ones(FRAME_SIZE, np.uint8), FRAME_SIZE)
    assert "no background" in one_line(excinfo)


def test_validate_refuses_more_objects_than_asked() -> None:
    ids = box_mask(0, 10, 0, 10)
    ids[20:30, 20:30] = 2
    ids[40:50, 40:50] = 3
    with pytest.raises(InputError) as excinfo:
        validate_mask(ids, FRAME_SIZE, max_objects=2)
    message = one_line(excinfo)
    assert "3 object ids (1, 2, 3)" in message and "--objects" in message


def test_mask_prompts_one_per_object() -> None:
    ids = box_mask(0, 10, 0, 10)
    ids[20:30, 20:30] = 7
    prompts = mask_prompts(ids, frame=4)
    assert [(p.obj, p.frame, p.kind) for p in prompts] == [(1, 4, "mask"), (7, 4, "mask")]
    assert prompts[1].mask is not None and prompts[1].mask.sum() == 100
    assert object_ids(ids) == [1, 7]
    with pytest.raises(InputError):
        mask_prompts(ids, frame=0, objects=[2])
