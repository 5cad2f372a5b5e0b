"""Time `treemem tree` on a 10,000-frame, P=3 search tree (the goal: under 30 s).

The tree comes from running sam2long over the scripted tracker of the viz tests
(tests/viz/story.py: an occlusion every 173 frames), so it has the shape of a real search:
clone starts, uncertain frames, pathways that branch, die and swap ranks.

    python bench/tree_render.py [--frames 10000] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "viz"))

from story import story_tree

from treemem.viz.tree_export import export_graphml, tree_graph
from treemem.viz.tree_figure import draw_tree, save_figure
from treemem.viz.tree_view import select_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--out", type=Path, help="keep the figures here (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="treemem-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    occlusions = [(f, f + 2) for f in range(50, args.frames, 173)]
    record = story_tree(args.frames, occlusions)
    print(
        f"tree: {args.frames} frames, {len(record)} rows, built in "
        f"{time.perf_counter() - start:.1f} s (not part of the render)"
    )

    print("| render | visible nodes | seconds |")
    print("| --- | --- | --- |")
    cases = [
        ("full tree -> png", {}, "tree.png"),
        ("full tree -> pdf", {}, "tree.pdf"),
        ("--collapse -> png", {"collapse": True}, "collapsed.png"),
        ("--collapse -> pdf", {"collapse": True}, "collapsed.pdf"),
        ("--frames 4000:4300 -> png", {"frames": (4000, 4300)}, "window.png"),
    ]
    for name, options, filename in cases:
        start = time.perf_counter()
        figure = draw_tree(record, **options)  # type: ignore[arg-type]
        save_figure(figure, out / filename)
        seconds = time.perf_counter() - start
        nodes = len(select_tree(record, **options))  # type: ignore[arg-type]
        print(f"| {name} | {nodes} | {seconds:.2f} |")

    start = time.perf_counter()
    graph = tree_graph(record)
    export_graphml(graph, out / "tree.graphml")
    print(f"| DiGraph + GraphML | {graph.number_of_nodes()} | {time.perf_counter() - start:.2f} |")
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
