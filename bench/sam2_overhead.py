"""What the search costs on the SAM 2 backend, against plain SAM 2 (greedy).

Prints seconds per frame of greedy and of sam2long with P = 2, 3, 4 on the same video and
model, the ratio to greedy, greedy's frame time split by component, the distinct pathways
computed per frame, and the compute floor = greedy's encoder time + distinct pathways x
greedy's time for the rest. Random weights (seeded) are fine for time. With --long it also
prints peak memory after 100 and 1,000 frames. With --compile both sides run compiled: treemem
through `Sam2Backend(compile=True)`, sam2's predictor with the same compiled components plus its
own memory attention compiled as `SAM2VideoPredictorVOS` does (the warm-up pass pays the
compiler; the timed passes do not).

    python bench/sam2_overhead.py --config configs/sam2.1/sam2.1_hiera_t.yaml --image-size 512
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

import treemem.backends.sam2.backend as backend_module
from treemem import Engine, Prompt, load_strategy
from treemem.backends.sam2 import Sam2Backend, autocast_dtype, build_random_model
from treemem.backends.sam2.compiled import compile_mode
from treemem.backends.synthetic_video import make_video


class Timers:
    """Wall time per component, synchronised on CUDA so kernels are counted where they run."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cuda = device.type == "cuda"

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[name] += time.perf_counter() - start

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.part(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def run(
    model: Any,
    frames: np.ndarray,
    mask: np.ndarray,
    strategy: str,
    overrides: dict[str, Any],
    autocast: torch.dtype | None = None,
    compile: bool = False,
) -> tuple[float, float]:
    """(seconds per tracked frame, mean distinct pathways per frame)."""
    backend = Sam2Backend(model, lambda i: frames[i], len(frames), mask.shape, autocast=autocast,
                          compile=compile)
    engine = Engine(load_strategy(strategy, overrides), backend)
    cuda = next(model.parameters()).is_cuda
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in engine.run([Prompt(1, 0, mask=mask)], range(backend.num_frames)):
        pass
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds / len(frames), float(np.mean(backend.distinct_rows))


def sam2_predictor_seconds(
    model: Any, frames: np.ndarray, mask: np.ndarray, autocast: torch.dtype | None = None
) -> float:
    """sam2's own SAM2VideoPredictor on the same frames (JPEG folder), seconds per frame of
    propagation (frame loading excluded); under `torch.autocast` as sam2's tools run it when
    `autocast` is given."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(Path(folder) / f"{index:05d}.jpg", quality=95)
        device = next(model.parameters()).device
        precision = (
            torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
        )
        with precision:
            state = model.init_state(video_path=folder)
            model.add_new_mask(state, 0, 1, mask)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in model.propagate_in_video(state):
                pass
            if device.type == "cuda":
                torch.cuda.synchronize()
        return (time.perf_counter() - start) / len(frames)


def instrument(model: Any, timers: Timers) -> Callable[[], None]:
    originals = (
        model.forward_image,
        model.sam_mask_decoder.forward,
        model._encode_new_memory,
        backend_module.weighted_memory_attention,
    )
    timers.wrap(model, "forward_image", "image encoder")
    timers.wrap(model.sam_mask_decoder, "forward", "mask decoder")
    timers.wrap(model, "_encode_new_memory", "memory encoder")
    timers.wrap(backend_module, "weighted_memory_attention", "memory attention")

    def restore() -> None:
        model.forward_image, model.sam_mask_decoder.forward, model._encode_new_memory = originals[
            :3
        ]
        backend_module.weighted_memory_attention = originals[3]

    return restore


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="precision: fp32 or autocast to bf16 / fp16 (the backend's `autocast` option, "
        "as `treemem run --dtype`; sam2's predictor under the same autocast)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model on both sides"
    )
    parser.add_argument(
        "--long", action="store_true", help="also peak memory at 100 / 1,000 frames"
    )
    parser.add_argument(
        "--compare-sam2", action="store_true", help="also time sam2's own predictor (greedy)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_random_model(args.config, seed=0, image_size=args.image_size).to(device)
    video = make_video(seed=3, num_frames=args.frames, height=360, width=480)
    frames, mask = video.frames, video.gt[0] == 1
    autocast = autocast_dtype(args.dtype)
    if args.compile:
        model.memory_attention.forward = torch.compile(
            model.memory_attention.forward, mode=compile_mode(device), dynamic=True
        )
    options = {"autocast": autocast, "compile": args.compile}
    run(model, frames[:4], mask, "greedy", {}, **options)  # warm-up
    if args.compile:
        run(model, frames[:4], mask, "sam2long", {"pathways": 4}, **options)  # batch shapes
    greedy_spf, _ = run(model, frames, mask, "greedy", {}, **options)
    # The split comes from a second, instrumented pass: its synchronisations slow it down,
    # so the ratios below use the plain pass.
    timers = Timers(device)
    restore = instrument(model, timers)
    instrumented_spf, _ = run(model, frames, mask, "greedy", {}, **options)
    restore()
    scale = greedy_spf / instrumented_spf
    split = {name: scale * s / len(frames) for name, s in timers.seconds.items()}
    rest = sum(v for k, v in split.items() if k != "image encoder")
    print(
        f"device {device}, config {args.config}, image size {args.image_size}, "
        f"{args.frames} frames, dtype {args.dtype}, compile {args.compile}"
    )
    print(
        f"greedy: {greedy_spf:.4f} s/frame; split per frame: "
        + ", ".join(
            f"{k} {v:.4f} s ({100 * v / greedy_spf:.0f}%)" for k, v in sorted(split.items())
        )
    )
    print("| strategy | s/frame | x greedy | distinct pathways/frame | floor x greedy | x floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| greedy | {greedy_spf:.4f} | 1.00 | 1.00 | 1.00 | - |")
    if args.compare_sam2:
        if args.compile:
            sam2_predictor_seconds(model, frames[:4], mask, autocast)  # warm-up
        reference = sam2_predictor_seconds(model, frames, mask, autocast)
        print(
            f"| sam2 SAM2VideoPredictor | {reference:.4f} | {reference / greedy_spf:.2f} "
            "| - | - | - |"
        )
    for pathways in (2, 3, 4):
        spf, distinct = run(model, frames, mask, "sam2long", {"pathways": pathways}, **options)
        floor = split.get("image encoder", 0.0) + distinct * rest
        print(
            f"| sam2long P={pathways} | {spf:.4f} | {spf / greedy_spf:.2f} | {distinct:.2f} | "
            f"{floor / greedy_spf:.2f} | {spf / floor:.2f} |"
        )
    if args.long:
        for count in (100, 1000):
            long_video = make_video(seed=4, num_frames=count, height=120, width=160)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            run(model, long_video.frames, long_video.gt[0] == 1, "sam2long", {}, **options)
            print(f"peak memory after {count} frames: {peak_memory_mb(device):.0f} MiB")


if __name__ == "__main__":
    main()
