"""`treemem bench`: sweeps, the synthetic suite end to end, resuming, Ray, the SAM 2 path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("PIL.Image")

from treemem.benchmark import RunSpec, expand_runs
from treemem.cli import main
from treemem.evaluation import score_folders
from treemem.types import ConfigError


def write_suite(folder: Path, count: int, num_frames: int) -> Path:
    from treemem.backends.synthetic_video import make_suite

    for index, video in enumerate(make_suite(seed=0, count=count, num_frames=num_frames)):
        video.save(folder / f"video_{index:03d}")
    return folder


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_suite(tmp_path_factory.mktemp("suite"), count=2, num_frames=24)


def test_sweeps_cross_keys_and_skip_strategies_without_them() -> None:
    runs = expand_runs(["sam2long", "greedy"], ["P=1,2", "w_low/w_high=1/1,0.9/1.1"])
    assert [r.name for r in runs] == [
        "sam2long-P=1-w_low=1-w_high=1",
        "sam2long-P=1-w_low=0.9-w_high=1.1",
        "sam2long-P=2-w_low=1-w_high=1",
        "sam2long-P=2-w_low=0.9-w_high=1.1",
        "greedy",
    ]
    assert expand_runs(["greedy"], []) == [RunSpec("greedy")]
    with pytest.raises(ConfigError, match="delta_iou"):
        expand_runs(["sam2long"], ["delta_iuo=0.3"])
    with pytest.raises(ConfigError):
        expand_runs(["sam2long"], ["P=0"])  # built, so invalid values fail before any video
    with pytest.raises(ConfigError):
        expand_runs(["sam2long"], ["w_low/w_high=1"])


def test_make_synthetic_writes_a_bench_dataset(tmp_path: Path) -> None:
    assert main(["bench", "--make-synthetic", str(tmp_path / "suite"), "--count", "2"]) == 0
    videos = sorted(p.name for p in (tmp_path / "suite").iterdir())
    assert videos == ["video_000", "video_001"]
    assert (tmp_path / "suite" / "video_000" / "gt").is_dir()


def test_bench_end_to_end_and_resume(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [
        "bench",
        str(suite),
        "--strategy",
        "sam2long",
        "--strategy",
        "greedy",
        "--set",
        "P=1,3",
        "--out",
        str(out),
        "--plot",
        str(out / "curves.png"),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "sam2long-P=1" in table and "sam2long-P=3" in table and "greedy" in table

    rows = {r["run"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(rows) == {"sam2long-P=1", "sam2long-P=3", "greedy"}
    assert rows["greedy"]["speed_vs_greedy"] == 1.0
    for row in rows.values():
        assert 0.0 <= row["J&F"] <= 1.0 and row["fps"] > 0 and row["videos"] == 2
    assert (out / "results.md").read_text().startswith("| run |")
    assert (out / "curves.png").stat().st_size > 0

    # the stored scores are what `treemem eval` gives on the written predictions
    result = json.loads((out / "runs" / "greedy" / "results" / "video_000.json").read_text())
    [scores] = list(
        score_folders(out / "runs" / "greedy" / "pred" / "video_000", suite / "video_000" / "gt")
    )
    assert result["scores"][0]["J_per_frame"] == pytest.approx(
        scores.objects[0].j.tolist(), abs=1e-6
    )
    assert len(list((out / "runs" / "greedy" / "pred" / "video_000").glob("*.png"))) == 24

    # resuming: a finished video is not run again; a removed result file is
    marker = out / "runs" / "greedy" / "results" / "video_001.json"
    marker.unlink()
    before = (out / "runs" / "greedy" / "results" / "video_000.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "resuming: 5 of 6 videos already finished" in capsys.readouterr().err
    assert marker.is_file()
    assert (out / "runs" / "greedy" / "results" / "video_000.json").stat().st_mtime_ns == before


def test_a_sweep_in_one_pass_writes_what_separate_runs_write(
    suite: Path, tmp_path: Path
) -> None:
    """The default (a video's runs in one pass) and --separate write the same predictions
    and scores for every run; the result files say which runs shared a pass."""
    common = ["bench", str(suite), "--strategy", "sam2long", "--strategy", "greedy",
              "--strategy", "samurai", "--set", "P=1,2,4"]
    together, apart = tmp_path / "together", tmp_path / "apart"
    assert main([*common, "--out", str(together)]) == 0
    assert main([*common, "--out", str(apart), "--separate"]) == 0
    runs = ["sam2long-P=1", "sam2long-P=2", "sam2long-P=4", "greedy", "samurai"]
    for run in runs:
        for video in ("video_000", "video_001"):
            a = json.loads((together / "runs" / run / "results" / f"{video}.json").read_text())
            b = json.loads((apart / "runs" / run / "results" / f"{video}.json").read_text())
            assert a["scores"] == b["scores"], (run, video)
            assert a["sweep"] == runs and "sweep" not in b
            pngs = sorted((apart / "runs" / run / "pred" / video).glob("*.png"))
            assert len(pngs) == 24
            for png in pngs:
                mine = together / "runs" / run / "pred" / video / png.name
                assert mine.read_bytes() == png.read_bytes(), (run, video, png.name)


def test_bench_refuses_to_mix_settings_in_one_out(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["bench", str(suite), "--strategy", "greedy", "--out", str(out)]) == 0
    assert (
        main(["bench", str(suite), "--strategy", "greedy", "--out", str(out), "--seed", "1"]) == 2
    )
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--dtype", "bf16"], "the synthetic backend has no dtype"),
        (["--backend", "sam2", "--checkpoint", "x.pt", "--dtype", "half"], "unknown dtype 'half'"),
        (["--compile"], "the synthetic backend has no model to compile"),
    ],
)
def test_bench_refuses_a_dtype_in_one_line(
    options: list[str], expected: str, suite: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert main(["bench", str(suite), "--strategy", "greedy", "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not out.exists()


def test_bench_needs_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--make-synthetic" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_bench_on_a_local_ray_of_two_workers(suite: Path, tmp_path: Path) -> None:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    common = ["bench", str(suite), "--strategy", "sam2long", "--strategy", "greedy"]
    assert main([*common, "--out", str(local)]) == 0
    assert main([*common, "--out", str(distributed), "--ray", "--workers", "2"]) == 0
    for run in ("sam2long", "greedy"):
        for video in ("video_000", "video_001"):
            a = json.loads((local / "runs" / run / "results" / f"{video}.json").read_text())
            b = json.loads((distributed / "runs" / run / "results" / f"{video}.json").read_text())
            assert a["scores"] == b["scores"]


@pytest.mark.skipif(
    importlib.util.find_spec("sam2") is None or importlib.util.find_spec("torch") is None,
    reason="sam2 and torch are not installed",
)
def test_bench_on_sam2_with_random_weights(tmp_path: Path) -> None:
    import torch

    from treemem.backends.sam2 import build_random_model

    dataset = write_suite(tmp_path / "suite", count=2, num_frames=8)
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": build_random_model(image_size=64).state_dict()}, checkpoint)
    out = tmp_path / "out"
    args = [
        "bench",
        str(dataset),
        "--backend",
        "sam2",
        "--checkpoint",
        str(checkpoint),
        "--image-size",
        "64",
        "--device",
        "cpu",
        "--set",
        "P=1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    rows = {r["run"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(rows) == {"sam2long-P=1", "greedy"}
    assert all(row["videos"] == 2 for row in rows.values())


@pytest.mark.skipif(
    importlib.util.find_spec("sam3") is None or importlib.util.find_spec("torch") is None,
    reason="sam3 and torch are not installed (pip install 'treemem[sam3]')",
)
def test_bench_on_sam3_with_random_weights(tmp_path: Path) -> None:
    """`--backend sam3` opens SAM 3 through the run layer's opener, as `treemem run` does: a
    seeded reduced tracker saved in sam3.pt's layout, its shape as a --config JSON."""
    import torch

    from treemem.backends.sam3 import build_random_model, small_config

    dataset = write_suite(tmp_path / "suite", count=2, num_frames=8)
    checkpoint, config = tmp_path / "small.pt", tmp_path / "small.json"
    torch.save({"model": build_random_model(small_config(112)).checkpoint_state()}, checkpoint)
    small_config(112).to_json(config)
    out = tmp_path / "out"
    args = ["bench", str(dataset), "--backend", "sam3", "--checkpoint", str(checkpoint),
            "--config", str(config), "--device", "cpu", "--set", "P=1", "--out", str(out)]
    assert main(args) == 0
    rows = {r["run"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(rows) == {"sam2long-P=1", "greedy"}
    assert all(row["videos"] == 2 for row in rows.values())
    recorded = json.loads((out / "runs" / "greedy" / "run.json").read_text())
    assert recorded["backend"] == "sam3" and recorded["config"] == str(config)
