"""The rendered tree figure, and `treemem tree`, which selects the view once and draws it."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from PIL import Image
from story import story_tree

from treemem import Prompt, TreeRecord
from treemem.cli import main
from treemem.viz.tree_figure import BEST_PATH_COLOR, UNCERTAIN_COLOR, draw_tree, save_figure


def pixels_near(image: np.ndarray, hex_color: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - target).max(axis=-1) <= tolerance).sum())


def render(figure: object, path: Path) -> np.ndarray:
    save_figure(figure, path, dpi=100)  # type: ignore[arg-type]
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("collapse", [False, True])
def test_rendered_png_shows_the_tree(story: TreeRecord, tmp_path: Path, collapse: bool) -> None:
    figure = draw_tree(story, collapse=collapse)
    width, height = figure.get_size_inches()
    image = render(figure, tmp_path / "tree.png")
    assert image.shape == (round(height * 100), round(width * 100), 3)
    assert (image < 250).any(axis=-1).mean() > 0.05  # not blank
    assert pixels_near(image, BEST_PATH_COLOR) > 500  # the final pathway is highlighted
    assert pixels_near(image, UNCERTAIN_COLOR, tolerance=60) > 0  # an uncertain band


def bands(figure: Figure) -> int:
    """Uncertain-frame bands drawn on the tree axes (one PolyCollection holds them all)."""
    tree = next(ax for ax in figure.axes if ax.get_label() == "tree")
    return sum(len(c.get_paths()) for c in tree.collections if isinstance(c, PolyCollection))


def test_only_frames_chosen_by_diversity_are_shaded(story: TreeRecord) -> None:
    assert bands(draw_tree(story)) == 2  # the story's two occlusions
    greedy = draw_tree(story_tree(strategy="greedy"))
    assert bands(greedy) == 0
    assert "uncertain" not in " ".join(t.get_text() for t in greedy.legends[0].get_texts())


def test_thumbnails_and_occlusion_colouring(story: TreeRecord, tmp_path: Path) -> None:
    magenta = np.zeros((30, 40, 3), np.uint8)
    magenta[..., 0] = magenta[..., 2] = 255
    figure = draw_tree(story, color_by="occlusion", frames=(10, 40), serif=True,
                       thumbnails={12: magenta, 30: magenta, 500: magenta})
    assert {ax.get_label() for ax in figure.axes} == {"tree", "colorbar", "thumbnails"}
    assert len(figure.axes[-1].images) == 2  # frame 500 is outside the window
    image = render(figure, tmp_path / "tree.png")
    assert pixels_near(image, "#FF00FF", tolerance=4) > 200


def test_vector_outputs(story: TreeRecord, tmp_path: Path) -> None:
    figure = draw_tree(story, collapse=True)
    save_figure(figure, tmp_path / "tree.pdf")
    save_figure(figure, tmp_path / "tree.svg")
    assert (tmp_path / "tree.pdf").read_bytes().startswith(b"%PDF")
    svg = (tmp_path / "tree.svg").read_text()
    assert "<svg" in svg and "final pathway" in svg  # text stays text


def test_second_object_draws() -> None:
    mask = np.ones((8, 8), bool)
    prompts = [Prompt(1, 0, mask=mask), Prompt(1, 25, mask=mask), Prompt(2, 5, mask=mask)]
    record = story_tree(40, ((10, 12),), prompts)
    assert len(draw_tree(record, obj=2, collapse=True).axes) == 2


def test_cli_writes_figure_and_graphs(story: TreeRecord, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    story.save_jsonl(run_dir / "tree.jsonl")
    code = main(["tree", str(run_dir), "--out", str(tmp_path / "t.svg"), "--collapse",
                 "--frames", "5:50", "--color-by", "occlusion", "--graphml",
                 str(tmp_path / "t.graphml"), "--json", str(tmp_path / "t.json")])
    assert code == 0
    assert all((tmp_path / name).stat().st_size > 0 for name in ("t.svg", "t.graphml", "t.json"))
    graph = nx.read_graphml(tmp_path / "t.graphml")
    assert graph.graph["collapsed"] is True
    uncertain = {data["frame"] for _, data in graph.nodes(data=True) if data["uncertain"]}
    assert uncertain and uncertain <= {18, 19, 20, 40, 41}  # the story's occlusions
    assert "uncertain frames" in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", str(tmp_path), "--out", str(tmp_path / "t.png")]) == 2
    assert "no tree" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tree", str(tmp_path), "--frames", "9:3", "--out", "t.png"])
