"""Regenerate docs/results.md: `python docs/_scripts/results.py` from the repository root.

Tracks the synthetic suite (`make_suite(seed=0, count=12)`, 60 frames at 96 x 128, one object)
with every strategy set in ROWS through `treemem.track`, scores it with `treemem.metrics`
(DAVIS protocol: first and last frames skipped) and times it. The tutorial's strategy is
defined by running the tutorial's first code block, so the table shows the code the docs show.
"""

from __future__ import annotations

import platform
import re
import statistics
import sys
import types
from pathlib import Path
from typing import Any

import treemem
from treemem.backends.synthetic_video import SyntheticVideo, make_suite
from treemem.metrics import VideoEvaluator, objects_of, summarize
from treemem.registry import REGISTRY

DOCS = Path(__file__).resolve().parents[1]
REPEATS = 3
ROWS: list[tuple[str, str, dict[str, Any], str]] = [
    ("greedy", "greedy", {}, "plain SAM 2 (P = 1)"),
    ("sam2long", "sam2long", {}, "SAM2Long, P = 3 (default)"),
    ("samurai", "samurai", {}, "SAMURAI, P = 1"),
    ("samurai-tree", "samurai-tree", {}, "SAMURAI in the memory tree, P = 3"),
    ("forgetful", "forgetful", {}, "the tutorial's strategy, decay = 0.9 (default)"),
    ("forgetful decay=0.98", "forgetful", {"decay": 0.98}, "the tutorial's strategy"),
]


def define_tutorial_strategy() -> None:
    text = (DOCS / "tutorial-custom-strategy.md").read_text(encoding="utf-8")
    first = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)[0]
    module = types.ModuleType("treemem_tutorial")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(first, "tutorial-custom-strategy.md", "exec", dont_inherit=True), module.__dict__)


def evaluate(
    suite: list[SyntheticVideo], strategy: str, overrides: dict[str, Any]
) -> tuple[float, float, float, float]:
    """(J&F, J, F) in percent and milliseconds per frame (median of REPEATS timings)."""
    timings = []
    for _ in range(REPEATS):
        results = [treemem.track(v, v.gt[0], strategy, overrides=overrides) for v in suite]
        frames = sum(r.num_frames - r.first_frame for r in results)
        timings.append(1000 * sum(r.seconds for r in results) / frames)
    scored = []
    for index, (video, result) in enumerate(zip(suite, results, strict=True)):
        evaluator = VideoEvaluator(f"video{index}")
        for frame in range(1, video.num_frames - 1):
            evaluator.add(str(frame), objects_of(video.gt[frame]),
                          objects_of(result.masks[frame]), video.frame_size)
        scored += evaluator.result().objects
    summary = summarize(scored)
    return 100 * summary.jf, 100 * summary.j.mean, 100 * summary.f.mean, statistics.median(timings)


def main() -> None:
    define_tutorial_strategy()
    suite = make_suite(seed=0, count=12)
    known = set(REGISTRY.names())
    lines = [
        "| strategy | J&F | J | F | ms / frame | what it is |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, strategy, overrides, what in ROWS:
        if strategy not in known:
            lines.append(f"| {label} | *not yet in treemem* | | | | {what} |")
            continue
        jf, j, f, ms = evaluate(suite, strategy, overrides)
        lines.append(f"| {label} | {jf:.1f} | {j:.1f} | {f:.1f} | {ms:.2f} | {what} |")
        print(lines[-1], file=sys.stderr)
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    template = (DOCS / "_scripts" / "results.md.in").read_text(encoding="utf-8")
    page = template.replace("{{TABLE}}", "\n".join(lines)).replace("{{MACHINE}}", machine)
    (DOCS / "results.md").write_text(page, encoding="utf-8")
    print(f"wrote {DOCS / 'results.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
