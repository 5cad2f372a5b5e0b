"""Peak RSS of a long synthetic `treemem run`: after 1,000 and after 10,000 frames.

The whole pipeline of `treemem run` runs (engine, lineage, synthetic backend, palette PNGs
and tree.jsonl written to a temporary folder). The backend's and the engine's live state is
bounded by the pathways and the memory window, and the tree record keeps only its open tail
in memory (every row is in tree.jsonl), so RSS should stay flat; any growth is reported here
in bytes per frame. The rendered video itself is held in memory
from the start, so it is in both numbers.

    python bench/memory_flat.py [--frames 10000] [--size 32x40] [--pathways 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from treemem import Prompt
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import make_video
from treemem.pipeline.inputs import open_backend
from treemem.pipeline.runner import choose_strategy, run_to_folder

CHECKPOINTS = (1_000, 10_000)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc; peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return peak_rss_mib()
    return pages * resource.getpagesize() / (1024 * 1024)


class Sampled:
    """Forwards the backend; records RSS when the engine reaches the checkpoint frames."""

    def __init__(self, inner: SyntheticBackend, at: tuple[int, ...]) -> None:
        self.inner = inner
        self.at = set(at)
        self.samples: dict[int, tuple[float, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, frame: int) -> object:
        if frame in self.at:  # frame f is encoded after frames 0..f-1 were tracked
            self.samples[frame] = (peak_rss_mib(), current_rss_mib())
        return self.inner.encode(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--size", default="32x40", help="HxW of the synthetic video")
    parser.add_argument("--pathways", type=int, default=3)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    video = make_video(3, num_frames=args.frames + 1, height=height, width=width)
    checkpoints = tuple(c for c in CHECKPOINTS if c <= args.frames)
    backend = Sampled(SyntheticBackend(video, seed=0), checkpoints)
    prompts = [Prompt(1, 0, mask=video.gt[0] == 1)]
    choice = choose_strategy("sam2long", {"pathways": args.pathways})
    with tempfile.TemporaryDirectory() as folder, open_backend(None, backend) as opened:
        report = run_to_folder(opened, prompts, choice, Path(folder) / "run", progress=False)
    end_peak, end_now = peak_rss_mib(), current_rss_mib()
    print(f"synthetic {height}x{width}, {args.frames + 1} frames, sam2long P={args.pathways}, "
          f"{report['tree_rows']} tree rows, {report['fps']:.0f} frames/s")
    for frame in checkpoints:
        peak, now = backend.samples[frame]
        print(f"after {frame:>6,} frames: peak RSS {peak:7.1f} MiB   current RSS {now:7.1f} MiB")
    print(f"after {args.frames + 1:>6,} frames: peak RSS {end_peak:7.1f} MiB   current RSS "
          f"{end_now:7.1f} MiB   (run finished)")
    if len(checkpoints) == 2:
        first, last = (backend.samples[c][0] for c in checkpoints)
        per_frame = (last - first) * 1024 * 1024 / (checkpoints[1] - checkpoints[0])
        rows = report["tree_rows"] / (args.frames + 1)
        print(f"growth 1k -> 10k: {last - first:+.1f} MiB = {per_frame:,.0f} bytes/frame "
              f"({rows:.1f} tree rows/frame)")


if __name__ == "__main__":
    main()
