"""A 10,000-frame synthetic stream through the push API: memory and latency.

Frames are pushed one at a time to `treemem.stream` (synthetic backend, sam2long), as a
camera would hand them over, in exact mode and with `max_lag` 0, 5 and 15. For each mode:
RSS after 1,000 and after 10,000 pushed frames (flat: the search keeps only its pathways'
memories, the undecided frames and the tree record's open tail; the growth left is reported
in bytes per frame), and how many frames late each frame came out of `push` (p50, p99, max;
`max_lag` L bounds it by L). Each mode runs in a process of
its own, so one mode's freed memory does not hide the next one's growth. The rendered video
is held in memory from the start, so it is in every RSS figure. The machine may be shared:
the RSS figures are what each process saw, and no timing is reported.

    python bench/live_stream.py [--frames 10000] [--size 32x40] [--pathways 3]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys

import numpy as np
from memory_flat import current_rss_mib, peak_rss_mib

import treemem
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video

CHECKPOINTS = (1_000, 10_000)
MODES: tuple[int | None, ...] = (None, 0, 5, 15)


def stream_once(video: SyntheticVideo, max_lag: int | None, pathways: int,
                checkpoints: tuple[int, ...]) -> tuple[dict[int, float], list[int], int]:
    """(RSS in MiB after each checkpoint's push, each frame's lag in frames, tree rows).

    The lags are tallied (lag -> frames), so this loop keeps nothing per frame either."""
    tracker = treemem.stream("sam2long", backend=SyntheticBackend(video, seed=0),
                             prompts=[treemem.Prompt(1, 0, mask=video.gt[0] == 1)],
                             overrides={"pathways": pathways}, max_lag=max_lag)
    tally: collections.Counter[int] = collections.Counter()
    rss: dict[int, float] = {}
    expected = 0

    def came_out(frame: int, index: int) -> None:
        nonlocal expected
        if frame != expected:
            raise SystemExit(f"frame {frame} came out, {expected} was next; a treemem bug")
        tally[index - frame] += 1
        expected += 1

    for index, frame in enumerate(video.frames):
        for result in tracker.push(frame):
            came_out(result.frame, index)
        if index + 1 in checkpoints:
            rss[index + 1] = current_rss_mib()
    for result in tracker.close():
        came_out(result.frame, len(video.frames) - 1)
    if expected != len(video.frames):
        raise SystemExit("a frame did not come out; this is a treemem bug")
    lags = sorted(tally.elements())
    return rss, lags, len(tracker.record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=CHECKPOINTS[-1])
    parser.add_argument("--size", default="32x40", help="HxW of the synthetic video")
    parser.add_argument("--pathways", type=int, default=3)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one mode, in a child process
    args = parser.parse_args()
    checkpoints = tuple(c for c in CHECKPOINTS if c <= args.frames)
    if args.mode is not None:
        print(one_mode(args, None if args.mode == "exact" else int(args.mode), checkpoints))
        return
    height, width = args.size.split("x")
    print(f"synthetic stream {height}x{width}, {args.frames:,} frames pushed one at a time, "
          f"sam2long P={args.pathways}, one process per mode")
    header = "mode         " + "".join(f"RSS@{c:>6,}  " for c in checkpoints)
    print(header + "growth/frame   lag p50  p99  max (frames)")
    for max_lag in MODES:
        mode = "exact" if max_lag is None else str(max_lag)
        child = [sys.executable, __file__, "--frames", str(args.frames), "--size", args.size,
                 "--pathways", str(args.pathways), "--mode", mode]
        print(subprocess.run(child, check=True, capture_output=True, text=True).stdout.rstrip())


def one_mode(args: argparse.Namespace, max_lag: int | None, checkpoints: tuple[int, ...]) -> str:
    """One table row: this process's RSS while streaming, and the lags."""
    height, width = (int(v) for v in args.size.split("x"))
    video = make_video(3, num_frames=args.frames, height=height, width=width)
    before = current_rss_mib()
    rss, lags, rows = stream_once(video, max_lag, args.pathways, checkpoints)
    name = "exact" if max_lag is None else f"max_lag {max_lag}"
    figures = "".join(f"{rss[c]:8.1f} MiB " for c in checkpoints)
    growth = ""
    if len(checkpoints) == 2:
        per_frame = (rss[checkpoints[1]] - rss[checkpoints[0]]) * 1024 * 1024 / (
            checkpoints[1] - checkpoints[0])
        growth = f"{per_frame:8,.0f} B"
    p50, p99 = np.percentile(lags, [50, 99])
    return (f"{name:<12} {figures}{growth:>12}   {p50:7.0f} {p99:4.0f} {max(lags):4d}   "
            f"(video rendered: {before:.1f} MiB; peak {peak_rss_mib():.1f} MiB; "
            f"{rows / args.frames:.1f} tree rows/frame)")


if __name__ == "__main__":
    main()
