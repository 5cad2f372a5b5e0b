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

With `--live`, VIDEO is any source PyAV opens (a file, rtsp:// or http:// URL, a capture
device, `-` for an encoded stream on standard input), decoded as it comes: the same folder,
each PNG written once its frame is decided. Exit codes: 0 when the source ended (or Ctrl-C
stopped it), 2 for a bad input (one line), 3 when the source broke off mid-way (everything
decided before the break is written, run.json says why), 130 for a second Ctrl-C.
`--live --resume` goes on from the last snapshot: a file source skips the frames it had
pushed, a live one goes on with the frames it sends now, numbered after the snapshot's.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from pathlib import Path

from treemem.commands.model_flags import add_model_flags
from treemem.io.masks import read_mask, validate_mask
from treemem.io.stream import DEFAULT_TIMEOUT, LiveSource
from treemem.pipeline import inputs
from treemem.pipeline.frames import check_direction
from treemem.pipeline.runner import (
    LivePreview,
    StrategyChoice,
    choose_strategy,
    run_live_source,
    run_to_folder,
)
from treemem.pipeline.sinks import check_output, interrupted_message
from treemem.pipeline.snapshots import DEFAULT_EVERY
from treemem.registry import parse_overrides
from treemem.types import InputError, Prompt

INTERRUPTED = 130
SOURCE_BROKE = 3
"""`--live`: the source broke off mid-way; what was decided before the break is written."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="track objects through a video",
        description="Track the prompted objects through VIDEO; write DAVIS palette PNGs, the "
        "search tree (tree.jsonl) and run.json to --out.",
    )
    parser.add_argument("video", help="an mp4 or a folder of JPEG/PNG frames (--backend "
                        "synthetic: a saved synthetic video folder); with --live any source "
                        "PyAV opens: a file, rtsp:// or http:// URL, a device, - for stdin")
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
    add_model_flags(parser, "sam2")
    parser.add_argument("--offload", action="store_true",
                        help="keep frames and memories in host memory (long videos)")
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
    live = parser.add_argument_group("live sources (--live)")
    live.add_argument("--live", action="store_true",
                      help="read VIDEO as a stream of unknown length, decoded as it comes; "
                      "masks are written as frames are decided (sam2 backend)")
    live.add_argument("--input-format", metavar="FMT",
                      help="FFmpeg demuxer for sources it cannot guess (v4l2, avfoundation, "
                      "dshow, mpegts on a pipe)")
    live.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                      help="an FFmpeg option of the source (e.g. rtsp_transport=tcp; repeatable)")
    live.add_argument("--source-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                      help=f"seconds without data before the source counts as broken "
                      f"(default {DEFAULT_TIMEOUT:g})")
    live.add_argument("--overlays", type=Path, metavar="DIR",
                      help="also write each decided frame with its masks drawn over it (JPEG)")
    live.add_argument("--serve", metavar="[HOST:]PORT",
                      help="serve a live preview (MJPEG) a browser opens at http://HOST:PORT/ "
                      "(HOST default 127.0.0.1)")
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
    if not args.live and (args.overlays or args.serve):
        raise InputError("--overlays and --serve go with --live")
    if args.live and direction != "forward":
        raise InputError("--live tracks forward: a stream has no frames after its newest")
    check_output(args.out, overwrite=args.overwrite, resume=args.resume)
    spec = inputs.ModelSpec(args.checkpoint, args.config, args.device, args.offload,
                            args.image_size, seed=args.seed, dtype=args.dtype,
                            compile=args.compile)
    inputs.check_model_options(args.backend, spec)
    if args.backend in inputs.MODEL_BACKENDS:
        spec.check(args.backend)
    if args.live:
        return run_live(args, choice, spec)
    with inputs.open_backend(Path(args.video), args.backend, spec) as opened:
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
    prompt = box_or_points(args, {p.obj for p in prompts})
    if prompt is not None:
        inputs.check_prompt(prompt, frame_size, num_frames)
        prompts.append(prompt)
    return prompts


def box_or_points(args: argparse.Namespace, mask_objects: set[int]) -> Prompt | None:
    """The --box/--points prompt on --mask-frame (None without one); checked against the
    frame by the caller (a live source's size is known only at its first frame)."""
    if args.box is None and args.points is None:
        return None
    if not 0 < args.object <= 255:
        raise InputError(f"--object must be in 1..255 (a palette index), got {args.object}")
    if args.object in mask_objects:
        raise InputError(
            f"object {args.object} is prompted by both --mask and --box/--points; give the "
            "box or points another id with --object"
        )
    box = None if args.box is None else parse_box(args.box)
    points, labels = parse_points(args.points) if args.points else ((), ())
    return Prompt(args.object, args.mask_frame, box=box, points=points, labels=labels)


# --- live sources ---------------------------------------------------------------------------


def run_live(args: argparse.Namespace, choice: StrategyChoice, spec: inputs.ModelSpec) -> int:
    """`--live`: the source into `run_live_source` (see the module docstring for the exit
    codes)."""
    if args.backend != "sam2":
        raise InputError("--live runs the sam2 backend (the synthetic one needs a saved video)")
    inputs.check_frame(args.mask_frame, None, "--mask-frame")
    mask = None if args.mask is None else read_mask(args.mask)
    if mask is not None:
        validate_mask(mask, mask.shape, max_objects=args.objects, name=f"mask {args.mask}")
    objects = set() if mask is None else {int(v) for v in set(mask.ravel().tolist()) - {0}}
    options = dict(_option(text) for text in args.input_option)
    source = LiveSource(args.video, args.input_format, options, args.source_timeout)
    serve = None if args.serve is None else _address(args.serve)
    preview = None
    if args.overlays is not None or serve is not None:
        preview = functools.partial(_preview, args.overlays, serve)
    ran = run_live_source(
        source, choice, args.out, model=spec, mask=mask, mask_frame=args.mask_frame,
        prompt=box_or_points(args, objects), max_lag=args.max_lag, overwrite=args.overwrite,
        resume=args.resume, snapshot_every=args.snapshot_every or None,
        progress=False if args.no_progress else None, preview=preview,
    )
    frames, masks = ran.report["frames"], args.out / "masks"
    if ran.broken is None:
        ended = "stopped by Ctrl-C" if ran.stopped else "the source ended"
        print(f"{ended} after {ran.decoded} frames; wrote {frames} frames of "
              f"{len(ran.report['objects'])} object(s) to {masks}")
        return 0
    print(f"treemem: the source broke off after {ran.decoded} frames ({ran.broken}); "
          f"the {frames} frames decided are in {masks}", file=sys.stderr)
    return SOURCE_BROKE


def _preview(folder: Path | None, serve: tuple[str, int] | None) -> LivePreview:
    """`--overlays`/`--serve`, made once the source is open; says where it is served."""
    viz = importlib.import_module("treemem.viz.preview")  # viz is imported by name, as elsewhere
    preview = viz.Preview.open(folder, serve)
    if preview.url is not None:
        print(f"treemem: live preview at {preview.url}", file=sys.stderr)
    opened: LivePreview = preview
    return opened


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InputError(f"--input-option needs KEY=VALUE, got {text!r}")
    return key, value


def _address(text: str) -> tuple[str, int]:
    """`--serve [HOST:]PORT` -> (host, port); host defaults to the loopback address."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise InputError(f"--serve needs [HOST:]PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise InputError(f"--serve port must be in 0..65535, got {number}")
    return host or "127.0.0.1", number


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
