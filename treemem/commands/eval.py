"""`treemem eval PRED_DIR GT_DIR`: J, F and J&F of predicted masks against ground truth."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treemem.evaluation import (
    format_table,
    frame_axis,
    plot_curves,
    score_folders,
    scores_record,
    write_csv,
    write_json,
)
from treemem.metrics import BOUND_TH
from treemem.protocols import PROTOCOLS, format_split, get_protocol, score_split
from treemem.types import InputError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score predicted masks against ground truth (J, F, J&F as DAVIS / SA-V)",
        description=(
            "Score folders in the DAVIS, SA-V or LVOS layout: one folder per video holding a "
            "palette PNG per frame (or one folder per object id of binary PNGs), or a single "
            "video folder. The first and last annotated frames are skipped, as the benchmarks do."
        ),
    )
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="predicted masks")
    parser.add_argument("gt_dir", type=Path, metavar="GT_DIR", help="ground-truth masks")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write per-object scores as CSV")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all scores as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="plot per-frame J&F curves")
    parser.add_argument(
        "--all-frames",
        action="store_true",
        help="also score the first and last annotated frames (not the benchmark protocol)",
    )
    parser.add_argument(
        "--bound-th",
        type=float,
        default=BOUND_TH,
        help=(
            "boundary tolerance: a fraction of the image diagonal, or pixels if >= 1 "
            f"(default {BOUND_TH})"
        ),
    )
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="score as that benchmark does; GT_DIR is then the benchmark split in its layout "
        "(see `treemem bench --protocol`)",
    )
    parser.add_argument("--split", help="with --protocol: the split (DAVIS val, LVOS valid, ...)")
    parser.set_defaults(handler=run)


def run_protocol(args: argparse.Namespace) -> int:
    if args.all_frames or args.bound_th != BOUND_TH or args.plot is not None:
        raise InputError("--all-frames, --bound-th and --plot do not apply with --protocol")
    protocol = get_protocol(args.protocol)
    dataset = protocol.read(args.gt_dir, args.split)
    videos = score_split(protocol, dataset, args.pred_dir)
    print(format_split(protocol, dataset, videos))
    if args.csv is not None:
        write_csv(args.csv, videos)
    if args.json is not None:
        groups = {v.name: v.group for v in dataset.videos}
        summary = protocol.summary(videos, groups)
        record = scores_record(
            videos, protocol=protocol.name, split=dataset.split,
            predictions=str(args.pred_dir), dataset=str(args.gt_dir),
            protocol_summary={k: None if v != v else round(v, 6) for k, v in summary.items()},
        )
        write_json(args.json, record)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.protocol is not None:
        return run_protocol(args)
    videos = []
    for scores in score_folders(
        args.pred_dir, args.gt_dir, skip_first_last=not args.all_frames, bound_th=args.bound_th
    ):
        videos.append(scores)
        if sys.stderr.isatty():
            print(f"\rscored {len(videos)} videos ({scores.video})\x1b[K", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print("\r\x1b[K", end="", file=sys.stderr)
    print(format_table(videos))
    if args.csv is not None:
        write_csv(args.csv, videos)
    if args.json is not None:
        record = scores_record(
            videos,
            predictions=str(args.pred_dir),
            ground_truth=str(args.gt_dir),
            skip_first_last=not args.all_frames,
            bound_th=args.bound_th,
        )
        write_json(args.json, record)
    if args.plot is not None:
        curves = {}
        for video in videos:
            frames, curve = video.frame_curve()
            curves[video.video] = (frame_axis(frames), curve)
        plot_curves(args.plot, curves, f"per-frame J&F, {args.pred_dir.name}")
    return 0
