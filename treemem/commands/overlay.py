"""`treemem overlay`: a run's masks over the video, as an mp4 and/or a PNG montage."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np

from treemem.pipeline.sinks import output_errors, read_run_info
from treemem.types import InputError

MONTAGE_FRAMES = 6


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "overlay",
        help="draw a run's masks over the video (mp4 and/or PNG montage)",
        description="Draw the masks of a `treemem run` output over the video, one colour per "
        "object, optionally side by side with a second run (e.g. greedy vs sam2long).",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `treemem run` output")
    parser.add_argument("--video", type=Path,
                        help="the video (mp4 or frame folder); default: the one in run.json")
    parser.add_argument("--out", type=Path, help="mp4 to write")
    parser.add_argument("--compare", type=Path, metavar="OTHER_RUN_DIR",
                        help="a second run drawn side by side")
    parser.add_argument("--montage", type=Path, metavar="PNG", help="PNG montage to write")
    parser.add_argument("--montage-frames", type=frame_list, metavar="I,J,...",
                        help=f"frames of the montage (default: {MONTAGE_FRAMES} evenly spaced)")
    parser.add_argument("--montage-width", type=int, metavar="PX",
                        help="scale the montage to this width in pixels")
    parser.add_argument("--fps", type=float, help="frame rate of the mp4 (default: the video's)")
    parser.set_defaults(handler=run)


def frame_list(text: str) -> list[int]:
    try:
        frames = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected frame numbers like 0,10,20, got {text!r}"
        ) from None
    if not frames:
        raise argparse.ArgumentTypeError("no frame given")
    return frames


def run(args: argparse.Namespace) -> int:
    overlay = importlib.import_module("treemem.viz.overlay")
    if args.out is None and args.montage is None:
        raise InputError("nothing to write: give --out OVERLAY.mp4 and/or --montage PNG")
    video = args.video
    if video is None:
        recorded = read_run_info(args.run_dir).get("video", {}).get("path")
        if not recorded:
            raise InputError(f"{args.run_dir}/run.json names no video: pass --video VIDEO")
        video = Path(recorded)
    if args.out is not None:
        with output_errors(args.out):
            count = overlay.write_video(args.run_dir, video, args.out, compare=args.compare,
                                        fps=args.fps)
        print(f"wrote {args.out} ({count} frames)")
    if args.montage is not None:
        frames = args.montage_frames
        if frames is None:
            total = overlay.open_frames(video).num_frames
            count = min(MONTAGE_FRAMES, total)
            frames = np.unique(np.linspace(0, total - 1, count).round().astype(int)).tolist()
        image = overlay.montage(args.run_dir, video, frames, compare=args.compare,
                                width=args.montage_width)
        with output_errors(args.montage):
            overlay.save_png(image, args.montage)
        print(f"wrote {args.montage} ({len(frames)} frames, {image.shape[1]}x{image.shape[0]})")
    return 0
