"""Engine bookkeeping time per frame per pathway on the synthetic backend.

Bookkeeping is everything the search does outside backend calls: recall and weighting of
memory plans, scoring, diversity and pruning, the tree record, lineage and release. It is
measured as the run's wall time minus the time spent inside the backend, divided by the
number of pathway rows proposed (frames x pathways). Goal: under 50 microseconds.
Times are this process's CPU time (`time.process_time`), so other load on the machine
does not count; the best of `--repeat` runs is reported.

    python bench/engine.py [--frames 300] [--videos 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from treemem import Engine, Prompt, load_strategy
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video


class TimedBackend:
    """Forwards every Backend call and adds up the seconds spent inside them."""

    def __init__(self, inner: SyntheticBackend) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.rows = 0

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.inner.frame_size

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        try:
            return method(*args)
        finally:
            self.seconds += time.process_time() - start

    def encode(self, frame: int) -> object:
        return self._timed(self.inner.encode, frame)

    def prompt(self, features: object, prompt: Prompt, node: int, options: Any) -> Any:
        return self._timed(self.inner.prompt, features, prompt, node, options)

    def propose(self, features: object, queries: Any, options: Any) -> Any:
        self.rows += len(queries)
        return self._timed(self.inner.propose, features, queries, options)

    def commit(self, features: object, proposals: Any, commits: Any) -> None:
        self._timed(self.inner.commit, features, proposals, commits)

    def mask_logits(self, node: int) -> Any:
        return self._timed(self.inner.mask_logits, node)

    def release(self, nodes: Any) -> None:
        self._timed(self.inner.release, list(nodes))


def bookkeeping(video: SyntheticVideo, name: str, overrides: dict[str, str]) -> tuple[float, int]:
    """(seconds outside the backend, pathway rows) for one run that reads every mask."""
    backend = TimedBackend(SyntheticBackend(video))
    engine = Engine(load_strategy(name, overrides), backend)
    objects = range(1, video.num_objects + 1)
    prompts = [Prompt(obj, 0, mask=video.object_mask(obj, 0)) for obj in objects]
    start = time.process_time()
    for decision in engine.run(prompts, range(backend.num_frames)):
        backend.mask_logits(decision.node)
    total = time.process_time() - start
    return total - backend.seconds, backend.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    videos = [
        make_video(seed, num_frames=args.frames, num_objects=args.objects)
        for seed in range(args.videos)
    ]
    configs = [
        ("greedy", {}),
        ("sam2long", {"P": "1"}),
        ("sam2long", {}),
        ("sam2long", {"P": "8"}),
    ]
    print(
        f"{args.videos} synthetic videos x {args.frames} frames, {args.objects} object(s); "
        f"best of {args.repeat}"
    )
    print("| strategy | pathways | rows | bookkeeping per frame per pathway |")
    print("| --- | --- | --- | --- |")
    for name, overrides in configs:
        best = float("inf")
        rows = 0
        for _ in range(args.repeat):
            seconds, rows = 0.0, 0
            for video in videos:
                spent, counted = bookkeeping(video, name, overrides)
                seconds += spent
                rows += counted
            best = min(best, seconds / rows)
        pathways = overrides.get("P", "1" if name == "greedy" else "3")
        print(f"| {name} | {pathways} | {rows} | {best * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
