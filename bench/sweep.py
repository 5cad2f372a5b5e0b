"""The paper's ablation grid in one pass (`treemem.pipeline.sweep`) against running it separately.

The SAM2Long ablations vary one knob at a time around the paper's setting (P=3, delta_iou=0.3,
delta_conf=2, [w_low, w_high]=[0.95, 1.05]): P in {1, 2, 3, 4}, delta_iou in {0, 0.3, 0.7, 0.9},
delta_conf in {0.5, 2, 5}, [w_low, w_high] in {[1, 1], [0.95, 1.05], [0.9, 1.1]}: 11 distinct
configurations. This script runs all of them on one video and model (random weights, seeded:
time only; `--backend synthetic` gives the synthetic tracker's J too), once separately and
once in one sweep, and prints per configuration its distinct pathways per frame, its mean J
against the video's ground truth and whether the sweep's masks equal its separate run's; then
seconds per frame of the separate runs (summed), of the sweep, and the floor:

    floor = greedy's image-encoder time + sum over configurations of (distinct pathways per
            frame x greedy's time for everything but the encoder)

i.e. one encoder pass per frame and each configuration's own pathway work. On a backend that
is not batch-invariant (SAM 2) the sweep proposes and commits per configuration, so that is
what it can reach; `--batched` forces one shared batch (identical plans across configurations
computed once, below the floor; results then within the backend's batch tolerance).

    python bench/sweep.py --config configs/sam2.1/sam2.1_hiera_l.yaml --image-size 512 --frames 24
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from sam2_overhead import Timers, instrument

from treemem import Prompt, load_strategy
from treemem.backend import Backend
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.pipeline.frames import FrameStream
from treemem.pipeline.sweep import SweepStream
from treemem.strategy import StrategySet
from treemem.types import UInt8Array

CENTER: dict[str, float] = {
    "P": 3, "delta_iou": 0.3, "delta_conf": 2.0, "w_low": 0.95, "w_high": 1.05,
}
KNOBS: dict[str, list[dict[str, float]]] = {
    "P": [{"P": p} for p in (1, 2, 3, 4)],
    "delta_iou": [{"delta_iou": v} for v in (0.0, 0.3, 0.7, 0.9)],
    "delta_conf": [{"delta_conf": v} for v in (0.5, 2.0, 5.0)],
    "[w_low, w_high]": [
        {"w_low": low, "w_high": high} for low, high in ((1, 1), (0.95, 1.05), (0.9, 1.1))
    ],
}


def progress(line: str) -> None:
    """A figure as soon as it is measured (a long run stopped early keeps what it had)."""
    print(line, file=sys.stderr, flush=True)


def grid() -> list[dict[str, float]]:
    """The distinct settings of the one-knob-at-a-time grid, in knob order."""
    out: list[dict[str, float]] = []
    for settings in KNOBS.values():
        for change in settings:
            setting = {**CENTER, **change}
            if setting not in out:
                out.append(setting)
    return out


def label(setting: dict[str, float]) -> str:
    changed = [f"{k}={v:g}" for k, v in setting.items() if v != CENTER[k]]
    return ", ".join(changed) or "paper setting"


def make_backend(args: argparse.Namespace, model: Any, video: SyntheticVideo) -> Backend:
    if model is None:
        return SyntheticBackend(video)
    from treemem.backends.sam2 import Sam2Backend

    return Sam2Backend(model, lambda i: video.frames[i], video.num_frames, video.frame_size)


def separately(
    args: argparse.Namespace, model: Any, video: SyntheticVideo, strategy: StrategySet,
    prompts: list[Prompt],
) -> tuple[float, float, list[UInt8Array]]:
    """(seconds, distinct pathways per frame, id maps) of one configuration alone."""
    backend = make_backend(args, model, video)
    stream = FrameStream(backend, strategy, prompts)
    start = time.perf_counter()
    ids = [result.ids() for result in stream.frames()]
    seconds = time.perf_counter() - start
    distinct = float(np.mean(backend.distinct_rows)) if hasattr(backend, "distinct_rows") else 1.0
    return seconds, distinct, ids


def in_one_pass(
    args: argparse.Namespace, model: Any, video: SyntheticVideo, strategies: list[StrategySet],
    prompts: list[Prompt],
) -> tuple[float, list[list[UInt8Array]]]:
    backend = make_backend(args, model, video)
    sweep = SweepStream(backend, strategies, prompts, batched=True if args.batched else None)
    ids: list[list[UInt8Array]] = [[] for _ in strategies]
    start = time.perf_counter()
    for index, result in sweep.frames():
        ids[index].append(result.ids())
    return time.perf_counter() - start, ids


def mean_j(ids: list[UInt8Array], video: SyntheticVideo) -> float:
    scores = []
    for frame in range(1, len(ids)):
        truth, found = video.gt[frame] == 1, ids[frame] == 1
        union = np.logical_or(truth, found).sum()
        scores.append(1.0 if union == 0 else np.logical_and(truth, found).sum() / union)
    return float(np.mean(scores))


def greedy_split(
    args: argparse.Namespace, model: Any, video: SyntheticVideo, prompts: list[Prompt]
) -> tuple[float, float]:
    """(greedy's seconds per frame, its image-encoder seconds per frame)."""
    greedy = load_strategy("greedy")
    seconds, _, _ = separately(args, model, video, greedy, prompts)
    if model is None:
        return seconds / video.num_frames, 0.0
    import torch

    timers = Timers(torch.device(args.device))
    restore = instrument(model, timers)
    instrumented, _, _ = separately(args, model, video, greedy, prompts)
    restore()
    scale = seconds / instrumented  # the instrumented pass synchronises, so it runs slower
    return seconds / video.num_frames, scale * timers.seconds["image encoder"] / video.num_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sam2", "synthetic"), default="sam2")
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_l.yaml")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batched", action="store_true", help="one shared batch on SAM 2 too")
    args = parser.parse_args()
    video = make_video(seed=3, num_frames=args.frames, height=360, width=480)
    prompts = [Prompt(1, 0, mask=video.gt[0] == 1)]
    model = None
    if args.backend == "sam2":
        import torch

        from treemem.backends.sam2 import build_random_model

        torch.set_num_threads(args.threads)
        model = build_random_model(args.config, seed=0, image_size=args.image_size)
        model = model.to(torch.device(args.device))
        short = make_video(seed=3, num_frames=8, height=360, width=480)
        separately(args, model, short, load_strategy("greedy"), prompts)  # warm-up
    settings = grid()
    strategies = [load_strategy("sam2long", setting) for setting in settings]
    greedy_spf, encoder_spf = greedy_split(args, model, video, prompts)
    rest = greedy_spf - encoder_spf
    progress(f"greedy {greedy_spf:.4f} s/frame, image encoder {encoder_spf:.4f}")
    alone = []
    for setting, strategy in zip(settings, strategies, strict=True):
        alone.append(separately(args, model, video, strategy, prompts))
        seconds, distinct, _ = alone[-1]
        progress(f"{label(setting)} alone: {seconds / args.frames:.4f} s/frame, "
                 f"{distinct:.2f} distinct pathways/frame")
    sweep_seconds, sweep_ids = in_one_pass(args, model, video, strategies, prompts)
    progress(f"one pass: {sweep_seconds / args.frames:.4f} s/frame")
    what = args.backend if model is None else f"{args.config} at {args.image_size} px"
    print(f"{what}, {args.frames} frames, {args.threads} threads, device {args.device}; "
          f"{len(settings)} configurations")
    print("\n| configuration | distinct pathways/frame | J | sweep masks = separate |")
    print("| --- | --- | --- | --- |")
    for setting, (_, distinct, ids), swept in zip(settings, alone, sweep_ids, strict=True):
        same = all(np.array_equal(a, b) for a, b in zip(ids, swept, strict=True))
        print(f"| {label(setting)} | {distinct:.2f} | {mean_j(ids, video):.3f} | {same} |")
    separate_spf = sum(seconds for seconds, _, _ in alone) / args.frames
    sweep_spf = sweep_seconds / args.frames
    floor = encoder_spf + sum(distinct for _, distinct, _ in alone) * rest
    print(f"\ngreedy {greedy_spf:.4f} s/frame (image encoder {encoder_spf:.4f} s)")
    print("| run | s/frame | x floor |\n| --- | --- | --- |")
    print(f"| separately (sum) | {separate_spf:.4f} | {separate_spf / floor:.2f} |")
    print(f"| one pass{' (--batched)' if args.batched else ''} | {sweep_spf:.4f} | "
          f"{sweep_spf / floor:.2f} |")
    print(f"| floor | {floor:.4f} | 1.00 |")
    print(f"one pass is {separate_spf / sweep_spf:.2f}x faster than separately")


if __name__ == "__main__":
    main()
