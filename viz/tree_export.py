"""One object's pathway tree as a networkx DiGraph, and its GraphML / JSON files.

The graph is built from a `TreeView` (`view_graph`), so the window and collapsing of
`select_tree` apply; `tree_graph` selects and builds in one call.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from treemem.tree import TreeRecord
from treemem.viz.tree_view import TreeView, select_tree

if TYPE_CHECKING:
    import networkx as nx


def tree_graph(
    record: TreeRecord,
    obj: int | None = None,
    frames: tuple[int, int] | None = None,
    collapse: bool = False,
) -> nx.DiGraph:
    """Object `obj`'s tree (window, collapsing as in `select_tree`) as a networkx DiGraph.

    Nodes are TreeRecord row ids with attributes frame, slot, parent, candidate, score, iou,
    occlusion, kept, best, prompt, rule (the record's survivor rule of the node's frame, ""
    where not recorded) and uncertain (rule "diversity"); edges run parent -> child with
    attributes best, collapsed, first_frame, last_frame, hidden (frames elided) and label.
    Graph attributes: object, collapsed. All values are plain int/float/bool/str, so the
    graph writes to GraphML as is.
    """
    return view_graph(select_tree(record, obj, frames, collapse))


def view_graph(view: TreeView) -> nx.DiGraph:
    """The DiGraph of an already selected `TreeView` (see `tree_graph`)."""
    import networkx as nx

    graph = nx.DiGraph(object=view.obj, collapsed=view.collapsed)
    uncertain = np.isin(view.frame, view.uncertain_frames)
    columns: dict[str, list[Any]] = {
        "frame": view.frame.tolist(),
        "slot": view.slot.tolist(),
        "parent": view.parent_slot.tolist(),
        "candidate": view.candidate.tolist(),
        "score": view.score.tolist(),
        "iou": view.iou.tolist(),
        "occlusion": view.occlusion.tolist(),
        "kept": view.kept.tolist(),
        "best": view.best.tolist(),
        "prompt": view.prompt.tolist(),
        "rule": view.rule.tolist(),
        "uncertain": uncertain.tolist(),
    }
    nodes = view.node.tolist()
    graph.add_nodes_from(
        (node, {name: values[i] for name, values in columns.items()})
        for i, node in enumerate(nodes)
    )
    frame_of = dict(zip(nodes, columns["frame"], strict=True))
    best_of = dict(zip(nodes, columns["best"], strict=True))
    edges = []
    for i, (parent, hidden) in enumerate(zip(view.parent_node.tolist(), view.hidden.tolist(),
                                             strict=True)):
        if parent < 0:
            continue
        child = nodes[i]
        first, last = frame_of[parent], frame_of[child]
        edges.append((parent, child, {
            "best": bool(best_of[parent] and best_of[child]),
            "collapsed": hidden > 0,
            "first_frame": first,
            "last_frame": last,
            "hidden": hidden,
            "label": f"frames {first}-{last}" if hidden > 0 else "",
        }))
    graph.add_edges_from(edges)
    return graph


def export_graphml(graph: nx.DiGraph, path: str | Path) -> None:
    """Write `graph` as GraphML (readable by Gephi, yEd, igraph, networkx.read_graphml)."""
    import networkx as nx

    nx.write_graphml(graph, str(path))


def export_json(graph: nx.DiGraph, path: str | Path) -> None:
    """Write `graph` as networkx node-link JSON ("nodes" and "edges" lists).

    Non-finite floats (a candidate the engine rejected has IoU NaN) become null, so the
    file is strict JSON for any reader.
    """
    import networkx as nx

    data = nx.node_link_data(graph, edges="edges")
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(_finite(data), stream, allow_nan=False)
        stream.write("\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
