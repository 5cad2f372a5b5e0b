"""The pathway tree: selection, collapsing, graph export and the rendered figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from PIL import Image
from story import story_tree

from treemem import Prompt, TreeRecord
from treemem.cli import main
from treemem.types import InputError
from treemem.viz.tree import (
    BEST_PATH_COLOR,
    draw_tree,
    export_graphml,
    export_json,
    save_figure,
    select_tree,
    tree_graph,
)

Row = tuple[int, int, int, int, int, float, float, float, bool]


def frame_rows(frame: int, parents: list[int], pruned: int = 1, occlusion: float = 8.0,
               obj: int = 1) -> list[Row]:
    """Kept rows in slot order with these parent slots, then `pruned` pruned rows (parent 0)."""
    kept = [(obj, frame, slot, parent, 0, -0.1, 0.9, occlusion, True)
            for slot, parent in enumerate(parents)]
    return kept + [(obj, frame, -1, 0, 1 + i, -2.0, 0.3, occlusion, False) for i in range(pruned)]


def hand_tree() -> TreeRecord:
    """P=2: prompt, clone split at frame 1, straight 2-6, a swap at 7, straight 8-10."""
    rows: list[Row] = [(1, 0, 0, -1, -1, 0.0, 1.0, 10.0, True)]
    rows += frame_rows(1, [0, 0])
    for frame in range(2, 7):
        rows += frame_rows(frame, [0, 1])
    rows += frame_rows(7, [1, 0])
    for frame in range(8, 11):
        rows += frame_rows(frame, [0, 1])
    return TreeRecord.from_rows(rows)


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
    rows: list[Row] = [(1, 0, 0, -1, -1, 0.0, 1.0, 10.0, True)]
    rows += frame_rows(1, [0, 0]) + frame_rows(2, [0, 1]) + frame_rows(3, [1, 0])
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


def test_window_and_uncertain_frames() -> None:
    rows: list[Row] = [(1, 0, 0, -1, -1, 0.0, 1.0, 10.0, True)]
    for frame in range(1, 9):
        rows += frame_rows(frame, [0], occlusion=1.5 if frame in (3, 4) else -6.0)
    record = TreeRecord.from_rows(rows)
    view = select_tree(record, frames=(2, 6))
    assert view.frame.min() == 2 and view.frame.max() == 6
    assert view.uncertain_frames.tolist() == [3, 4]
    assert select_tree(record, delta_conf=7.0).uncertain_frames.tolist() == list(range(1, 9))
    assert (view.parent_node[view.frame == 2] == -1).all()  # parents left the window
    with pytest.raises(InputError, match="object 5"):
        select_tree(record, obj=5)
    with pytest.raises(InputError, match="no tree rows"):
        select_tree(record, frames=(20, 30))


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


def test_json_export_is_strict_json(tmp_path: Path) -> None:
    rows: list[Row] = [(1, 0, 0, -1, -1, 0.0, 1.0, 10.0, True)]
    rows += frame_rows(1, [0])
    rows[-1] = (*rows[-1][:6], math.nan, *rows[-1][7:])  # a rejected candidate
    export_json(tree_graph(TreeRecord.from_rows(rows)), tmp_path / "tree.json")
    data = json.loads((tmp_path / "tree.json").read_text(), parse_constant=pytest.fail)
    assert len(data["nodes"]) == 3 and len(data["edges"]) == 2
    assert [n["iou"] for n in data["nodes"]].count(None) == 1


def pixels_near(image: np.ndarray, hex_color: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - target).max(axis=-1) <= tolerance).sum())


@pytest.mark.parametrize("collapse", [False, True])
def test_rendered_png_shows_the_tree(story: TreeRecord, tmp_path: Path, collapse: bool) -> None:
    figure = draw_tree(story, collapse=collapse)
    width, height = figure.get_size_inches()
    save_figure(figure, tmp_path / "tree.png", dpi=100)
    image = np.asarray(Image.open(tmp_path / "tree.png").convert("RGB"))
    assert image.shape == (round(height * 100), round(width * 100), 3)
    assert (image < 250).any(axis=-1).mean() > 0.05  # not blank
    assert pixels_near(image, BEST_PATH_COLOR) > 500  # the final pathway is highlighted
    assert pixels_near(image, "#56B4E9", tolerance=60) > 0  # an uncertain band


def test_thumbnails_and_occlusion_colouring(story: TreeRecord, tmp_path: Path) -> None:
    magenta = np.zeros((30, 40, 3), np.uint8)
    magenta[..., 0] = magenta[..., 2] = 255
    figure = draw_tree(story, color_by="occlusion", frames=(10, 40), serif=True,
                       thumbnails={12: magenta, 30: magenta, 500: magenta})
    assert {ax.get_label() for ax in figure.axes} == {"tree", "colorbar", "thumbnails"}
    assert len(figure.axes[-1].images) == 2  # frame 500 is outside the window
    save_figure(figure, tmp_path / "tree.png", dpi=100)
    image = np.asarray(Image.open(tmp_path / "tree.png").convert("RGB"))
    assert pixels_near(image, "#FF00FF", tolerance=4) > 200


def test_vector_outputs(story: TreeRecord, tmp_path: Path) -> None:
    figure = draw_tree(story, collapse=True)
    save_figure(figure, tmp_path / "tree.pdf")
    save_figure(figure, tmp_path / "tree.svg")
    assert (tmp_path / "tree.pdf").read_bytes().startswith(b"%PDF")
    svg = (tmp_path / "tree.svg").read_text()
    assert "<svg" in svg and "final pathway" in svg  # text stays text


def test_reprompted_and_second_object() -> None:
    mask = np.ones((8, 8), bool)
    prompts = [Prompt(1, 0, mask=mask), Prompt(1, 25, mask=mask), Prompt(2, 5, mask=mask)]
    record = story_tree(40, ((10, 12),), prompts)
    view = select_tree(record, obj=1)
    assert view.prompt.sum() == 2 and view.best[view.prompt].all()
    assert select_tree(record, obj=2).frame.min() == 5
    assert len(draw_tree(record, obj=2, collapse=True).axes) == 2


def test_cli_writes_figure_and_graphs(story: TreeRecord, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    story.save_jsonl(run_dir / "tree.jsonl")
    (run_dir / "run.json").write_text('{"strategy": "sam2long", "parameters": {"delta_conf": 1}}')
    code = main(["tree", str(run_dir), "--out", str(tmp_path / "t.svg"), "--collapse",
                 "--frames", "5:50", "--color-by", "occlusion", "--graphml",
                 str(tmp_path / "t.graphml"), "--json", str(tmp_path / "t.json")])
    assert code == 0
    assert all((tmp_path / name).stat().st_size > 0 for name in ("t.svg", "t.graphml", "t.json"))
    graph = nx.read_graphml(tmp_path / "t.graphml")
    assert graph.graph["delta_conf"] == 1.0 and graph.graph["collapsed"] is True


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", str(tmp_path), "--out", str(tmp_path / "t.png")]) == 2
    assert "no tree" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tree", str(tmp_path), "--frames", "9:3", "--out", "t.png"])
