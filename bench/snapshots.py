"""What snapshots cost: their size and the time to take one, and a run with and without them.

The whole `treemem run` pipeline runs into a temporary folder, once with snapshots every
`--every` frames and once without; each snapshot's size (and how much of it is the backend's
memories) and the time to take it (tree flush and fsync, engine and backend export, pickle,
atomic write with fsync) come from the snapshot writer's log records. Wall times on a shared
machine are noisy: compare the per-snapshot time with the per-frame time, not the two totals.

    python bench/snapshots.py                                  # synthetic, 1,000 frames
    python bench/snapshots.py --backend sam2 --frames 10 --every 3 --image-size 64

`--kill-at F` is issue 14's kill test at a size the test suite cannot afford (SAM 2 with
random weights takes seconds per frame on a CPU): `treemem run` with snapshots is killed with
SIGKILL when it asks for frame F (tests/kill_driver.py), resumed with `--resume`, and its
files are compared byte for byte with the uninterrupted run's; it prints the snapshot the
resume went on from and the frames searched twice.

    python bench/snapshots.py --backend sam2 --frames 1000 --every 100 --kill-at 900
"""

from __future__ import annotations

import argparse
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from treemem.backends.synthetic_video import make_video
from treemem.cli import main as treemem_main
from treemem.pipeline.inputs import ModelSpec, as_prompts, open_backend
from treemem.pipeline.runner import choose_strategy, run_to_folder
from treemem.pipeline.sinks import run_files
from treemem.pipeline.snapshots import read_snapshot
from treemem.resume import SNAPSHOT

KILL_DRIVER = Path(__file__).resolve().parent.parent / "tests" / "kill_driver.py"
THREADS = 2
"""torch threads for SAM 2, in this process and in the killed one (the same masks)."""


class Records(logging.Handler):
    """Keeps the snapshot writer's records: (frame, bytes, memory bytes, milliseconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[tuple[int, int, int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("snapshot after frame"):
            assert isinstance(record.args, tuple)
            frame, size, memories, ms = record.args
            self.taken.append((int(frame), int(size), int(memories), float(ms)))


def run(args: argparse.Namespace, root: Path, every: int | None) -> dict[str, Any]:
    video = root / "video"
    spec = ModelSpec(args.checkpoint, device="cpu", image_size=args.image_size)
    backend = "synthetic" if args.backend == "synthetic" else "sam2"
    source = video if backend == "synthetic" else video / "frames"
    with open_backend(source, backend, spec) as opened:
        prompts = as_prompts(video / "gt" / "00000.png", opened.frame_size, opened.num_frames)
        out = root / f"run-{every}"
        return run_to_folder(opened, prompts, choose_strategy(args.strategy), out,
                             progress=False, snapshot_every=every, overwrite=True)


def cli_args(args: argparse.Namespace, root: Path, out: Path) -> list[str]:
    """`treemem run` arguments of the run `run` makes, with snapshots every `--every`."""
    video = root / "video"
    found = ["run", str(video), "--backend", "synthetic", "--mask", str(video / "gt" / "00000.png"),
             "--strategy", args.strategy, "--out", str(out), "--no-progress",
             "--snapshot-every", str(args.every)]
    if args.backend == "sam2":
        found[1:4] = [str(video / "frames"), "--backend", "sam2", "--checkpoint",
                      str(args.checkpoint), "--image-size", str(args.image_size), "--device", "cpu"]
    return found



def kill_and_resume(args: argparse.Namespace, root: Path) -> None:
    """The uninterrupted run, a run SIGKILLed at frame `--kill-at`, its resume; the verdict."""
    started = time.perf_counter()
    reference = root / "reference"
    if treemem_main(cli_args(args, root, reference)) != 0:
        raise SystemExit("the uninterrupted run failed")
    whole = time.perf_counter() - started
    out = root / "killed"
    command = [sys.executable, str(KILL_DRIVER), str(args.kill_at), "0", str(THREADS), "--",
               *cli_args(args, root, out)]
    killed = subprocess.run(command, capture_output=True, text=True, check=False)
    if killed.returncode != -signal.SIGKILL:
        raise SystemExit(f"the run was not killed (exit {killed.returncode}): {killed.stderr}")
    snapshot = read_snapshot(out / SNAPSHOT)
    after_kill = time.perf_counter()
    if treemem_main([*cli_args(args, root, out), "--resume"]) != 0:
        raise SystemExit("the resumed run failed")
    resumed = time.perf_counter() - after_kill
    same = run_files(out) == run_files(reference)
    went_on = "the first frame (no snapshot)" if snapshot is None else (
        f"the snapshot after frame {snapshot.frame}")
    again = args.kill_at - (0 if snapshot is None else snapshot.frame + 1)
    print(f"{args.backend}, {args.strategy}, {args.frames} frames of 48x64, {args.objects} "
          f"object(s), a snapshot every {args.every} frames, killed (SIGKILL) at frame "
          f"{args.kill_at}")
    print(f"  resumed from {went_on}: {again} frames searched twice; files byte-identical to "
          f"the uninterrupted run's: {'yes' if same else 'NO'}")
    print(f"  wall time: uninterrupted {whole:.0f} s, resume {resumed:.0f} s (shared machine: "
          "rough)")
    if not same:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("synthetic", "sam2"), default="synthetic")
    parser.add_argument("--strategy", default="sam2long")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64, help="SAM 2 input size")
    parser.add_argument("--checkpoint", type=Path, help="SAM 2 checkpoint (default: random "
                        "weights, SAM 2.1 tiny)")
    parser.add_argument("--kill-at", type=int, metavar="F", help="kill the run with SIGKILL "
                        "at frame F, resume it and compare (see the module docstring)")
    args = parser.parse_args()
    records = Records()
    logger = logging.getLogger("treemem.snapshots")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_video(11, num_frames=args.frames, height=48, width=64,
                   num_objects=args.objects).save(root / "video")
        if args.backend == "sam2" and args.checkpoint is None:
            import torch

            from treemem.backends.sam2 import build_random_model

            torch.set_num_threads(THREADS)
            args.checkpoint = root / "sam2.1_hiera_tiny_random.pt"
            model = build_random_model(image_size=args.image_size)
            torch.save({"model": model.state_dict()}, args.checkpoint)
        if args.kill_at is not None:
            kill_and_resume(args, root)
            return
        plain = run(args, root, None)
        snapped = run(args, root, args.every)
    taken = records.taken
    print(f"{args.backend}, {args.strategy}, {args.frames} frames of 48x64, {args.objects} "
          f"object(s), a snapshot every {args.every} frames: {len(taken)} snapshots")
    if taken:
        sizes = [t[1] for t in taken]
        memories = [t[2] for t in taken]
        times = [t[3] for t in taken]
        print(f"  size: mean {statistics.mean(sizes) / 1024:.1f} KiB, max {max(sizes) / 1024:.1f}"
              f" KiB (first {sizes[0] / 1024:.1f}, last {sizes[-1] / 1024:.1f}); backend "
              f"memories mean {statistics.mean(memories) / 1024:.1f} KiB")
        print(f"  time per snapshot: median {statistics.median(times):.1f} ms, max "
              f"{max(times):.1f} ms")
    per_frame = 1000 * plain["seconds"] / args.frames
    print(f"  run without snapshots: {plain['seconds']:.2f} s ({per_frame:.2f} ms/frame); with: "
          f"{snapped['seconds']:.2f} s")
    if taken:
        share = sum(times) / 1000 / snapped["seconds"]
        print(f"  snapshots took {100 * share:.1f}% of the run with them "
              f"(one costs about {statistics.median(times) / per_frame:.2f} frames' time)")


if __name__ == "__main__":
    main()
