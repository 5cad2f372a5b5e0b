"""`treemem demo`: the whole pipeline on a generated synthetic video, no download, no GPU.

Generates the bundled synthetic video from a fixed seed, saves it, tracks it with `sam2long`
and with `greedy` on the synthetic backend exactly as `treemem run --backend synthetic`
would, and prints each run's mean J (region IoU) against the ground truth.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from treemem.io.masks import read_mask
from treemem.pipeline.inputs import as_prompts, open_backend
from treemem.pipeline.runner import choose_strategy, run_to_folder
from treemem.pipeline.sinks import clear_run, output_errors, write_report
from treemem.types import InputError

DEMO_VIDEO = {"seed": 0, "num_frames": 60, "height": 96, "width": 128, "num_objects": 1}
STRATEGIES = ("sam2long", "greedy")
DEMO_ENTRIES = frozenset({"video", "demo.json", *STRATEGIES})


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run sam2long and greedy on a bundled synthetic video",
        description="Generate a synthetic video with ground truth (fixed seed), track it with "
        "sam2long and greedy on the synthetic backend, and print mean J for each.",
    )
    parser.add_argument("--out", type=Path, default=Path("treemem-demo"), metavar="DIR",
                        help="output folder (default ./treemem-demo; a previous demo there is "
                        "replaced)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into --out even if it holds something else")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    check_demo_output(out, overwrite=args.overwrite)
    synthetic_video = importlib.import_module("treemem.backends.synthetic_video")
    with output_errors(out / "video"):
        video_folder = synthetic_video.make_video(**DEMO_VIDEO).save(out / "video")
    mask_path = video_folder / "gt" / "00000.png"
    print(
        "synthetic video: {num_frames} frames, {height}x{width}, {num_objects} object(s), "
        "seed {seed} -> {folder}".format(folder=video_folder, **DEMO_VIDEO)
    )
    results: dict[str, dict[str, Any]] = {}
    for name in STRATEGIES:
        run_folder = out / name
        with open_backend(video_folder, "synthetic") as opened:
            prompts = as_prompts(mask_path, opened.frame_size, opened.num_frames)
            report = run_to_folder(
                opened,
                prompts,
                choose_strategy(name),
                run_folder,
                overwrite=True,
                progress=False if args.no_progress else None,
            )
        loaded = synthetic_video.SyntheticVideo.load(video_folder)
        predictions = read_run_masks(run_folder / "masks", loaded.num_frames)
        mean_j = float(synthetic_video.mean_j(predictions, loaded))
        results[name] = {"mean_j": mean_j, "frames": report["frames"], "seconds": report["seconds"]}
    print(f"{'strategy':<10} {'mean J':>7} {'frames':>7} {'seconds':>8}")
    for name, result in results.items():
        mean_j, frames, seconds = result["mean_j"], result["frames"], result["seconds"]
        print(f"{name:<10} {mean_j:>7.3f} {frames:>7d} {seconds:>8.2f}")
    print("mean J: region IoU vs ground truth over objects and frames 1.. (frame 0 is the prompt)")
    print(f"runs (masks/, tree.jsonl, run.json) in {out / STRATEGIES[0]} and {out / STRATEGIES[1]}")
    print(
        f"same run by hand: treemem run {video_folder} --backend synthetic --mask {mask_path} "
        f"--strategy sam2long --out {out / 'sam2long'} --overwrite"
    )
    write_report(out / "demo.json", {"video": DEMO_VIDEO, "results": results})
    return 0


def check_demo_output(out: Path, *, overwrite: bool) -> None:
    """Clear a previous demo in `out`; refuse a folder holding anything else unless
    `overwrite` (even then only the demo's own files are removed)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    if not out.is_dir():
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES)
    if others and not overwrite:
        raise InputError(
            f"{out} holds files that are not from a demo ({', '.join(others[:3])}); pass "
            "--overwrite or choose another --out"
        )
    (out / "demo.json").unlink(missing_ok=True)
    for name in STRATEGIES:
        if (out / name).is_dir():
            clear_run(out / name)
    clear_synthetic_video(out / "video")


def read_run_masks(folder: Path, num_frames: int) -> np.ndarray:
    """(T, H, W) uint8 ids from a run's masks/; a frame without a PNG is an error."""
    missing = [t for t in range(num_frames) if not (folder / f"{t:05d}.png").is_file()]
    if missing:
        raise InputError(f"{folder} lacks masks for frames {missing[:5]}; rerun the demo")
    return np.stack([read_mask(folder / f"{t:05d}.png") for t in range(num_frames)])


def clear_synthetic_video(folder: Path) -> None:
    """Remove a saved synthetic video's files (only those `save` writes), so a new one with
    fewer frames leaves no stale frame behind."""
    if not (folder / "video.json").is_file():
        return
    (folder / "video.json").unlink()
    (folder / "layers.npz").unlink(missing_ok=True)
    for sub in ("frames", "gt"):
        if (folder / sub).is_dir():
            for file in (folder / sub).glob("*.png"):
                file.unlink()
