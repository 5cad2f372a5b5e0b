"""The tree as a DiGraph: GraphML round trip and strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pytest
from story import PROMPT_ROW, frame_rows

from treemem import TreeRecord
from treemem.viz.tree_export import export_graphml, export_json, tree_graph


def test_graphml_round_trip(story: TreeRecord, tmp_path: Path) -> None:
    graph = tree_graph(story, collapse=True)
    export_graphml(graph, tmp_path / "tree.graphml")
    back = nx.read_graphml(tmp_path / "tree.graphml", node_type=int)
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    for node, data in graph.nodes(data=True):
        for key, value in data.items():
            assert back.nodes[node][key] == pytest.approx(value, nan_ok=True), key
    for parent, child, data in graph.edges(data=True):
        assert back.edges[parent, child] == data
    assert back.graph["object"] == 1


def test_nodes_carry_the_rule_and_uncertain_is_diversity(story: TreeRecord) -> None:
    graph = tree_graph(story)
    rules = {data["rule"] for _, data in graph.nodes(data=True)}
    assert rules == {"prompt", "start", "pruning", "diversity"}
    assert all(data["uncertain"] == (data["rule"] == "diversity")
               for _, data in graph.nodes(data=True))


def test_json_export_is_strict_json(tmp_path: Path) -> None:
    rows = [PROMPT_ROW, *frame_rows(1, [0])]
    rows[-1] = (*rows[-1][:6], math.nan, *rows[-1][7:])  # a rejected candidate
    export_json(tree_graph(TreeRecord.from_rows(rows)), tmp_path / "tree.json")
    data = json.loads((tmp_path / "tree.json").read_text(), parse_constant=pytest.fail)
    assert len(data["nodes"]) == 3 and len(data["edges"]) == 2
    assert [n["iou"] for n in data["nodes"]].count(None) == 1
