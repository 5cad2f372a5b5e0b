"""Resuming an interrupted `treemem run` (`--resume`).

While a run is unfinished its output folder holds `run.partial.json`: the settings it was
started with (strategy and parameters, video, backend, a fingerprint of the prompts, max_lag,
direction).
`run.json` is written when the run ends, and only then is `run.partial.json` removed, so a
folder is in one of three states: fresh, unfinished (resumable), finished.

Resuming checks that the new command asks for the same run, then goes on from the run's last
snapshot (`snapshot.bin`, the search state every `--snapshot-every` frames; see
`treemem.pipeline.snapshots`), so at most that many frames are searched twice. Without a
usable snapshot it searches again from the first frame: the engine and the backends are
deterministic, so that too gives output identical to an uninterrupted run, at a full run's
compute. Either way mask PNGs already on disk past the restart point are kept when they equal
the recomputed mask (a changed one is replaced), so a finished result is never lost or mixed
with another run's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from treemem.io.atomic import write_json
from treemem.types import InputError, Prompt

PARTIAL = "run.partial.json"
SNAPSHOT = "snapshot.bin"
"""The search state of an unfinished run (`treemem.pipeline.snapshots`)."""


def prompt_fingerprint(prompts: Sequence[Prompt]) -> str:
    """sha256 over every prompt's object, frame, mask pixels, box, points and labels."""
    digest = hashlib.sha256()
    for prompt in sorted(prompts, key=lambda p: (p.frame, p.obj)):
        digest.update(repr((prompt.obj, prompt.frame, prompt.box, prompt.points,
                            prompt.labels)).encode())
        if prompt.mask is not None:
            mask = np.ascontiguousarray(prompt.mask, dtype=bool)
            digest.update(repr(mask.shape).encode())
            digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()


def run_settings(
    strategy: str,
    parameters: Mapping[str, Any],
    info: Mapping[str, Any],
    prompts: Sequence[Prompt],
    max_lag: int | None,
    direction: str = "forward",
) -> dict[str, Any]:
    """What must be equal for a resumed run to continue the interrupted one (as JSON)."""
    settings = {
        "strategy": strategy,
        "parameters": dict(parameters),
        **dict(info),
        "prompts": prompt_fingerprint(prompts),
        "max_lag": max_lag,
        "direction": direction,
    }
    normalised: dict[str, Any] = json.loads(json.dumps(settings, default=str))
    return normalised


def first_difference(saved: Any, wanted: Any, where: str = "") -> str | None:
    """The first setting that differs, as `key: saved -> wanted`, or None when equal."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(set(saved) | set(wanted), key=str):
            found = first_difference(saved.get(key), wanted.get(key), f"{where}{key}.")
            if found is not None:
                return found
        return None
    if saved != wanted:
        name = where.rstrip(".") or "settings"
        if name == "prompts":
            return "prompts: the prompt masks, boxes or points differ"
        return f"{name}: {json.dumps(saved)} -> {json.dumps(wanted)}"
    return None


def begin(out: Path, settings: Mapping[str, Any], *, resume: bool) -> bool:
    """Record `settings` as the unfinished run in `out`, or check them when resuming.

    Returns True when an interrupted run is being resumed. Raises `InputError` when `resume`
    is asked for a folder whose run cannot be continued with these settings.
    """
    path = out / PARTIAL
    if resume and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(
                f"cannot resume: {path} is unreadable ({error}); pass --overwrite to start again"
            ) from None
        difference = first_difference(saved, dict(settings))
        if difference is not None:
            raise InputError(
                f"cannot resume the run in {out}, it was started with other settings "
                f"({difference}); give the interrupted run's options, or --overwrite"
            )
        return True
    if resume and ((out / "tree.jsonl").exists() or (out / "masks").exists()):
        raise InputError(
            f"cannot resume the run in {out}: it has no {PARTIAL} (not written by an "
            "interrupted `treemem run`); pass --overwrite to start again"
        )
    write_json(path, settings)
    return False


def finish(out: Path) -> None:
    """The run is complete (run.json is written): it is no longer resumable."""
    (out / PARTIAL).unlink(missing_ok=True)
    (out / SNAPSHOT).unlink(missing_ok=True)
