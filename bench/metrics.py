"""J&F speed on 1080p masks, per frame: `python bench/metrics.py [--repeats N]`.

Scenarios: one large object (about a quarter of the frame) predicted slightly off; one small
object; an empty prediction; five objects per frame (the cost of a typical multi-object
frame). Times are medians over the repeats, in milliseconds per frame, for J alone, F alone
and both (what `treemem eval` computes per object and frame).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from treemem.metrics import boundary_accuracy, boundary_tolerance, region_similarity

HEIGHT, WIDTH = 1080, 1920


def blob(cy: float, cx: float, ry: float, rx: float, seed: int) -> np.ndarray:
    """An ellipse with a wobbly outline (a more realistic boundary than a clean ellipse)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
    angle = np.arctan2(yy - cy, xx - cx)
    phases = rng.uniform(0, 2 * np.pi, 4)
    wobble = 1 + 0.08 * sum(np.sin((k + 2) * angle + p) for k, p in enumerate(phases))
    return np.asarray(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < wobble**2)


def median_ms(work: Callable[[], object], repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    large_gt, large_pred = blob(540, 900, 300, 500, 0), blob(552, 915, 296, 490, 1)
    small_gt, small_pred = blob(200, 300, 30, 45, 2), blob(204, 306, 29, 44, 3)
    empty = np.zeros((HEIGHT, WIDTH), bool)
    many = [
        (
            blob(180 + 170 * i, 250 + 330 * i, 90, 140, 10 + i),
            blob(186 + 170 * i, 258 + 330 * i, 88, 138, 20 + i),
        )
        for i in range(5)
    ]

    scenarios: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "large object (25% of frame)": [(large_gt, large_pred)],
        "small object (0.4% of frame)": [(small_gt, small_pred)],
        "empty prediction": [(large_gt, empty)],
        "5 objects": many,
    }
    radius = boundary_tolerance((HEIGHT, WIDTH))
    print(
        f"J&F per frame on {WIDTH}x{HEIGHT} masks (boundary tolerance {radius} px), "
        f"median of {args.repeats}"
    )
    print(f"{'scenario':<30} {'J ms':>8} {'F ms':>8} {'J&F ms':>8}   J      F")
    for name, pairs in scenarios.items():

        def j_only(pairs: list[tuple[np.ndarray, np.ndarray]] = pairs) -> object:
            return [region_similarity(g, p) for g, p in pairs]

        def f_only(pairs: list[tuple[np.ndarray, np.ndarray]] = pairs) -> object:
            return [boundary_accuracy(g, p) for g, p in pairs]

        def both(pairs: list[tuple[np.ndarray, np.ndarray]] = pairs) -> object:
            return [(region_similarity(g, p), boundary_accuracy(g, p)) for g, p in pairs]

        j_ms, f_ms, jf_ms = (median_ms(w, args.repeats) for w in (j_only, f_only, both))
        j = float(np.mean([region_similarity(g, p) for g, p in pairs]))
        f = float(np.mean([boundary_accuracy(g, p) for g, p in pairs]))
        print(f"{name:<30} {j_ms:8.2f} {f_ms:8.2f} {jf_ms:8.2f}   {j:.3f}  {f:.3f}")


if __name__ == "__main__":
    main()
