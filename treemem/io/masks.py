"""Masks as DAVIS-style palette PNGs: pixel value = object id (0 = background).

Writing is atomic (a temporary file in the same folder, then `os.replace`), so a mask file
that exists is complete. Reading accepts palette PNGs, grayscale 0/1 or 0/255 masks, and
RGB images whose colours are all DAVIS palette colours. Pillow is imported inside the
functions that need it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from treemem.types import BoolArray, InputError, Prompt

UInt8Array = npt.NDArray[np.uint8]

MAX_OBJECT_ID = 255


@lru_cache(maxsize=1)
def davis_palette() -> tuple[int, ...]:
    """The 256-colour VOC/DAVIS palette as a flat (r, g, b, r, g, b, ...) tuple.

    Colour j spreads the bits of j over the channels, most significant first: bit 0 of each
    3-bit group goes to red, bit 1 to green, bit 2 to blue (1 = dark red, 2 = dark green, ...).
    """
    palette: list[int] = []
    for label in range(256):
        red = green = blue = 0
        value, shift = label, 7
        while value:
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
            shift -= 1
        palette += [red, green, blue]
    return tuple(palette)


def write_palette_png(path: str | Path, ids: UInt8Array) -> None:
    """Write (H, W) uint8 object ids as a palette PNG, atomically."""
    from PIL import Image

    path = Path(path)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f"ids must be a (H, W) uint8 array, got {ids.dtype} {ids.shape}")
    height, width = ids.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(ids).tobytes())
    image.putpalette(davis_palette())
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            image.save(stream, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_mask(path: str | Path) -> UInt8Array:
    """(H, W) uint8 object ids from a palette PNG, a grayscale 0/1 or 0/255 mask, or an RGB
    image in DAVIS palette colours. Grayscale and binary masks give object id 1."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask not found: {path} (give a PNG with object ids, 0 = background)")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                return np.asarray(image, dtype=np.uint8).copy()
            if mode == "1":
                return np.asarray(image, dtype=np.uint8).copy()
            if mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L"):
                gray = np.asarray(image.getchannel(0) if mode == "LA" else image)
                return _binary(gray, path)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(
            f"cannot read mask {path} ({error}); give a PNG with object ids, 0 = background"
        ) from None
    return _from_colours(rgb, path)


def _binary(gray: npt.NDArray[np.generic], path: Path) -> UInt8Array:
    values = set(np.unique(gray).tolist())
    for on in (1, 255, 65535):
        if values <= {0, on}:
            binary: UInt8Array = (gray == on).astype(np.uint8)
            return binary
    shown = ", ".join(str(v) for v in sorted(values)[:6])
    raise InputError(
        f"mask {path} is grayscale but not binary (values {shown}...); save it as 0/255 "
        "(or 0/1), or as a palette PNG with one index per object"
    )


def _from_colours(rgb: UInt8Array, path: Path) -> UInt8Array:
    """RGB masks: gray ones are binary masks, coloured ones must use DAVIS palette colours."""
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return _binary(rgb[..., 0], path)
    palette = np.asarray(davis_palette(), dtype=np.int64).reshape(256, 3)
    codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    wide = rgb.astype(np.int64)
    pixels = (wide[..., 0] << 16) | (wide[..., 1] << 8) | wide[..., 2]
    lookup = {int(code): index for index, code in enumerate(codes.tolist())}
    unique, inverse = np.unique(pixels, return_inverse=True)
    ids = [lookup.get(int(code), -1) for code in unique.tolist()]
    if min(ids) < 0:
        raise InputError(
            f"mask {path} is an RGB image with colours outside the DAVIS palette; save it as a "
            "palette PNG (pixel value = object id) or a grayscale 0/255 mask"
        )
    mapped: UInt8Array = np.asarray(ids, dtype=np.uint8)[inverse.reshape(pixels.shape)]
    return mapped


def object_ids(ids: UInt8Array) -> list[int]:
    """The object ids present in a mask, ascending (0, the background, excluded)."""
    return [int(v) for v in np.unique(ids).tolist() if v != 0]


def validate_mask(
    ids: UInt8Array,
    frame_size: tuple[int, int],
    *,
    max_objects: int | None = None,
    name: str = "the mask",
) -> list[int]:
    """Check a prompt mask against the video; returns its object ids.

    Refuses a mask of another size, one with no object, one with no background (an
    all-ones or inverted mask) and one with more objects than `max_objects`.
    """
    height, width = frame_size
    if ids.shape != (height, width):
        found = f"{ids.shape[1]}x{ids.shape[0]}" if ids.ndim == 2 else str(ids.shape)
        raise InputError(
            f"{name} is {found} but the video is {width}x{height}; draw the mask on a frame of "
            "this video (or resize it with nearest-neighbour sampling)"
        )
    present = object_ids(ids)
    if not present:
        raise InputError(f"{name} is empty (no object pixel); mark the object with a nonzero value")
    if (ids != 0).all():
        raise InputError(
            f"{name} has no background (every pixel is an object, is it inverted?); "
            "mark the background with 0"
        )
    if max_objects is not None and len(present) > max_objects:
        raise InputError(
            f"{name} holds {len(present)} object ids ({', '.join(map(str, present))}) but "
            f"{max_objects} {'was' if max_objects == 1 else 'were'} asked for; raise --objects "
            "or remove the extra ids from the mask"
        )
    return present


def mask_prompts(ids: UInt8Array, frame: int, objects: Sequence[int] | None = None) -> list[Prompt]:
    """One mask `Prompt` per object id of `ids` (or per id of `objects`) on `frame`."""
    chosen = object_ids(ids) if objects is None else list(objects)
    prompts = []
    for obj in chosen:
        mask: BoolArray = ids == obj
        if not mask.any():
            raise InputError(f"object {obj} is not in the mask (ids present: {object_ids(ids)})")
        prompts.append(Prompt(obj=obj, frame=frame, mask=mask))
    return prompts
