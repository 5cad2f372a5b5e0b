"""Atomic file writes: a temporary file in the same folder, then `os.replace`.

A file written this way either holds its old content or its complete new content, whatever
kills the process; only a stray `.NAME.*.tmp` may be left, which `remove_temporaries` clears.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as indented JSON, atomically (non-JSON values are written with `str`)."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, default=str)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path, name_pattern: str = "*") -> int:
    """Delete the temporary files that atomic writes of files named like `name_pattern`
    (a glob, e.g. "*.png") left in `folder` when killed half-way; returns how many."""
    if not folder.is_dir():
        return 0
    stray = [p for p in folder.glob(f".{name_pattern}.*.tmp") if p.is_file()]
    for path in stray:
        path.unlink(missing_ok=True)
    return len(stray)
