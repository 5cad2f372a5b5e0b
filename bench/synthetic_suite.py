"""Mean J per strategy on the seeded synthetic suite, and sam2long's online decision lag.

    python bench/synthetic_suite.py [--seed 0] [--count 12] [--frames 60]

J is region IoU against the GT (1 when both masks are empty), averaged over every frame but
the prompt frame, then over videos. The lag of a frame is the frame at which the engine
decided it (exact online output: all surviving pathways agree there) minus its index; frames
still open at the end are decided at the last frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import treemem
from treemem import load_strategy
from treemem.backends.synthetic_video import make_suite, mean_j

CONFIGS: list[tuple[str, str, dict[str, str]]] = [
    ("greedy", "greedy", {}),
    ("sam2long (P=3, default)", "sam2long", {}),
    ("sam2long P=1", "sam2long", {"P": "1"}),
    ("sam2long P=2", "sam2long", {"P": "2"}),
    ("sam2long P=4", "sam2long", {"P": "4"}),
    ("dam4sam", "dam4sam", {}),
    ("dam4sam-tree (P=3)", "dam4sam-tree", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--backend-seed", type=int, default=0)
    args = parser.parse_args()
    suite = make_suite(args.seed, args.count, num_frames=args.frames)
    print(
        f"synthetic suite: seed {args.seed}, {args.count} videos x {args.frames} frames, "
        f"backend seed {args.backend_seed}\n"
    )
    print("| strategy | mean J | min J | max J | wins vs greedy | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    greedy_scores: list[float] = []
    lags: list[int] = []
    for label, name, overrides in CONFIGS:
        strategy = load_strategy(name, overrides)
        start = time.perf_counter()
        scores = []
        for video in suite:
            prompts = video.first_frame_prompts()
            result = treemem.track(video, prompts, strategy, seed=args.backend_seed)
            scores.append(mean_j(result.masks, video))
            if label.startswith("sam2long (P=3"):
                lags.extend(result.lags)
        seconds = time.perf_counter() - start
        if name == "greedy" and not overrides:
            greedy_scores = scores
        wins = sum(s > g for s, g in zip(scores, greedy_scores, strict=True))
        print(
            f"| {label} | {np.mean(scores):.3f} | {np.min(scores):.3f} | {np.max(scores):.3f} "
            f"| {wins}/{len(scores)} | {seconds:.1f} |"
        )
    print("\nsam2long (P=3) exact online output, decision lag in frames:\n")
    lag = np.array(lags)
    print("| frames | p50 | p90 | p95 | p99 | max | decided at once (lag 0) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    p50, p90, p95, p99 = np.percentile(lag, [50, 90, 95, 99])
    print(
        f"| {lag.size} | {p50:.0f} | {p90:.0f} | {p95:.0f} | {p99:.0f} | {lag.max()} "
        f"| {np.mean(lag == 0):.0%} |"
    )


if __name__ == "__main__":
    main()
