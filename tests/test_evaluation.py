"""`treemem eval`: folder layouts, outputs, and errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL.Image")

from treemem.cli import main
from treemem.evaluation import find_videos, score_folders
from treemem.io.masks import write_palette_png
from treemem.metrics import boundary_accuracy, region_similarity

SIZE = (24, 32)


def square(frame: int, shift: int = 0, obj: int = 1) -> np.ndarray:
    ids = np.zeros(SIZE, np.uint8)
    ids[4:12, 2 + frame + shift : 10 + frame + shift] = obj
    return ids


def write_video(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for index, ids in enumerate(frames):
        write_palette_png(folder / f"{index:05d}.png", ids)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Two DAVIS-layout videos; the prediction of `b` is one pixel off from frame 2 on."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    two = [square(t) + square(t, 12, obj=2) for t in range(5)]
    write_video(gt / "a", [square(t) for t in range(5)])
    write_video(gt / "b", two)
    write_video(pred / "a", [square(t) for t in range(5)])
    write_video(
        pred / "b", [square(t, 1 if t >= 2 else 0) + square(t, 12, obj=2) for t in range(5)]
    )
    return pred, gt


def test_eval_prints_table_and_writes_outputs(
    dataset: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred, gt = dataset
    csv_path, json_path, plot_path = tmp_path / "s.csv", tmp_path / "s.json", tmp_path / "c.png"
    code = main(
        [
            "eval",
            str(pred),
            str(gt),
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
            "--plot",
            str(plot_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "video" in out and "J&F" in out and "3 objects in 2 videos" in out

    # frames 1..3 are scored (first and last skipped); object 1 of b is off on frames 2 and 3
    off_j = float(region_similarity(square(2) == 1, square(2, 1) == 1))
    off_f = boundary_accuracy(square(2) == 1, square(2, 1) == 1)
    record = json.loads(json_path.read_text())
    b1 = record["videos"][1]["objects"][0]
    assert b1["frames"] == ["00001.png", "00002.png", "00003.png"]
    assert b1["J_per_frame"] == pytest.approx([1.0, off_j, off_j], abs=1e-6)
    assert b1["F_per_frame"] == pytest.approx([1.0, off_f, off_f], abs=1e-6)
    expected_j = (1 + 1 + (1 + 2 * off_j) / 3) / 3
    assert record["summary"]["J"]["mean"] == pytest.approx(expected_j, abs=1e-6)
    assert record["summary"]["objects"] == 3

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["video"] for r in rows] == ["a", "a", "b", "b", "b", "global"]
    assert float(rows[-1]["J"]) == pytest.approx(expected_j, abs=1e-6)
    assert plot_path.stat().st_size > 0


def test_all_frames_and_single_video(dataset: tuple[Path, Path]) -> None:
    pred, gt = dataset
    [scores] = list(score_folders(pred / "a", gt / "a", skip_first_last=False))
    assert scores.video == "a"
    assert scores.objects[0].frames == tuple(f"{t:05d}.png" for t in range(5))
    assert scores.objects[0].j.tolist() == [1.0] * 5


def test_sav_layout_one_folder_per_object(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for root, shift in ((gt, 0), (pred, 3)):
        write_video(root / "v" / "000", [(square(t) > 0).astype(np.uint8) for t in range(4)])
        write_video(
            root / "v" / "001", [(square(t, shift + 12) > 0).astype(np.uint8) for t in range(4)]
        )
    assert find_videos(gt)["v"].per_object
    [scores] = list(score_folders(pred, gt))
    assert [o.obj for o in scores.objects] == [0, 1]
    assert scores.objects[0].j.tolist() == [1.0, 1.0]
    assert scores.objects[1].j.tolist() == pytest.approx([5 / 11, 5 / 11])


def test_errors_are_one_line(
    dataset: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pred, gt = dataset
    (pred / "b" / "00003.png").unlink()
    assert main(["eval", str(pred), str(gt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("treemem: error: prediction missing") and "\n" not in err

    assert main(["eval", str(pred / "nowhere"), str(gt)]) == 2
    assert "no predictions for 2 videos" in capsys.readouterr().err

    short = gt.parent / "short"
    write_video(short / "v", [square(0), square(1)])
    assert main(["eval", str(short), str(short)]) == 2
    assert "--all-frames" in capsys.readouterr().err
    assert main(["eval", str(short), str(short), "--all-frames"]) == 0
