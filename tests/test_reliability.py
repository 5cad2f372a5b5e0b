"""Reliability: a run killed (SIGKILL) or interrupted (SIGINT) at a random frame and resumed
gives the uninterrupted run's files byte for byte; same inputs and seed give the same output;
bad checkpoints and non-finite backend scores are handled (issue 6)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest

from treemem.backends.synthetic_video import make_video
from treemem.cli import main
from treemem.resume import PARTIAL

pytest.importorskip("PIL.Image")

FRAMES = 300
TIMING_FIELDS = ("seconds", "fps")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-frame two-object synthetic video: long enough to kill a run part-way."""
    folder = tmp_path_factory.mktemp("synthetic") / "video"
    make_video(11, num_frames=FRAMES, height=48, width=64, num_objects=2).save(folder)
    return folder


def run_args(video: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(video), "--backend", "synthetic", "--mask", str(video / "gt" / "00000.png"),
            "--set", "P=3", "--out", str(out), "--no-progress", *extra]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a run folder (relative path -> bytes), run.json without its timings."""
    files: dict[str, bytes] = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(out))] = path.read_bytes()
    summary = json.loads(files.pop("run.json"))
    for field in TIMING_FIELDS:
        summary.pop(field)
    files["run.json (timings removed)"] = json.dumps(summary, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def reference(long_video: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(run_args(long_video, out)) == 0
    assert not (out / PARTIAL).exists()
    return snapshot(out)


def default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt
    even when the test runner was started in the background (where SIGINT is ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_stop(
    video: Path, out: Path, stop: signal.Signals, after_pngs: int
) -> tuple[int, str]:
    """Start `treemem run` in a subprocess, send `stop` once `after_pngs` masks exist; returns
    the exit code and stderr. Fails if the run finished before it could be stopped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "treemem.cli", *run_args(video, out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    masks = out / "masks"
    deadline = time.monotonic() + 60
    try:
        while not (masks.is_dir() and sum(1 for _ in masks.glob("*.png")) >= after_pngs):
            assert process.poll() is None, f"run ended before the signal: {process.stderr}"
            assert time.monotonic() < deadline, "no masks appeared within 60 s"
            time.sleep(0.001)  # polling interval, not synchronisation
        os.kill(process.pid, stop)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (out / "run.json").exists(), "the run finished before it was stopped"
    assert (out / PARTIAL).is_file()
    return process.returncode, stderr


@pytest.mark.parametrize("seed", [1, 2, 3])  # kill after 36, 16, 62 masks
def test_killed_run_resumes_to_identical_output(
    seed: int, long_video: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    after = random.Random(seed).randint(2, 150)
    code, _ = start_and_stop(long_video, out, signal.SIGKILL, after)
    assert code == -signal.SIGKILL
    written = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert after <= len(written) < FRAMES
    if after > 50:  # tree.jsonl is flushed every 50 frames: a partial tree is on disk
        assert (out / "tree.jsonl").stat().st_size > 0

    # Without --resume the unfinished run is refused, not silently replaced.
    assert main(run_args(long_video, out)) == 2
    assert main(run_args(long_video, out, "--resume")) == 0
    assert not (out / PARTIAL).exists()
    assert snapshot(out) == reference


def test_ctrl_c_stops_cleanly_and_leaves_a_resumable_run(
    long_video: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, stderr = start_and_stop(long_video, out, signal.SIGINT, 10)
    assert code == 130
    assert stderr.strip().splitlines() == [stderr.strip()], stderr  # one line, no traceback
    assert "--resume" in stderr and "interrupted" in stderr
    assert not list((out / "masks").glob(".*.tmp"))  # no half-written file left
    assert main(run_args(long_video, out, "--resume")) == 0
    assert snapshot(out) == reference


def test_resume_replaces_a_wrong_mask_and_clears_stray_temporaries(
    long_video: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    """A PNG that differs from the recomputed mask is rewritten; a stray temporary file from
    a killed atomic write is removed."""
    out = tmp_path / "run"
    code, _ = start_and_stop(long_video, out, signal.SIGKILL, 5)
    assert code == -signal.SIGKILL
    from treemem.io.masks import write_palette_png

    write_palette_png(out / "masks" / "00001.png", np.full((48, 64), 7, np.uint8))
    (out / "masks" / ".00009.png.abc.tmp").write_bytes(b"half")
    assert main(run_args(long_video, out, "--resume")) == 0
    assert snapshot(out) == reference


def test_resume_refuses_other_settings_and_finished_runs(
    long_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _ = start_and_stop(long_video, out, signal.SIGKILL, 3)
    assert code == -signal.SIGKILL
    capsys.readouterr()
    assert main([*run_args(long_video, out, "--resume"), "--set", "P=2"]) == 2
    err = capsys.readouterr().err
    assert "parameters.pathways: 3 -> 2" in err and err.count("\n") == 1, err
    other_mask = run_args(long_video, out, "--resume")
    other_mask[other_mask.index("--mask") + 1] = str(long_video / "gt" / "00001.png")
    assert main(other_mask) == 2
    assert "prompts: the prompt masks" in capsys.readouterr().err
    assert main(run_args(long_video, out, "--resume", "--overwrite")) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(run_args(long_video, out, "--resume")) == 0
    assert main(run_args(long_video, out, "--resume")) == 2
    assert "finished run" in capsys.readouterr().err


def test_resume_of_an_empty_folder_is_a_fresh_run(
    long_video: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert main(run_args(long_video, out, "--resume")) == 0
    assert snapshot(out) == reference


def test_resume_refuses_a_folder_without_its_settings(long_video: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    (out / "masks").mkdir(parents=True)
    assert main(run_args(long_video, out, "--resume")) == 2
    assert f"no {PARTIAL}" in capsys.readouterr().err


# --- determinism -----------------------------------------------------------------------------


def test_synthetic_same_seed_same_output_other_seed_other_output(
    long_video: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    assert main(run_args(long_video, tmp_path / "again")) == 0
    assert snapshot(tmp_path / "again") == reference
    assert main(run_args(long_video, tmp_path / "seed1", "--seed", "1")) == 0
    other = snapshot(tmp_path / "seed1")
    assert other["tree.jsonl"] != reference["tree.jsonl"]  # the seed reaches the backend


SAM2_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "bedroom.mp4"
SAM2_BOX = "25,10,50,35"  # on the 4x-downsampled 135x240 clip


@pytest.fixture(scope="module")
def sam2_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """4 frames of bedroom.mp4 (read with treemem.io.video, downsampled 4x) as a frame folder,
    and a random-weight SAM 2.1 tiny checkpoint at image size 128."""
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    pytest.importorskip("av")
    import torch
    from PIL import Image

    from treemem.backends.sam2 import build_random_model
    from treemem.io.video import open_video

    if not SAM2_VIDEO.is_file():
        pytest.skip(f"shared test video missing: {SAM2_VIDEO}")
    root = tmp_path_factory.mktemp("sam2")
    frames = root / "frames"
    frames.mkdir()
    with open_video(SAM2_VIDEO) as video:
        for index in range(4):
            Image.fromarray(video.read(index)[::4, ::4]).save(frames / f"{index:05d}.png")
    checkpoint = root / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_random_model(image_size=128).state_dict()}, checkpoint)
    return frames, checkpoint


def sam2_args(clip: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    frames, checkpoint = clip
    return ["run", str(frames), "--backend", "sam2", "--checkpoint", str(checkpoint),
            "--image-size", "128", "--device", "cpu", "--box", SAM2_BOX, "--set", "P=2",
            "--max-lag", "0", "--out", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def sam2_reference(
    sam2_clip: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("sam2_reference") / "run"
    assert main(sam2_args(sam2_clip, out)) == 0
    assert len(list((out / "masks").glob("*.png"))) == 4
    return snapshot(out)


def test_sam2_random_weights_same_inputs_same_output(
    sam2_clip: tuple[Path, Path], sam2_reference: dict[str, bytes], tmp_path: Path
) -> None:
    assert main(sam2_args(sam2_clip, tmp_path / "again")) == 0
    assert snapshot(tmp_path / "again") == sam2_reference


def test_sam2_interrupted_run_resumes_to_identical_output(
    sam2_clip: tuple[Path, Path],
    sam2_reference: dict[str, bytes],
    tmp_path: Path,
    interrupted_at: Callable[[int], AbstractContextManager[None]],
) -> None:
    """Ctrl-C (KeyboardInterrupt) arrives while frame 2 is encoded; --resume finishes the run
    with the uninterrupted run's files (--max-lag 0: frames 0 and 1 are written by then)."""
    out = tmp_path / "run"
    with interrupted_at(2):
        assert main(sam2_args(sam2_clip, out)) == 130
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert main(sam2_args(sam2_clip, out, "--resume")) == 0
    assert snapshot(out) == sam2_reference


# --- bad input -------------------------------------------------------------------------------
# Covered elsewhere: prompt masks, boxes, points, strategy names, --set keys, P < 1,
# delta_iou, existing runs, missing checkpoints and videos (tests/test_cli.py); mp4s cut in
# half, truncated or corrupt, frame folders with mixed sizes or other files (tests/io).


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("w_low=1.2", "w_low (1.2) must be <= w_high (1.05)"),
        ("delta_iou=-0.1", "delta_iou must be in [0, 1]"),
        ("P=-3", "pathways must be >= 1"),
    ],
)
def test_out_of_range_parameters_are_exit_2(
    setting: str, expected: str, long_video: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert main([*run_args(long_video, out), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_checkpoints_are_refused_with_the_fix(
    sam2_clip: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Truncated, foreign and mismatched checkpoints: InputError naming the problem (direct
    and through `treemem run`, which then writes nothing)."""
    import torch

    from treemem.backends.sam2 import build_random_model, load_checkpoint
    from treemem.types import InputError

    _, good = sam2_clip
    config = "configs/sam2.1/sam2.1_hiera_t.yaml"
    model = build_random_model(image_size=128)
    load_checkpoint(model, good, config)  # the good one loads

    truncated = tmp_path / "sam2.1_hiera_tiny.pt"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {"a": torch.zeros(1)}}, foreign)
    state = torch.load(good, weights_only=True)["model"]
    name = next(iter(state))
    state[name] = torch.zeros(3, 3)
    mismatched = tmp_path / "mismatched.pt"
    torch.save({"model": state}, mismatched)
    for path, expected in (
        (truncated, "truncated"),
        (foreign, "no 'model' state dict"),
        (mismatched, f"does not match config {config}"),
    ):
        with pytest.raises(InputError, match=expected):
            load_checkpoint(model, path, config)

    out = tmp_path / "out"
    frames, _ = sam2_clip
    code = main(["run", str(frames), "--checkpoint", str(truncated), "--image-size", "128",
                 "--device", "cpu", "--box", SAM2_BOX, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "truncated" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_non_finite_scores_are_rejected_logged_and_the_run_goes_on(
    long_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A backend answering NaN IoUs and inf occlusion logits on some rows: those candidates
    are rejected, a warning is logged, and every frame is still written."""
    import treemem.pipeline.inputs as inputs
    from treemem.types import Proposals

    open_synthetic = inputs._open_synthetic

    def poisoned(video: object, spec: object) -> object:
        opened = open_synthetic(video, spec)  # type: ignore[arg-type]
        backend = opened.backend
        propose = backend.propose
        calls = [0]

        def propose_with_non_finite(
            features: object, queries: object, options: object
        ) -> Proposals:
            proposals = propose(features, queries, options)
            iou, occlusion = proposals.iou.copy(), proposals.occlusion.copy()
            calls[0] += 1
            if calls[0] % 3 == 0:
                iou[0, -1] = np.nan
                if iou.shape[0] > 1:
                    occlusion[-1] = np.inf
            return Proposals(iou, occlusion, proposals.boxes, proposals.batch)

        backend.propose = propose_with_non_finite  # type: ignore[method-assign]
        return opened

    monkeypatch.setattr(inputs, "_open_synthetic", poisoned)
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="treemem.engine"):
        assert main(run_args(long_video, out)) == 0
    summary = json.loads((out / "run.json").read_text())
    assert summary["rejected_candidates"] > 0 and summary["frames"] == FRAMES
    assert any("non-finite" in record.getMessage() for record in caplog.records)
