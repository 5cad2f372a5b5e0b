"""`treemem run`: track prompted objects through a video and write the masks and the tree.

Output folder:
    masks/00000.png  one DAVIS palette PNG per tracked frame (pixel = object id), each written
                     atomically as soon as every object's mask for that frame is final
    tree.jsonl       the recorded pathway tree, streamed while the run goes
    run.json         what ran and how long it took; written last, so a folder without it
                     holds an unfinished run
    run.partial.json the settings of an unfinished run (removed once run.json is written);
                     `--resume` checks them and finishes the run (see treemem.resume)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import treemem
from treemem.api import import_sam2_backend
from treemem.backend import Backend
from treemem.engine import Engine
from treemem.io.atomic import remove_temporaries
from treemem.io.atomic import write_json as write_json  # re-exported: demo uses it
from treemem.io.masks import (
    compose_ids,
    mask_prompts,
    read_mask,
    validate_mask,
    write_palette_png,
)
from treemem.io.video import VideoSource, open_video
from treemem.progress import ProgressBar
from treemem.registry import REGISTRY, parse_overrides
from treemem.resume import PARTIAL, begin, finish, run_settings
from treemem.tree import TreeRecord
from treemem.types import BoolArray, InputError, Prompt, TreememError

TREE_FLUSH_FRAMES = 50
RUN_FILES = ("run.json", PARTIAL, "tree.jsonl", "masks")
INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="track objects through a video",
        description="Track the prompted objects through VIDEO; write DAVIS palette PNGs, the "
        "search tree (tree.jsonl) and run.json to --out.",
    )
    parser.add_argument("video", type=Path, help="an mp4 or a folder of JPEG/PNG frames "
                        "(--backend synthetic: a saved synthetic video folder)")
    prompts = parser.add_argument_group("prompts (at least one of --mask, --box, --points)")
    prompts.add_argument("--mask", type=Path, help="PNG of object ids on the prompt frame "
                         "(palette PNG, or grayscale 0/1 or 0/255 for one object)")
    prompts.add_argument("--mask-frame", type=int, default=0, metavar="N",
                         help="frame the prompts are on (default 0)")
    prompts.add_argument("--box", help="box prompt in pixels: x0,y0,x1,y1")
    prompts.add_argument("--points", help='point prompts in pixels: "x,y,label;..." '
                         "(label 1 = object, 0 = background; default 1)")
    prompts.add_argument("--object", type=int, default=1, metavar="ID",
                         help="object id of the --box/--points prompt (default 1)")
    prompts.add_argument("--objects", type=int, metavar="N",
                         help="refuse a mask with more than N object ids")
    parser.add_argument("--strategy", default="sam2long",
                        help="strategy set (default sam2long; see `treemem strategies`)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override a strategy parameter (repeatable)")
    parser.add_argument("--backend", choices=("sam2", "synthetic"), default="sam2",
                        help="segmentation model (default sam2)")
    parser.add_argument("--checkpoint", type=Path, help="SAM 2 checkpoint (.pt)")
    parser.add_argument("--config",
                        help="SAM 2 model config (default: inferred from the checkpoint)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    parser.add_argument("--offload", action="store_true",
                        help="keep frames and memories in host memory (long videos)")
    parser.add_argument("--image-size", type=int, metavar="N", help="SAM 2 input resolution")
    parser.add_argument("--seed", type=int, default=0, help="synthetic backend seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--max-lag", type=int, metavar="L",
                        help="decide a frame at most L frames late (live use; default: exact)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in --out")
    parser.add_argument("--resume", action="store_true",
                        help="finish the interrupted run in --out (give the same options); "
                        "the output equals an uninterrupted run's")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    strategy_params = REGISTRY.create(args.strategy, parse_overrides(args.overrides))
    if args.max_lag is not None and args.max_lag < 0:
        raise InputError(f"--max-lag must be >= 0, got {args.max_lag}")
    if args.mask is None and args.box is None and args.points is None:
        raise InputError("no prompt given; pass --mask FIRST_FRAME_MASK.png, --box or --points")
    if args.objects is not None and args.objects < 1:
        raise InputError(f"--objects must be >= 1, got {args.objects}")
    if args.overwrite and args.resume:
        raise InputError("--overwrite and --resume exclude each other; pass one")
    check_output(args.out, overwrite=args.overwrite, resume=args.resume)
    try:
        report = _run(args, strategy_params)
    except KeyboardInterrupt:
        masks = args.out / "masks"
        # Ctrl-C between creating an atomic write's temporary file and its cleanup leaves it.
        remove_temporaries(masks, "*.png")
        written = len(list(masks.glob("*.png"))) if masks.is_dir() else 0
        print(
            f"treemem: interrupted; {written} finished frame(s) are in {masks}; run the same "
            "command with --resume to finish",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(
        f"wrote {report['frames']} frames of {len(report['objects'])} object(s) to "
        f"{args.out / 'masks'} in {report['seconds']:.1f} s ({report['fps'] or 0:.1f} frames/s)"
    )
    return 0


def _run(args: argparse.Namespace, strategy_params: Any) -> dict[str, Any]:
    with ExitStack() as stack:
        if args.backend == "synthetic":
            backend, video_info, backend_info = open_synthetic(args.video, seed=args.seed)
            prompts = build_prompts(args, backend.frame_size, backend.num_frames)
        else:
            check_sam2_options(args)
            video = stack.enter_context(open_video(args.video))
            prompts = build_prompts(args, video.frame_size, video.num_frames)
            backend, backend_info = open_sam2(args, video)
            video_info = {
                "path": str(args.video),
                "frames": video.num_frames,
                "size": list(video.frame_size),
                "fps": video.fps,
            }
        report = track(
            backend,
            prompts,
            strategy_params,
            args.out,
            overwrite=args.overwrite,
            resume=args.resume,
            max_lag=args.max_lag,
            info={"video": video_info, "backend": backend_info},
            progress=not args.no_progress,
        )
    return report


# --- inputs -------------------------------------------------------------------------------------


def check_sam2_options(args: argparse.Namespace) -> None:
    """What can be checked before the video and the model are opened."""
    if args.checkpoint is None:
        raise InputError(
            "the sam2 backend needs --checkpoint (e.g. sam2.1_hiera_tiny.pt from the SAM 2 "
            "release), or use --backend synthetic"
        )
    if not args.checkpoint.is_file():
        raise InputError(f"checkpoint not found: {args.checkpoint}; give the path of a .pt file")
    if args.image_size is not None and args.image_size <= 0:
        raise InputError(f"--image-size must be > 0, got {args.image_size}")


def open_sam2(args: argparse.Namespace, video: VideoSource) -> tuple[Backend, dict[str, Any]]:
    """The SAM 2 backend reading frames from `video` (imported here: torch is heavy)."""
    module = import_sam2_backend()
    backend: Backend = module.open_backend(
        read_frame=video.read,
        num_frames=video.num_frames,
        frame_size=video.frame_size,
        checkpoint=args.checkpoint,
        config=args.config,
        device=args.device,
        offload=args.offload,
        image_size=args.image_size,
    )
    backend_info = {
        "name": "sam2",
        "checkpoint": str(args.checkpoint),
        "config": args.config,
        "device": args.device,
        "offload": args.offload,
        "image_size": args.image_size,
    }
    return backend, backend_info


def open_synthetic(
    folder: Path,
    *,
    seed: int,
    hint: str = "--backend synthetic reads the folders `treemem demo` writes",
) -> tuple[Backend, dict[str, Any], dict[str, Any]]:
    """The synthetic backend over a saved synthetic video folder; `hint` ends the error
    message for a folder that is not one (what the user should do instead)."""
    synthetic_video = importlib.import_module("treemem.backends.synthetic_video")
    synthetic = importlib.import_module("treemem.backends.synthetic")
    if not (folder / "video.json").is_file():
        raise InputError(f"{folder} is not a saved synthetic video (no video.json); {hint}")
    video = synthetic_video.SyntheticVideo.load(folder)
    backend: Backend = synthetic.SyntheticBackend(video, seed=seed)
    frames, height, width = video.frames.shape[:3]
    video_info = {"path": str(folder), "frames": int(frames), "size": [height, width], "fps": None}
    return backend, video_info, {"name": "synthetic", "seed": seed}


def build_prompts(
    args: argparse.Namespace, frame_size: tuple[int, int], num_frames: int
) -> list[Prompt]:
    """The prompts the arguments describe, checked against the video."""
    frame = args.mask_frame
    if not 0 <= frame < num_frames:
        raise InputError(f"--mask-frame {frame} is outside the video (frames 0..{num_frames - 1})")
    prompts: list[Prompt] = []
    if args.mask is not None:
        ids = read_mask(args.mask)
        validate_mask(ids, frame_size, max_objects=args.objects, name=f"mask {args.mask}")
        prompts += mask_prompts(ids, frame)
    if args.box is not None or args.points is not None:
        if not 0 < args.object <= 255:
            raise InputError(f"--object must be in 1..255 (a palette index), got {args.object}")
        if any(p.obj == args.object for p in prompts):
            raise InputError(
                f"object {args.object} is prompted by both --mask and --box/--points; give the "
                "box or points another id with --object"
            )
        box = parse_box(args.box, frame_size) if args.box is not None else None
        points, labels = parse_points(args.points, frame_size) if args.points else ((), ())
        prompts.append(Prompt(args.object, frame, box=box, points=points, labels=labels))
    return prompts


def parse_box(text: str, frame_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """`"x0,y0,x1,y1"` in pixels, inside the frame, with x0 < x1 and y0 < y1."""
    height, width = frame_size
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--box needs x0,y0,x1,y1 in pixels, got {text!r}") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(
            f"--box {text} is not a box inside the {width}x{height} frame; give "
            f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}"
        )
    return (x0, y0, x1, y1)


def parse_points(
    text: str, frame_size: tuple[int, int]
) -> tuple[tuple[tuple[float, float], ...], tuple[int, ...]]:
    """`"x,y,label;x,y"` -> points and labels (label 1 = object, 0 = background; default 1)."""
    height, width = frame_size
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        values = item.split(",")
        try:
            x, y = float(values[0]), float(values[1])
            label = int(values[2]) if len(values) == 3 else 1
            if len(values) not in (2, 3) or label not in (0, 1):
                raise ValueError(item)
        except (ValueError, IndexError):
            raise InputError(
                f'--points needs "x,y,label;..." with label 0 or 1, got {item!r}'
            ) from None
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"point ({x:g}, {y:g}) is outside the {width}x{height} frame; give 0 <= x < "
                f"{width} and 0 <= y < {height}"
            )
        points.append((x, y))
        labels.append(label)
    if not points:
        raise InputError(f'--points needs at least one "x,y,label", got {text!r}')
    return tuple(points), tuple(labels)


# --- output ------------------------------------------------------------------------------------


def check_output(out: Path, *, overwrite: bool, resume: bool = False) -> None:
    """Refuse a file, or a folder holding another run unless `overwrite`, or `resume` when
    that run is unfinished (nothing is written)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume and "run.json" in found:
        raise InputError(
            f"{out} holds a finished run (run.json), nothing to resume; pass --overwrite to run "
            "it again"
        )
    if found and not (overwrite or resume):
        raise InputError(
            f"{out} already holds a run ({found[0]}); pass --overwrite to replace it, --resume "
            "to finish an interrupted one, or choose another --out"
        )


def clear_run(out: Path) -> None:
    """Remove a previous run's files, run.json first so a half-cleared folder never looks done.

    Only treemem's own files go: run.json, run.partial.json, tree.jsonl and masks/*.png.
    """
    for name in ("run.json", PARTIAL, "tree.jsonl"):
        (out / name).unlink(missing_ok=True)
    masks = out / "masks"
    if masks.is_dir():
        for file in masks.iterdir():
            if file.is_file() and (file.suffix == ".png" or file.name.endswith(".tmp")):
                file.unlink()


@dataclass
class _MaskWriter:
    """Writes frame f's palette PNG once every object's mask for f is final.

    With `keep_equal` (a resumed run) a PNG already on disk that holds the same ids is left
    as it is; any other is replaced."""

    folder: Path
    objects: tuple[int, ...]
    frame_size: tuple[int, int]
    keep_equal: bool = False
    pending: dict[int, dict[int, BoolArray]] = dataclasses.field(default_factory=dict)
    written: int = 0

    def add(self, obj: int, frame: int, mask: BoolArray) -> None:
        if mask.shape != self.frame_size:
            raise TreememError(
                f"the backend gave a {mask.shape} mask for a {self.frame_size} video"
            )
        masks = self.pending.setdefault(frame, {})
        masks[obj] = np.array(mask, dtype=bool)
        if len(masks) == len(self.objects):
            ordered = [(o, masks[o]) for o in self.objects]
            ids = compose_ids(ordered, self.frame_size)
            path = self.folder / f"{frame:05d}.png"
            if not (self.keep_equal and _holds(path, ids)):
                write_palette_png(path, ids)
            del self.pending[frame]
            self.written += 1


def _holds(path: Path, ids: npt.NDArray[np.uint8]) -> bool:
    """Whether the PNG at `path` exists and holds exactly `ids`."""
    if not path.is_file():
        return False
    try:
        found = read_mask(path)
    except InputError:
        return False
    return found.shape == ids.shape and bool((found == ids).all())


def track(
    backend: Backend,
    prompts: Sequence[Prompt],
    strategy_params: Any,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    max_lag: int | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    label: str = "",
) -> dict[str, Any]:
    """Run the search and write masks/, tree.jsonl and run.json into `out`.

    Returns what run.json holds. `strategy_params` is a registered strategy set's parameter
    record (what `REGISTRY.create` returns). With `resume`, an interrupted run in `out` started
    with the same settings is finished (see `treemem.resume`); the files end up identical to
    an uninterrupted run's, timings in run.json aside.
    """
    check_output(out, overwrite=overwrite, resume=resume)
    strategy = strategy_params.build()
    record = TreeRecord()
    engine = Engine(strategy, backend, record=record, max_lag=max_lag)
    objects = tuple(sorted({p.obj for p in prompts}))
    first = min(p.frame for p in prompts)
    total = backend.num_frames - first
    settings = run_settings(
        strategy.name, dataclasses.asdict(strategy_params), dict(info or {}), prompts, max_lag
    )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        clear_run(out)
    resuming = begin(out, settings, resume=resume)
    for name in ("run.json", PARTIAL):
        remove_temporaries(out, name)
    remove_temporaries(out / "masks", "*.png")
    (out / "masks").mkdir(exist_ok=True)
    writer = _MaskWriter(out / "masks", objects, backend.frame_size, keep_equal=resuming)
    forced = 0
    started = time.perf_counter()
    with open(out / "tree.jsonl", "w", encoding="utf-8") as tree_stream, ProgressBar(
        total, label or strategy.name, enabled=None if progress else False
    ) as bar:

        def on_frame(frame: int) -> None:
            done = frame - first + 1
            bar.update(done)
            if done % TREE_FLUSH_FRAMES == 0:
                record.write_new_rows(tree_stream)
                tree_stream.flush()

        for decision in engine.run(prompts, progress=on_frame):
            writer.add(decision.obj, decision.frame, (backend.mask_logits(decision.node) > 0))
            forced += decision.forced
        record.write_new_rows(tree_stream)
    seconds = time.perf_counter() - started
    if writer.pending:
        raise TreememError(
            f"frames {sorted(writer.pending)[:5]} were not decided for every object; this is a "
            "treemem bug, please report it"
        )
    report: dict[str, Any] = {
        "treemem": treemem.__version__,
        "strategy": strategy.name,
        "parameters": dataclasses.asdict(strategy_params),
        **dict(info or {}),
        "prompts": [{"object": p.obj, "frame": p.frame, "kind": p.kind} for p in prompts],
        "objects": list(objects),
        "first_frame": first,
        "frames": writer.written,
        "max_lag": max_lag,
        "forced_decisions": forced,
        "rejected_candidates": engine.rejected,
        "tree_rows": len(record),
        "seconds": round(seconds, 3),
        "fps": round(writer.written / seconds, 3) if seconds > 0 else None,
    }
    write_json(out / "run.json", report)
    finish(out)
    return report
