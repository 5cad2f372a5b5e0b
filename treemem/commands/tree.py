"""`treemem tree`: draw a run's pathway tree (PDF, PNG or SVG) and export it as a graph."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np

from treemem.pipeline.sinks import output_errors, read_run_tree
from treemem.types import InputError

FIGURE_SUFFIXES = (".pdf", ".png", ".svg")
THUMBNAILS = 8


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tree",
        help="draw a run's pathway tree as a figure; export it as GraphML or JSON",
        description="Draw the pathway tree of one object of a `treemem run` output: time left "
        "to right, one row per pathway slot, the final pathway highlighted, the frames where "
        "uncertainty diversity chose the survivors shaded.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a `treemem run` output folder (or its tree.jsonl)")
    parser.add_argument("--out", type=Path, help="figure to write: .pdf, .png or .svg")
    parser.add_argument("--object", type=int, dest="obj", metavar="ID",
                        help="object id to draw (default: the smallest in the tree)")
    parser.add_argument("--color-by", choices=("iou", "occlusion"), default="iou",
                        help="node colour: predicted IoU or occlusion logit (default iou)")
    parser.add_argument("--collapse", action="store_true",
                        help="merge runs of frames where no pathway branches into one edge")
    parser.add_argument("--frames", type=frame_window, metavar="A:B",
                        help="draw only frames A to B (inclusive), e.g. 120:260")
    parser.add_argument("--thumbnails", type=Path, metavar="VIDEO",
                        help="add a strip of the chosen masks over frames of VIDEO")
    parser.add_argument("--graphml", type=Path, metavar="FILE", help="also write GraphML")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write node-link JSON")
    parser.add_argument("--serif", action="store_true", help="serif fonts (for papers)")
    parser.add_argument("--width", type=float, default=7.0, help="figure width in inches")
    parser.add_argument("--dpi", type=int, default=200, help="resolution of a .png (default 200)")
    parser.set_defaults(handler=run)


def frame_window(text: str) -> tuple[int, int]:
    """'120:260' -> (120, 260)."""
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError
        window = (int(first), int(last))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FIRST:LAST frame numbers, got {text!r}"
        ) from None
    if window[0] > window[1]:
        raise argparse.ArgumentTypeError(f"frame window {text} starts after it ends")
    return window


def run(args: argparse.Namespace) -> int:
    if args.out is None and args.graphml is None and args.json is None:
        raise InputError("nothing to write: give --out FIGURE, --graphml FILE or --json FILE")
    if args.out is not None and args.out.suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"--out must end in {', '.join(FIGURE_SUFFIXES)}, got {args.out.name}")
    # viz/ installs as treemem.viz; imported by name, as the other optional modules are
    tree_view = importlib.import_module("treemem.viz.tree_view")
    run_dir, record = read_run_tree(args.run_dir)
    view = tree_view.select_tree(record, args.obj, args.frames, args.collapse)
    if args.out is not None:
        thumbnails = None
        if args.thumbnails is not None:
            overlay = importlib.import_module("treemem.viz.overlay")
            picks = np.linspace(0, len(view.visible_frames) - 1,
                                min(THUMBNAILS, len(view.visible_frames)))
            frames = view.visible_frames[np.unique(picks.round().astype(int))].tolist()
            thumbnails = overlay.mask_thumbnails(run_dir, args.thumbnails, frames, obj=view.obj)
        tree_figure = importlib.import_module("treemem.viz.tree_figure")
        figure = tree_figure.draw_view(view, color_by=args.color_by, thumbnails=thumbnails,
                                       serif=args.serif, width=args.width)
        with output_errors(args.out):
            tree_figure.save_figure(figure, args.out, dpi=args.dpi, serif=args.serif)
        print(f"wrote {args.out} (object {view.obj}, {int(view.kept.sum())} kept and "
              f"{int((~view.kept).sum())} pruned nodes, {len(view.uncertain_frames)} uncertain "
              "frames)")
    if args.graphml is not None or args.json is not None:
        tree_export = importlib.import_module("treemem.viz.tree_export")
        graph = tree_export.view_graph(view)
        if args.graphml is not None:
            with output_errors(args.graphml):
                tree_export.export_graphml(graph, args.graphml)
            print(f"wrote {args.graphml}")
        if args.json is not None:
            with output_errors(args.json):
                tree_export.export_json(graph, args.json)
            print(f"wrote {args.json}")
    return 0
