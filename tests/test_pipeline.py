"""The run layer: one composition rule, every front end giving the same id maps, output
errors as one line with exit code 2."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import treemem
from treemem import Predictor
from treemem.backends.synthetic_video import SyntheticVideo, make_suite, make_video
from treemem.cli import main
from treemem.io.masks import read_mask
from treemem.pipeline.frames import ObjectMask, compose_ids

pytest.importorskip("PIL.Image")


def reference_compose(objects: list[int], logits: np.ndarray) -> np.ndarray:
    """sam2's rule written the way sam2 writes it: argmax over objects (first on ties),
    the others clamped to -10, threshold > 0, then painted in descending id order."""
    winner = np.argmax(logits, axis=0)
    kept = np.where(np.arange(len(objects))[:, None, None] == winner, logits,
                    np.minimum(logits, -10.0))
    ids = np.zeros(logits.shape[1:], np.uint8)
    for index in sorted(range(len(objects)), key=lambda i: -objects[i]):
        ids[kept[index] > 0] = objects[index]
    return ids


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(-3, 3), min_size=n * 12, max_size=n * 12),
            st.lists(st.integers(1, 255), min_size=n, max_size=n, unique=True),
        )
    )
)
def test_compose_ids_equals_sam2s_non_overlap_rule(case: tuple[int, list[int], list[int]]) -> None:
    """Small integer logits make ties and zeros common: both are where rules differ."""
    count, values, ids = case
    objects = sorted(ids)
    logits = np.array(values, np.float32).reshape(count, 3, 4) / 2
    masks = [ObjectMask.from_logits(layer) for layer in logits]
    assert np.array_equal(compose_ids(objects, masks), reference_compose(objects, logits))


def test_compose_ids_highest_logit_then_lower_id() -> None:
    low = np.array([[2.0, 1.0, 1.0, -1.0]], np.float32)
    high = np.array([[1.0, 2.0, 1.0, -2.0]], np.float32)
    ids = compose_ids([3, 5], [ObjectMask.from_logits(low), ObjectMask.from_logits(high)])
    assert ids.tolist() == [[3, 5, 3, 0]]
    with pytest.raises(ValueError, match="ascending"):
        compose_ids([5, 3], [ObjectMask.from_logits(low), ObjectMask.from_logits(high)])
    with pytest.raises(ValueError, match="palette"):
        compose_ids([256], [ObjectMask.from_logits(low)])


# --- every route, the same masks --------------------------------------------------------------


def routes(
    video: SyntheticVideo, folder: Path, tmp_path: Path, strategy: str
) -> dict[str, np.ndarray]:
    """The id maps of track(), Predictor (non-overlap), treemem run and treemem bench."""
    found: dict[str, np.ndarray] = {}
    found["track"] = np.array(treemem.track(video, video.first_frame_prompts(), strategy).masks)
    predictor = Predictor("synthetic", strategy, non_overlap_masks=True)
    with predictor.init_state(video) as state:
        for prompt in video.first_frame_prompts():
            predictor.add_new_mask(state, 0, prompt.obj, prompt.mask)
        ids = np.zeros(video.gt.shape, np.uint8)
        for frame, obj_ids, masks in predictor.propagate_in_video(state):
            for obj, mask in zip(obj_ids, masks, strict=True):
                assert not ids[frame][mask].any()  # non-overlapping
                ids[frame][mask] = obj
        found["predictor"] = ids
    out = tmp_path / f"run-{strategy}"
    code = main(["run", str(folder), "--backend", "synthetic", "--mask",
                 str(folder / "gt" / "00000.png"), "--strategy", strategy, "--out", str(out),
                 "--no-progress"])
    assert code == 0
    found["run"] = np.stack([read_mask(p) for p in sorted((out / "masks").glob("*.png"))])
    bench = tmp_path / f"bench-{strategy}"
    assert main(["bench", str(folder.parent), "--strategy", strategy, "--out", str(bench)]) == 0
    pred = bench / "runs" / strategy / "pred" / folder.name
    found["bench"] = np.stack([read_mask(p) for p in sorted(pred.glob("*.png"))])
    return found


@pytest.mark.parametrize("strategy", ["sam2long", "greedy"])
def test_every_route_writes_the_same_id_maps_on_the_synthetic_suite(
    tmp_path: Path, strategy: str
) -> None:
    videos = make_suite(seed=3, count=3, num_frames=16, num_objects=2)
    contested = 0
    for index, video in enumerate(videos):
        folder = video.save(tmp_path / "suite" / f"video_{index:03d}")
        # every video in the dataset folder is benched; keep one per call
        for other in (tmp_path / "suite").iterdir():
            if other != folder:
                other.rename(tmp_path / f"parked_{other.name}")
        found = routes(video, folder, tmp_path / f"v{index}", strategy)
        for name, ids in found.items():
            assert np.array_equal(ids, found["track"]), (strategy, index, name)
        contested += overlapping_pixels(video, strategy)
        for parked in tmp_path.glob("parked_*"):
            parked.rename(tmp_path / "suite" / parked.name.removeprefix("parked_"))
    assert contested > 0  # the objects' masks do overlap: the rule was exercised


def overlapping_pixels(video: SyntheticVideo, strategy: str) -> int:
    """Pixels two objects claim, from the predictor's per-object (overlapping) masks."""
    predictor = Predictor("synthetic", strategy)
    with predictor.init_state(video) as state:
        for prompt in video.first_frame_prompts():
            predictor.add_new_mask(state, 0, prompt.obj, prompt.mask)
        return sum(int((masks.sum(axis=0) > 1).sum())
                   for _, _, masks in predictor.propagate_in_video(state))


# --- output errors ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(2, num_frames=8, height=48, width=64).save(
        tmp_path_factory.mktemp("video") / "v"
    )


def run_args(video: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(video), "--backend", "synthetic", "--mask", str(video / "gt" / "00000.png"),
            "--out", str(out), "--no-progress", *extra]


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_run_into_a_path_under_a_file(saved: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code = main(run_args(saved, afile / "x"))
    one_line_error(capsys, code, str(afile), "is a file")


@pytest.mark.parametrize("command", ["run", "bench"])
def test_output_that_cannot_be_made(saved: Path, tmp_path: Path, command: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "locked" / "out"
    args = run_args(saved, out)
    if command == "bench":
        args = ["bench", str(saved.parent), "--strategy", "greedy", "--out", str(out)]

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    one_line_error(capsys, main(args), "cannot create", "Permission denied")


def full_disk_after(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PNG writer raises ENOSPC after `count` frames, as a full disk does."""
    import treemem.pipeline.sinks as sinks

    real = sinks.write_palette_png
    calls = [0]

    def write(path: Path, ids: np.ndarray) -> None:
        calls[0] += 1
        if calls[0] > count:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, ids)

    monkeypatch.setattr(sinks, "write_palette_png", write)


def test_run_on_a_full_disk_is_one_line_and_resumes(saved: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference = tmp_path / "reference"
    assert main(run_args(saved, reference)) == 0
    out = tmp_path / "full"
    with monkeypatch.context() as patch:
        full_disk_after(3, patch)
        code = main(run_args(saved, out))
    one_line_error(capsys, code, "No space left on device", "00003.png", "--resume")
    assert not (out / "run.json").exists() and (out / "run.partial.json").exists()
    assert main(run_args(saved, out, "--resume")) == 0
    for png in sorted((reference / "masks").glob("*.png")):
        assert (out / "masks" / png.name).read_bytes() == png.read_bytes()
    assert (out / "tree.jsonl").read_bytes() == (reference / "tree.jsonl").read_bytes()


def test_bench_on_a_full_disk_is_one_line_per_video_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = tmp_path / "data"
    make_video(5, num_frames=8, height=32, width=48).save(dataset / "video_000")
    out = tmp_path / "bench"
    with monkeypatch.context() as patch:
        full_disk_after(2, patch)
        code = main(["bench", str(dataset), "--strategy", "greedy", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert main(["bench", str(dataset), "--strategy", "greedy", "--out", str(out)]) == 0
    result = json.loads((out / "runs" / "greedy" / "results" / "video_000.json").read_text())
    assert result["tracked_frames"] == 8


def test_bench_out_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "data"
    make_video(5, num_frames=8, height=32, width=48).save(dataset / "video_000")
    afile = tmp_path / "afile"
    afile.write_text("x")
    code = main(["bench", str(dataset), "--strategy", "greedy", "--out", str(afile / "x")])
    one_line_error(capsys, code, str(afile))


@pytest.mark.parametrize(
    "command",
    [
        ["tree", "RUN", "--out", "AFILE/tree.png"],
        ["tree", "RUN", "--graphml", "AFILE/tree.graphml"],
        ["tree", "RUN", "--json", "AFILE/tree.json"],
        ["overlay", "RUN", "--video", "FRAMES", "--out", "AFILE/overlay.mp4"],
        ["overlay", "RUN", "--video", "FRAMES", "--montage", "AFILE/montage.png"],
    ],
)
def test_figures_out_under_a_file(saved: Path, tmp_path: Path, command: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(run_args(saved, run)) == 0
    capsys.readouterr()
    afile = tmp_path / "afile"
    afile.write_text("x")
    places = {"RUN": str(run), "FRAMES": str(saved / "frames"), "AFILE": str(afile)}
    for name, place in places.items():
        command = [part.replace(name, place) for part in command]
    one_line_error(capsys, main(command), str(afile), "is a file")


@pytest.mark.parametrize(
    ("module", "function", "command"),
    [
        ("treemem.viz.tree_figure", "save_figure", ["tree", "RUN", "--out", "OUT/tree.png"]),
        ("treemem.viz.tree_export", "export_graphml",
         ["tree", "RUN", "--graphml", "OUT/tree.graphml"]),
        ("treemem.viz.overlay", "write_video",
         ["overlay", "RUN", "--video", "FRAMES", "--out", "OUT/overlay.mp4"]),
    ],
)
def test_figures_on_a_full_disk(saved: Path, tmp_path: Path, module: str, function: str,
                                command: list[str], capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    run = tmp_path / "run"
    assert main(run_args(saved, run)) == 0
    capsys.readouterr()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(importlib.import_module(module), function, full)
    places = {"RUN": str(run), "FRAMES": str(saved / "frames"), "OUT": str(tmp_path)}
    for name, place in places.items():
        command = [part.replace(name, place) for part in command]
    one_line_error(capsys, main(command), "No space left on device", str(tmp_path))
