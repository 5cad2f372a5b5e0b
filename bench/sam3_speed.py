"""Seconds per frame of the SAM 3 backend: greedy and sam2long on one model and video.

Builds a seeded random-weight SAM 3 tracker (the reduced test shape at --image-size, or the
released shape with --released: 1008 px, 32 ViT blocks, 461 M trunk parameters) and tracks
one object of a synthetic video with each strategy set, printing seconds per frame and the
ratio to the first set named. Random weights are fine for time, not for masks.

    python bench/sam3_speed.py [--image-size 224] [--frames 20] [--released] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from treemem import Engine, Prompt, load_strategy
from treemem.backends.sam3 import (
    RELEASED,
    Sam3Backend,
    autocast_dtype,
    build_random_model,
    small_config,
)
from treemem.backends.synthetic_video import make_video


def seconds_per_frame(backend: Sam3Backend, strategy: str, prompt: Prompt) -> float:
    engine = Engine(load_strategy(strategy), backend)
    start = time.perf_counter()
    for _ in engine.run([prompt], range(backend.num_frames)):
        pass
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / backend.num_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224, help="reduced model's input")
    parser.add_argument("--released", action="store_true", help="the released shape instead")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--strategies", default="greedy,sam2long")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (autocast)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = RELEASED if args.released else small_config(args.image_size)
    model = build_random_model(config, seed=0).place(args.device)
    video = make_video(0, num_frames=args.frames, height=240, width=320)
    prompt = Prompt(1, 0, mask=video.object_mask(1, 0))
    print(f"SAM 3 tracker, {config.image_size} px, {config.vit_depth} ViT blocks x "
          f"{config.vit_width}, {args.device}, {args.dtype}, {args.threads} threads, "
          f"{args.frames} frames of 320x240")
    strategies = args.strategies.split(",")
    baseline = None
    for strategy in strategies:
        backend = Sam3Backend(model, lambda i: video.frames[i], args.frames, (240, 320),
                              autocast=autocast_dtype(args.dtype))
        seconds = seconds_per_frame(backend, strategy, prompt)
        baseline = baseline or seconds
        ratio = seconds / baseline
        print(f"  {strategy:>12}: {seconds:.3f} s/frame ({ratio:.2f} x {strategies[0]})")


if __name__ == "__main__":
    main()
