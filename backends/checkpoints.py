"""Reading a user's checkpoint file, for every torch backend, with one-line errors.

Torch only (no sam2, no sam3): each backend's environment has torch but not the other
backends' packages. A backend names what the file should be (for the "does not exist" hint),
checks the payload's layout itself, and says a strict load's failure through `mismatch`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from treemem.types import InputError


def require_file(checkpoint: Path, expected: str) -> None:
    """Refuse a missing checkpoint before a model is built for it; `expected` says what to
    pass instead (e.g. "a SAM 2 .pt file")."""
    if not checkpoint.is_file():
        raise InputError(f"checkpoint {checkpoint} does not exist: pass the path of {expected}")


def read_checkpoint(checkpoint: Path, expected: str) -> Any:
    """The unpickled payload of a torch checkpoint (weights only, on the CPU); `expected` as
    in `require_file`."""
    require_file(checkpoint, expected)
    if not zipfile.is_zipfile(checkpoint):
        raise InputError(
            f"checkpoint {checkpoint} is not a PyTorch file (truncated or wrong file?): "
            "download it again"
        )
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            f"checkpoint {checkpoint} cannot be read ({error}): download it again"
        ) from None


def mismatch(error: RuntimeError) -> str:
    """The first offending key line of torch's multi-line `load_state_dict` error, cut to 160
    characters, so a mismatch can be said in one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__
    return detail[:160]
