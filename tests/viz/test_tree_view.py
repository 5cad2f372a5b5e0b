"""The tree view: window, collapsing, and uncertain frames from the recorded rule."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from story import PROMPT_ROW, Row, frame_rows, hand_tree, story_tree

from treemem import Prompt, TreeRecord
from treemem.types import InputError
from treemem.viz.tree_export import tree_graph
from treemem.viz.tree_view import select_tree


def test_collapse_hides_the_inside_of_straight_runs() -> None:
    record = hand_tree()
    full = tree_graph(record)
    assert full.number_of_nodes() == 31  # 1 prompt + 10 frames x (2 kept + 1 pruned)
    collapsed = tree_graph(record, collapse=True)
    # frames 2-5 and 8-9 go (2 kept + 1 pruned each); so do the pruned rows of frames 6
    # and 10, whose parents are hidden
    assert collapsed.number_of_nodes() == 31 - 6 * 3 - 2
    frames = sorted({f for _, f in collapsed.nodes(data="frame")})
    assert frames == [0, 1, 6, 7, 10]
    runs = sorted((d["first_frame"], d["last_frame"], d["hidden"], d["label"])
                  for _, _, d in collapsed.edges(data=True) if d["collapsed"])
    assert runs == [(1, 6, 4, "frames 1-6")] * 2 + [(7, 10, 2, "frames 7-10")] * 2
    assert nx.is_forest(collapsed)
    assert nx.is_tree(collapsed.to_undirected())


def test_a_single_straight_frame_hides_nothing() -> None:
    rows = [PROMPT_ROW, *frame_rows(1, [0, 0]), *frame_rows(2, [0, 1]), *frame_rows(3, [1, 0])]
    record = TreeRecord.from_rows(rows)
    assert tree_graph(record, collapse=True).number_of_nodes() == len(rows)


def test_collapse_on_a_search_tree_keeps_the_final_pathway_connected(story: TreeRecord) -> None:
    full = tree_graph(story)
    collapsed = tree_graph(story, collapse=True)
    assert collapsed.number_of_nodes() < full.number_of_nodes()
    best = collapsed.subgraph(n for n, b in collapsed.nodes(data="best") if b)
    assert nx.is_arborescence(best)  # one chain from the prompt to the last frame
    assert set(best) <= set(story.best_path(1).values())
    last = max(f for _, f in full.nodes(data="frame"))
    assert any(collapsed.nodes[n]["frame"] == last for n in best)


def test_window_and_uncertain_frames_come_from_the_recorded_rule() -> None:
    rows: list[Row] = [PROMPT_ROW]
    for frame in range(1, 9):
        # the logits alone would call frames 1-8 uncertain at any threshold >= 1.5: only the
        # recorded rule counts
        rule = "diversity" if frame in (3, 4) else "pruning"
        rows += frame_rows(frame, [0], occlusion=1.5, rule=rule)
    record = TreeRecord.from_rows(rows)
    view = select_tree(record, frames=(2, 6))
    assert view.frame.min() == 2 and view.frame.max() == 6
    assert view.uncertain_frames.tolist() == [3, 4]
    assert set(view.rule[view.frame == 3].tolist()) == {"diversity"}
    assert (view.parent_node[view.frame == 2] == -1).all()  # parents left the window
    with pytest.raises(InputError, match="object 5"):
        select_tree(record, obj=5)
    with pytest.raises(InputError, match="no tree rows"):
        select_tree(record, frames=(20, 30))


def test_a_record_without_rules_shades_nothing(story: TreeRecord, tmp_path: Path) -> None:
    """A tree.jsonl written before treemem recorded the rule: rows lack `rule`."""
    story.save_jsonl(tmp_path / "tree.jsonl")
    old = [json.loads(line) for line in (tmp_path / "tree.jsonl").read_text().splitlines()]
    (tmp_path / "old.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in row.items() if k != "rule"}) + "\n" for row in old)
    )
    loaded = TreeRecord.load_jsonl(tmp_path / "old.jsonl")
    assert set(loaded.columns().rule.tolist()) == {""}
    assert select_tree(loaded).uncertain_frames.size == 0
    assert select_tree(story).uncertain_frames.size > 0


def test_sam2long_shades_its_uncertain_frames_and_greedy_none() -> None:
    occlusions = ((18, 20), (40, 41))
    uncertain = select_tree(story_tree(occlusions=occlusions)).uncertain_frames.tolist()
    assert uncertain and set(uncertain) <= {18, 19, 20, 40, 41}
    greedy = story_tree(occlusions=occlusions, strategy="greedy")
    assert select_tree(greedy).uncertain_frames.size == 0


def test_reprompted_and_second_object() -> None:
    mask = np.ones((8, 8), bool)
    prompts = [Prompt(1, 0, mask=mask), Prompt(1, 25, mask=mask), Prompt(2, 5, mask=mask)]
    record = story_tree(40, ((10, 12),), prompts)
    view = select_tree(record, obj=1)
    assert view.prompt.sum() == 2 and view.best[view.prompt].all()
    assert set(view.rule[view.prompt].tolist()) == {"prompt"}
    assert select_tree(record, obj=2).frame.min() == 5
