"""`treemem run`: track prompted objects through a video and write the masks and the tree.

Output folder:
    masks/00000.png  one DAVIS palette PNG per tracked frame (pixel = object id), each written
                     atomically as soon as every object's mask for that frame is final
    tree.jsonl       the recorded pathway tree, streamed while the run goes
    run.json         what ran and how long it took; written last, so a folder without it
                     holds an unfinished run
    run.partial.json the settings of an unfinished run (removed once run.json is written);
                     `--resume` checks them and finishes the run (see treemem.resume)
    snapshot.bin     the search state every --snapshot-every frames (removed at the end);
                     `--resume` goes on from it (see treemem.pipeline.snapshots)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treemem.pipeline import inputs
from treemem.pipeline.frames import check_direction
from treemem.pipeline.runner import choose_strategy, run_to_folder
from treemem.pipeline.sinks import check_output, interrupted_message
from treemem.pipeline.snapshots import DEFAULT_EVERY
from treemem.registry import parse_overrides
from treemem.types import InputError, Prompt

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
    parser.add_argument("--backend", choices=inputs.BACKENDS, default="sam2",
                        help="segmentation model (default sam2)")
    parser.add_argument("--checkpoint", type=Path, help="SAM 2 checkpoint (.pt)")
    parser.add_argument("--config",
                        help="SAM 2 model config (default: inferred from the checkpoint)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present)")
    parser.add_argument("--offload", action="store_true",
                        help="keep frames and memories in host memory (long videos)")
    parser.add_argument("--image-size", type=int, metavar="N", help="SAM 2 input resolution")
    parser.add_argument("--dtype", default="fp32", metavar="{fp32,bf16,fp16}",
                        help="SAM 2 precision: fp32 (default) or autocast to bf16 / fp16, as "
                        "sam2's tools run it")
    parser.add_argument("--seed", type=int, default=0, help="synthetic backend seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--direction", default="forward", metavar="{forward,backward,both}",
                        help="track forward from the prompt frame (default), backward to "
                        "frame 0, or both (one search each way, one mask per frame)")
    parser.add_argument("--max-lag", type=int, metavar="L",
                        help="decide a frame at most L frames late (live use; default: exact)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in --out")
    parser.add_argument("--resume", action="store_true",
                        help="finish the interrupted run in --out (give the same options); "
                        "the output equals an uninterrupted run's")
    parser.add_argument("--snapshot-every", type=int, default=DEFAULT_EVERY, metavar="N",
                        help="save the search state every N frames, so --resume recomputes at "
                        f"most N frames (default {DEFAULT_EVERY}; 0: never, a resume then "
                        "searches from the first frame)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    choice = choose_strategy(args.strategy, parse_overrides(args.overrides))
    direction = check_direction(args.direction, "--direction")
    if args.max_lag is not None and args.max_lag < 0:
        raise InputError(f"--max-lag must be >= 0, got {args.max_lag}")
    if args.mask is None and args.box is None and args.points is None:
        raise InputError("no prompt given; pass --mask FIRST_FRAME_MASK.png, --box or --points")
    if args.objects is not None and args.objects < 1:
        raise InputError(f"--objects must be >= 1, got {args.objects}")
    if args.snapshot_every < 0:
        raise InputError(f"--snapshot-every must be >= 0, got {args.snapshot_every}")
    if args.overwrite and args.resume:
        raise InputError("--overwrite and --resume exclude each other; pass one")
    check_output(args.out, overwrite=args.overwrite, resume=args.resume)
    spec = inputs.ModelSpec(args.checkpoint, args.config, args.device, args.offload,
                            args.image_size, seed=args.seed, dtype=args.dtype)
    inputs.check_dtype(args.backend, args.dtype)
    if args.backend == "sam2":
        spec.check()
    with inputs.open_backend(args.video, args.backend, spec) as opened:
        prompts = build_prompts(args, opened.frame_size, opened.num_frames)
        try:
            report = run_to_folder(
                opened, prompts, choice, args.out, overwrite=args.overwrite,
                resume=args.resume, max_lag=args.max_lag,
                snapshot_every=args.snapshot_every or None,
                progress=False if args.no_progress else None, direction=direction,
            )
        except KeyboardInterrupt:
            print(f"treemem: {interrupted_message(args.out)}", file=sys.stderr)
            return INTERRUPTED
    print(
        f"wrote {report['frames']} frames of {len(report['objects'])} object(s) to "
        f"{args.out / 'masks'} in {report['seconds']:.1f} s ({report['fps'] or 0:.1f} frames/s)"
    )
    return 0


def build_prompts(
    args: argparse.Namespace, frame_size: tuple[int, int], num_frames: int
) -> list[Prompt]:
    """The prompts the arguments describe, checked against the video."""
    frame = args.mask_frame
    inputs.check_frame(frame, num_frames, "--mask-frame")
    prompts: list[Prompt] = []
    if args.mask is not None:
        prompts += inputs.as_prompts(args.mask, frame_size, num_frames, frame,
                                     max_objects=args.objects)
    if args.box is not None or args.points is not None:
        if not 0 < args.object <= 255:
            raise InputError(f"--object must be in 1..255 (a palette index), got {args.object}")
        if any(p.obj == args.object for p in prompts):
            raise InputError(
                f"object {args.object} is prompted by both --mask and --box/--points; give the "
                "box or points another id with --object"
            )
        box = None if args.box is None else parse_box(args.box)
        points, labels = parse_points(args.points) if args.points else ((), ())
        prompt = Prompt(args.object, frame, box=box, points=points, labels=labels)
        inputs.check_prompt(prompt, frame_size, num_frames)
        prompts.append(prompt)
    return prompts


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`"x0,y0,x1,y1"` in pixels (checked against the frame with the rest of the prompt)."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--box needs x0,y0,x1,y1 in pixels, got {text!r}") from None
    return (x0, y0, x1, y1)


def parse_points(text: str) -> tuple[tuple[tuple[float, float], ...], tuple[int, ...]]:
    """`"x,y,label;x,y"` -> points and labels (label 1 = object, 0 = background; default 1)."""
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
        points.append((x, y))
        labels.append(label)
    if not points:
        raise InputError(f'--points needs at least one "x,y,label", got {text!r}')
    return tuple(points), tuple(labels)
