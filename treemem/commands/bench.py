"""`treemem bench DATASET_DIR`: run strategy sets over a dataset, score them, compare speed.

A thin command over `treemem.benchmark` (the dataset layout, the sweep grammar, resuming and
the output files are described there) and `treemem.protocols` (the benchmarks' own layouts,
prompting rules, metrics and tables: `--protocol davis|sav|lvos|mose`, detected when omitted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from treemem.benchmark import (
    BASELINE,
    BenchSettings,
    format_runs,
    make_synthetic,
    run_benchmark,
)
from treemem.commands.model_flags import add_model_flags
from treemem.evaluation import mean_curve, plot_curves
from treemem.protocols import PROTOCOLS
from treemem.types import InputError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run strategy sets over a dataset and compare J&F and speed",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        metavar="DATASET_DIR",
        help="a benchmark split in its own layout (see --protocol), or one folder per video "
        "with frames/ and gt/",
    )
    parser.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="the benchmark's protocol (default: detected from the layout)",
    )
    parser.add_argument(
        "--split", help="the split to run (DAVIS: val, test-dev; LVOS: valid, test; SA-V: val)"
    )
    parser.add_argument(
        "--strategy",
        action="append",
        metavar="NAME",
        help="a strategy set to run (repeat; default: sam2long and greedy)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep a parameter (repeat to cross); K1/K2=A1/A2,B1/B2 sweeps pairs",
    )
    add_model_flags(parser, "synthetic")
    parser.add_argument("--out", type=Path, help="output folder (resumable)")
    parser.add_argument(
        "--all-frames", action="store_true", help="also score the first and last annotated frames"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="plot each run's per-frame J&F, averaged over videos",
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="track every run on its own (default: a video's runs in one pass, sharing the "
        "image encoder; the masks are the same, the fps is the pass's)",
    )
    parser.add_argument("--ray", action="store_true", help="run videos as tasks on a local Ray")
    parser.add_argument("--ray-address", metavar="ADDR", help="join an existing Ray cluster")
    parser.add_argument("--workers", type=int, help="local Ray: number of parallel videos")
    parser.add_argument(
        "--make-synthetic",
        type=Path,
        metavar="DIR",
        help="write the synthetic benchmark suite to DIR (and stop)",
    )
    parser.add_argument("--count", type=int, default=12, help="--make-synthetic: videos")
    parser.add_argument("--seed", type=int, default=0, help="suite seed / synthetic backend seed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.make_synthetic is not None:
        paths = make_synthetic(args.make_synthetic, args.count, args.seed, args.protocol)
        layout = f" in the {args.protocol} layout" if args.protocol else ""
        print(f"wrote {len(paths)} synthetic videos{layout} to {args.make_synthetic}")
        if args.dataset is None:
            return 0
    if args.dataset is None or args.out is None:
        raise InputError("treemem bench needs DATASET_DIR and --out DIR (or --make-synthetic DIR)")
    if args.all_frames and args.protocol:
        raise InputError("--all-frames does not apply with --protocol: it says which frames count")
    settings = BenchSettings(
        backend=args.backend,
        checkpoint=None if args.checkpoint is None else str(args.checkpoint.resolve()),
        config=args.config,
        image_size=args.image_size,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        skip_first_last=not args.all_frames,
        seed=args.seed,
        protocol=args.protocol,
        split=args.split,
    )
    outcome = run_benchmark(
        args.dataset, args.out, args.strategy or ["sam2long", BASELINE], args.set, settings,
        ray=args.ray, ray_address=args.ray_address, workers=args.workers, separate=args.separate,
    )
    if outcome.protocol is not None:
        print(f"{outcome.protocol.title}, {outcome.split} split")
    print(format_runs(outcome.runs, columns=outcome.columns))
    if args.plot is not None:
        curves = {r.spec.name: mean_curve(r.videos) for r in outcome.runs if r.videos}
        videos = max((len(r.videos) for r in outcome.runs), default=0)
        plot_curves(args.plot, curves, f"per-frame J&F, mean over {videos} videos")
    if outcome.failures:
        print(
            f"treemem: {len(outcome.failures)} videos failed (rerun to retry them): "
            f"{outcome.failures[0]}",
            file=sys.stderr,
        )
        return 1
    return 0
