"""The command line end to end: `treemem run` on the synthetic backend (and on SAM 2 with
random weights over a real clip), `treemem demo`, and bad input as exit code 2 + one line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from treemem.backends.synthetic_video import SyntheticVideo, make_video  # noqa: E402
from treemem.cli import main  # noqa: E402
from treemem.io.masks import davis_palette, read_mask, write_palette_png  # noqa: E402
from treemem.pipeline.sinks import progress_bar  # noqa: E402
from treemem.tree import FIELDS, TreeRecord  # noqa: E402

FRAMES = 16
VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "videos"


@pytest.fixture(scope="module")
def saved_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved two-object synthetic video (what --backend synthetic reads)."""
    folder = tmp_path_factory.mktemp("synthetic") / "video"
    make_video(5, num_frames=FRAMES, height=64, width=80, num_objects=2).save(folder)
    return folder


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synthetic_run(video: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", str(video), "--backend", "synthetic", "--mask", str(video / "gt" / "00000.png"),
        "--out", str(out), "--no-progress", *extra,
    ]


def test_run_synthetic_writes_masks_tree_and_summary(
    saved_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run_cli(synthetic_run(saved_video, out, "--set", "P=2"), capsys)
    assert code == 0 and "wrote 16 frames of 2 object(s)" in stdout

    pngs = sorted((out / "masks").iterdir())
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(FRAMES)]
    video = SyntheticVideo.load(saved_video)
    for t, png in enumerate(pngs):
        with Image.open(png) as image:
            assert image.mode == "P" and image.size == (80, 64)
            assert image.getpalette()[:9] == list(davis_palette()[:9])
        ids = read_mask(png)
        assert set(np.unique(ids).tolist()) <= {0, 1, 2}
        if t == 0:
            np.testing.assert_array_equal(ids, video.gt[0])  # the prompt frame is the prompt

    lines = (out / "tree.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(tuple(row) == FIELDS for row in rows)
    assert {row["object"] for row in rows} == {1, 2}
    assert {row["frame"] for row in rows} == set(range(FRAMES))
    kept = [r for r in rows if r["kept"]]
    assert max(r["slot"] for r in kept) == 1  # P=2 pathways
    assert all(r["slot"] == -1 for r in rows if not r["kept"])
    record = TreeRecord.load_jsonl(out / "tree.jsonl")
    for obj in (1, 2):
        assert sorted(record.best_path(obj)) == list(range(FRAMES))

    summary = json.loads((out / "run.json").read_text())
    assert summary["strategy"] == "sam2long" and summary["parameters"]["pathways"] == 2
    assert summary["backend"] == {"name": "synthetic", "seed": 0}
    assert summary["video"]["frames"] == FRAMES and summary["frames"] == FRAMES
    assert summary["objects"] == [1, 2] and summary["tree_rows"] == len(rows)
    assert summary["seconds"] >= 0 and summary["fps"] is not None


def test_run_is_deterministic_and_online_lag_bounded(
    saved_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, lagged = tmp_path / "a", tmp_path / "b", tmp_path / "lag"
    assert run_cli(synthetic_run(saved_video, first), capsys)[0] == 0
    assert run_cli(synthetic_run(saved_video, second), capsys)[0] == 0
    for t in range(FRAMES):
        name = f"{t:05d}.png"
        assert (first / "masks" / name).read_bytes() == (second / "masks" / name).read_bytes()
    assert (first / "tree.jsonl").read_bytes() == (second / "tree.jsonl").read_bytes()

    assert run_cli(synthetic_run(saved_video, lagged, "--max-lag", "1"), capsys)[0] == 0
    summary = json.loads((lagged / "run.json").read_text())
    assert summary["max_lag"] == 1 and summary["frames"] == FRAMES
    assert len(list((lagged / "masks").glob("*.png"))) == FRAMES


def test_run_greedy_with_a_box_prompt(
    saved_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = SyntheticVideo.load(saved_video)
    ys, xs = np.nonzero(video.gt[0] == 1)
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}"
    out = tmp_path / "box"
    args = ["run", str(saved_video), "--backend", "synthetic", "--box", box, "--strategy",
            "greedy", "--out", str(out), "--no-progress"]
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0, stdout
    summary = json.loads((out / "run.json").read_text())
    assert summary["strategy"] == "greedy" and summary["prompts"][0]["kind"] == "box"
    assert {int(v) for v in np.unique(read_mask(out / "masks" / "00000.png"))} <= {0, 1}


def test_existing_run_is_refused_unless_overwrite(
    saved_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(synthetic_run(saved_video, out), capsys)[0] == 0
    before = (out / "run.json").read_bytes()
    code, _, err = run_cli(synthetic_run(saved_video, out, "--strategy", "greedy"), capsys)
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert err.count("\n") == 1 and (out / "run.json").read_bytes() == before
    code, _, _ = run_cli(synthetic_run(saved_video, out, "--strategy", "greedy", "--overwrite"),
                         capsys)
    assert code == 0 and json.loads((out / "run.json").read_text())["strategy"] == "greedy"


def bad_masks(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    """Mask files that must each be refused."""
    height, width = size
    made: dict[str, Path] = {}

    def save(name: str, ids: np.ndarray) -> None:
        made[name] = folder / f"{name}.png"
        write_palette_png(made[name], ids.astype(np.uint8))

    save("wrong_size", np.pad(np.ones((4, 4)), ((0, height - 2), (0, width - 6))))
    save("empty", np.zeros(size))
    save("all_ones", np.ones(size))
    three = np.zeros(size)
    three[:5, :5], three[10:15, 10:15], three[20:25, 20:25] = 1, 2, 3
    save("three_objects", three)
    gray = np.zeros(size, np.uint8)
    gray[:10, :10], gray[20:30, 20:30] = 255, 128
    made["not_binary"] = folder / "not_binary.png"
    Image.fromarray(gray).save(made["not_binary"])
    return made


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_size", "but the video is 80x64"),
        ("empty", "is empty"),
        ("all_ones", "no background"),
        ("three_objects", "3 object ids"),
        ("not_binary", "not binary"),
        ("no_prompt", "no prompt given"),
        ("box_outside", "not a box inside the 80x64 frame"),
        ("point_outside", "outside the 80x64 frame"),
        ("bad_points", "--points needs"),
        ("frame_outside", "--mask-frame 99 is outside"),
        ("unknown_strategy", "did you mean 'sam2long'"),
        ("misspelt_set", "did you mean 'delta_iou'"),
        ("bad_parameter", "pathways must be >= 1"),
        ("negative_lag", "--max-lag must be >= 0"),
        ("not_synthetic", "not a saved synthetic video"),
        ("sam2_no_checkpoint", "needs a checkpoint (--checkpoint"),
        ("sam2_missing_checkpoint", "checkpoint not found"),
        ("sam2_corrupt_video", "cannot read"),
        ("sam2_missing_video", "video not found"),
        ("unknown_dtype", "unknown dtype 'fp64'; use fp32, bf16 or fp16"),
        ("synthetic_dtype", "the synthetic backend has no dtype"),
        ("bad_direction", "--direction must be one of forward, backward, both, got 'reverse'"),
        ("synthetic_compile", "the synthetic backend has no model to compile"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(
    case: str,
    expected: str,
    saved_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    masks = bad_masks(tmp_path, (64, 80))
    out = tmp_path / "out"
    good_mask = str(saved_video / "gt" / "00000.png")
    synthetic = ["run", str(saved_video), "--backend", "synthetic", "--out", str(out)]
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    checkpoint.write_bytes(b"not reached")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    sam2 = ["run", "--checkpoint", str(checkpoint), "--mask", good_mask, "--out", str(out)]
    args = {
        "no_prompt": synthetic,
        "box_outside": [*synthetic, "--box", "10,10,200,20"],
        "point_outside": [*synthetic, "--points", "5,5,1;90,10,0"],
        "bad_points": [*synthetic, "--points", "5,5,7"],
        "frame_outside": [*synthetic, "--mask", good_mask, "--mask-frame", "99"],
        "unknown_strategy": [*synthetic, "--mask", good_mask, "--strategy", "sam2lnog"],
        "misspelt_set": [*synthetic, "--mask", good_mask, "--set", "delta_iuo=0.2"],
        "bad_parameter": [*synthetic, "--mask", good_mask, "--set", "P=0"],
        "negative_lag": [*synthetic, "--mask", good_mask, "--max-lag", "-1"],
        "not_synthetic": ["run", str(tmp_path), "--backend", "synthetic", "--mask", good_mask,
                          "--out", str(out)],
        "sam2_no_checkpoint": ["run", str(junk), "--mask", good_mask, "--out", str(out)],
        "sam2_missing_checkpoint": ["run", str(junk), "--checkpoint", str(tmp_path / "no.pt"),
                                    "--mask", good_mask, "--out", str(out)],
        "sam2_corrupt_video": [*sam2[:1], str(junk), *sam2[1:]],
        "sam2_missing_video": [*sam2[:1], str(tmp_path / "no.mp4"), *sam2[1:]],
        "unknown_dtype": [*sam2[:1], str(junk), *sam2[1:], "--dtype", "fp64"],
        "synthetic_dtype": [*synthetic, "--mask", good_mask, "--dtype", "bf16"],
        "bad_direction": [*synthetic, "--mask", good_mask, "--direction", "reverse"],
        "synthetic_compile": [*synthetic, "--mask", good_mask, "--compile"],
    }.get(case, [*synthetic, "--mask", str(masks.get(case, good_mask)), "--objects", "2"])
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err.startswith("treemem: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert not out.exists()  # nothing written for refused input


def test_run_backward_and_both_from_a_mid_video_prompt(
    saved_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--direction backward writes the prompt frame and the frames before it; both writes
    every frame once: the forward run's from the prompt on, the backward run's before it."""
    mid = 7
    video = SyntheticVideo.load(saved_video)
    mask = tmp_path / "mid.png"
    write_palette_png(mask, video.gt[mid])
    runs = {}
    for direction in ("forward", "backward", "both"):
        out = tmp_path / direction
        args = ["run", str(saved_video), "--backend", "synthetic", "--mask", str(mask),
                "--mask-frame", str(mid), "--out", str(out), "--no-progress",
                "--direction", direction]
        code, stdout, _ = run_cli(args, capsys)
        assert code == 0, stdout
        runs[direction] = {int(p.stem): read_mask(p) for p in (out / "masks").glob("*.png")}
        summary = json.loads((out / "run.json").read_text())
        assert summary["direction"] == direction and summary["frames"] == len(runs[direction])
        rows = [json.loads(line) for line in (out / "tree.jsonl").read_text().splitlines()]
        assert all(tuple(row) == FIELDS for row in rows)
        expected = {"both": {"forward", "backward"}}.get(direction, {direction})
        assert {row["direction"] for row in rows} == expected
    assert sorted(runs["forward"]) == list(range(mid, FRAMES))
    assert sorted(runs["backward"]) == list(range(mid + 1))
    assert sorted(runs["both"]) == list(range(FRAMES))
    np.testing.assert_array_equal(runs["backward"][mid], video.gt[mid])
    for frame, ids in runs["both"].items():
        expected_ids = runs["forward" if frame >= mid else "backward"][frame]
        np.testing.assert_array_equal(ids, expected_ids)
    assert any(runs["backward"][f].any() for f in range(mid))  # it really tracked


def test_entry_point_exit_code_in_a_subprocess(saved_video: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "treemem.cli", *synthetic_run(saved_video, tmp_path / "o"),
         "--set", "delta_iou=2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "treemem: error: delta_iou must be in [0, 1], got 2.0"
    ]


def test_demo_runs_both_strategies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(["demo", "--out", str(out), "--no-progress"], capsys)
    assert code == 0
    results = json.loads((out / "demo.json").read_text())["results"]
    frames = json.loads((out / "video" / "video.json").read_text())["num_frames"]
    for name in ("sam2long", "greedy"):
        assert f"{name:<10} {results[name]['mean_j']:>7.3f}" in stdout
        assert 0.0 <= results[name]["mean_j"] <= 1.0
        assert len(list((out / name / "masks").glob("*.png"))) == frames
        assert (out / name / "tree.jsonl").stat().st_size > 0
    # A second demo replaces the first; a folder holding other files is refused.
    assert run_cli(["demo", "--out", str(out), "--no-progress"], capsys)[0] == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = run_cli(["demo", "--out", str(tmp_path / "other")], capsys)
    assert code == 2 and "notes.txt" in err


def test_progress_bar_draws_on_a_terminal_only() -> None:
    stream = io.StringIO()
    with progress_bar(10, "sam2long", stream=stream, enabled=True) as bar:
        for _ in range(10):
            bar.update(1)
    text = stream.getvalue()
    assert "sam2long" in text and "100%" in text and "10/10" in text and "frames" in text
    quiet = io.StringIO()
    with progress_bar(10, "sam2long", stream=quiet) as bar:  # not a terminal: off
        bar.update(5)
    assert quiet.getvalue() == ""


def test_run_sam2_random_weights_on_a_real_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real SAM 2 backend (random weights, CPU, 256 px) through the CLI on a 3-frame clip
    cut from a shared mp4, prompted by a box."""
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    av = pytest.importorskip("av")
    import torch

    from treemem.backends.sam2 import build_random_model

    source = VIDEOS / "bedroom.mp4"
    if not source.is_file():
        pytest.skip(f"shared test video missing: {source}")
    clip = tmp_path / "clip.mp4"
    with av.open(str(source)) as reader, av.open(str(clip), "w") as writer:
        stream_in = reader.streams.video[0]
        stream_out = writer.add_stream_from_template(stream_in)
        for count, packet in enumerate(reader.demux(stream_in)):
            if count == 3:
                break
            packet.stream = stream_out
            writer.mux(packet)
    checkpoint = tmp_path / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_random_model(image_size=256).state_dict()}, checkpoint)
    out = tmp_path / "run"
    args = ["run", str(clip), "--backend", "sam2", "--checkpoint", str(checkpoint),
            "--image-size", "256", "--device", "cpu", "--box", "300,100,600,400",
            "--set", "P=2", "--out", str(out), "--no-progress"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png",
                                                                  "00002.png"]
    assert read_mask(out / "masks" / "00002.png").shape == (540, 960)
    summary = json.loads((out / "run.json").read_text())
    assert summary["backend"]["name"] == "sam2" and summary["video"]["fps"] == pytest.approx(30)
