"""`treemem.sam2`, the drop-in for sam2 1.1.0's video predictor, against sam2's own.

The sequence of calls is the one of sam2's notebook `video_predictor_example.ipynb` (clicks
on frame 0, a second positive click, propagate; a negative click on a tracked frame,
propagate again; a box for a second object on a middle frame, propagation from it; reverse
propagation; remove_object; reset_state and a box alone), on a random-weight SAM 2.1 tiny
model and 8 frames of a real video. With `greedy` and `batch_like_sam2=True` every returned
tensor equals sam2's (`torch.equal`). sam2's own `tools/vos_inference.py`, with only its
builder import and device changed (tests/fixtures/sam2_tools), writes the PNGs `treemem run`
writes.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import treemem
from treemem import Prompt
from treemem.cli import main
from treemem.io.masks import read_mask, write_palette_png

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

import sam2.build_sam  # noqa: E402
from sam2.sam2_video_predictor import SAM2VideoPredictor as Sam2Reference  # noqa: E402

from treemem.backends.sam2.loading import image_size_overrides  # noqa: E402
from treemem.sam2 import (  # noqa: E402
    SAM2VideoPredictor,
    build_sam2_video_predictor,
)

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
IMAGE_SIZE = 128
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sam2_tools"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, torch_threads: None) -> Path:
    """The first 8 frames of a real mp4 at 320x180, as JPEGs (sam2's input), cut at run time."""
    av = pytest.importorskip("av")
    source = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos" / "02_cups.mp4"
    if not source.exists():
        pytest.skip("the shared videos are not present")
    folder = tmp_path_factory.mktemp("clip")
    with av.open(str(source)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 8:
                break
            frame.to_image().resize((320, 180)).save(folder / f"{index:05d}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, torch_threads: None) -> Path:
    """A seeded random-weight SAM 2.1 tiny checkpoint in sam2's format."""
    torch.manual_seed(3)
    model = sam2.build_sam.build_sam2_video_predictor(CONFIG, None, device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def snapshot(value: Any) -> Any:
    """A deep copy of what a call returned (sam2 returns lists it later mutates)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    return value


def notebook_sequence(predictor: Any, folder: Path) -> list[tuple[str, Any]]:
    """The notebook's calls, verbatim in form; what each returned or yielded."""
    out: list[tuple[str, Any]] = []
    state = predictor.init_state(video_path=str(folder))
    predictor.reset_state(state)

    points = np.array([[110, 95]], dtype=np.float32)
    labels = np.array([1], np.int32)
    step = predictor.add_new_points_or_box(
        inference_state=state, frame_idx=0, obj_id=1, points=points, labels=labels
    )
    out.append(("click", snapshot(step)))
    points = np.array([[110, 95], [80, 120]], dtype=np.float32)
    labels = np.array([1, 1], np.int32)
    step = predictor.add_new_points_or_box(
        inference_state=state, frame_idx=0, obj_id=1, points=points, labels=labels
    )
    out.append(("second click", snapshot(step)))
    out.append(("propagate", snapshot(list(predictor.propagate_in_video(state)))))

    points = np.array([[130, 70]], dtype=np.float32)
    labels = np.array([0], np.int32)
    step = predictor.add_new_points_or_box(
        inference_state=state, frame_idx=5, obj_id=1, points=points, labels=labels
    )
    out.append(("refine a tracked frame", snapshot(step)))
    out.append(("propagate again", snapshot(list(predictor.propagate_in_video(state)))))

    box = np.array([180, 30, 300, 110], dtype=np.float32)
    step = predictor.add_new_points_or_box(
        inference_state=state, frame_idx=3, obj_id=2, box=box
    )
    out.append(("box, second object, middle frame", snapshot(step)))
    frames = list(predictor.propagate_in_video(state, start_frame_idx=3))
    out.append(("propagate from the middle frame", snapshot(frames)))
    frames = list(predictor.propagate_in_video(state, start_frame_idx=3, reverse=True))
    out.append(("reverse from the middle frame", snapshot(frames)))

    out.append(("remove_object", snapshot(predictor.remove_object(state, 2))))
    predictor.reset_state(state)
    box = np.array([40, 50, 150, 150], dtype=np.float32)
    step = predictor.add_new_points_or_box(
        inference_state=state, frame_idx=0, obj_id=4, box=box
    )
    out.append(("box alone", snapshot(step)))
    out.append(("propagate the box", snapshot(list(predictor.propagate_in_video(state)))))
    return out


def assert_identical(ours: Any, theirs: Any, where: str) -> None:
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), where
        assert ours.dtype == theirs.dtype and ours.device == theirs.device, where
        assert torch.equal(ours, theirs), (where, float((ours - theirs).abs().max()))
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_identical(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs, where


def test_greedy_equals_sam2_on_the_notebook_sequence(clip: Path, checkpoint: Path) -> None:
    overrides = image_size_overrides(IMAGE_SIZE)
    reference = sam2.build_sam.build_sam2_video_predictor(
        CONFIG, str(checkpoint), device="cpu", hydra_overrides_extra=overrides
    )
    ours = build_sam2_video_predictor(
        "sam2.1_hiera_t", checkpoint, device="cpu", hydra_overrides_extra=overrides,
        strategy="greedy", batch_like_sam2=True,
    )
    theirs = notebook_sequence(reference, clip)
    found = notebook_sequence(ours, clip)
    assert [name for name, _ in found] == [name for name, _ in theirs]
    for (name, a), (_, b) in zip(found, theirs, strict=True):
        assert_identical(a, b, name)
    steps = dict(found)
    assert [f for f, _, _ in steps["propagate"]] == list(range(8))
    assert [f for f, _, _ in steps["propagate from the middle frame"]] == list(range(3, 8))
    assert all(ids == [1, 2] for _, ids, _ in steps["propagate from the middle frame"])
    assert [f for f, _, _ in steps["reverse from the middle frame"]] == [3, 2, 1, 0]
    assert steps["propagate"][0][2].shape == (1, 1, 180, 320)
    # the refinement changed the clicked frame's mask (a check that the step is not idle)
    assert not torch.equal(steps["refine a tracked frame"][2], steps["propagate"][5][2])


def test_greedy_resumes_from_a_refined_frame_as_sam2_does(clip: Path, checkpoint: Path) -> None:
    """Propagating from the frame after a refinement click reads the refined output (sam2
    starts from its stored outputs); then a mask on a tracked frame, and clearing it."""
    overrides = image_size_overrides(IMAGE_SIZE)
    reference = sam2.build_sam.build_sam2_video_predictor(
        CONFIG, str(checkpoint), device="cpu", hydra_overrides_extra=overrides
    )
    ours = build_sam2_video_predictor(
        CONFIG, checkpoint, device="cpu", hydra_overrides_extra=overrides, strategy="greedy",
    )
    results = []
    for predictor in (reference, ours):
        state = predictor.init_state(video_path=str(clip))
        predictor.add_new_points_or_box(state, 0, 1, points=[[110, 95]], labels=[1])
        list(predictor.propagate_in_video(state, max_frame_num_to_track=3))
        refined = predictor.add_new_points_or_box(state, 3, 1, points=[[130, 70]], labels=[0])
        frames = list(predictor.propagate_in_video(state, start_frame_idx=4))
        mask = np.zeros((180, 320), bool)
        mask[60:130, 70:150] = True
        masked = predictor.add_new_mask(state, 6, 1, mask)
        cleared = predictor.clear_all_prompts_in_frame(state, 6, 1)
        results.append(snapshot([refined, frames, masked, cleared]))
    assert_identical(results[1], results[0], "resume")
    assert [f for f, _, _ in results[1][1]] == list(range(4, 8))


def test_sam2long_runs_the_sequence_and_equals_track(clip: Path, checkpoint: Path) -> None:
    predictor = build_sam2_video_predictor(
        "sam2.1/sam2.1_hiera_t.yaml", checkpoint, device="cpu",
        hydra_overrides_extra=image_size_overrides(IMAGE_SIZE), strategy="sam2long", P=3,
    )
    found = dict(notebook_sequence(predictor, clip))
    assert [f for f, _, _ in found["reverse from the middle frame"]] == [3, 2, 1, 0]
    frames = found["propagate the box"]
    assert [f for f, _, _ in frames] == list(range(8))
    expected = treemem.track(
        clip, [Prompt(4, 0, box=(40.0, 50.0, 150.0, 150.0))], strategy="sam2long",
        model=predictor.model,
    )
    for frame, ids, logits in frames:
        assert ids == [4]
        mask = (logits[0, 0] > 0).numpy()
        np.testing.assert_array_equal(mask, expected.masks[frame] == 4, err_msg=str(frame))


def test_public_methods_have_sam2s_signatures() -> None:
    for name in ("init_state", "add_new_points_or_box", "add_new_mask", "propagate_in_video",
                 "clear_all_prompts_in_frame", "reset_state", "remove_object",
                 "propagate_in_video_preflight"):
        ours = inspect.signature(getattr(SAM2VideoPredictor, name))
        theirs = inspect.signature(getattr(Sam2Reference, name))
        assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == [
            (p.name, p.default, p.kind) for p in theirs.parameters.values()
        ], name
    ours = list(inspect.signature(build_sam2_video_predictor).parameters.values())
    theirs = list(inspect.signature(sam2.build_sam.build_sam2_video_predictor).parameters.values())
    head = [(p.name, p.default) for p in theirs if p.kind is not p.VAR_KEYWORD]
    assert [(p.name, p.default) for p in ours[: len(head)]] == head
    assert ours[len(head)].name == "strategy"


def test_inference_state_answers_what_sam2_users_read(clip: Path, checkpoint: Path) -> None:
    predictor = build_sam2_video_predictor(
        "sam2.1_hiera_t", checkpoint, device="cpu",
        hydra_overrides_extra=image_size_overrides(IMAGE_SIZE), strategy="greedy",
    )
    with predictor.init_state(video_path=str(clip)) as state:
        assert (state["num_frames"], state["video_height"], state["video_width"]) == (8, 180, 320)
        assert state["obj_ids"] == [] and state["device"] == torch.device("cpu")
        with pytest.raises(KeyError, match="output_dict_per_obj"):
            state["output_dict_per_obj"]
        with pytest.raises(RuntimeError, match="No input points or masks"):
            next(predictor.propagate_in_video(state))


def _load_vos_inference() -> Any:
    spec = importlib.util.spec_from_file_location(
        "sam2_vos_inference", FIXTURES / "vos_inference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sam2s_vos_inference_writes_the_pngs_of_treemem_run(
    clip: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sam2's script at the config's own input size (1024), 3 frames, two objects.

    `--apply_postprocessing` builds the model as `treemem run` builds it (sam2's builder
    defaults: dynamic multimask, binarized click masks in memory; hole filling is a no-op
    without sam2's CUDA extension). Without it the script's model differs from treemem run's
    (seen: 41 contested pixels of 57,600 flip on frame 1 of this random-weight case)."""
    videos, annotations = tmp_path / "JPEGImages", tmp_path / "Annotations"
    (videos / "cups").mkdir(parents=True)
    for index in range(3):
        (videos / "cups" / f"{index:05d}.jpg").write_bytes(
            (clip / f"{index:05d}.jpg").read_bytes()
        )
    ids = np.zeros((180, 320), np.uint8)
    ids[50:140, 60:160] = 1
    ids[40:130, 170:260] = 2
    (annotations / "cups").mkdir(parents=True)
    write_palette_png(annotations / "cups" / "00000.png", ids)
    vos = _load_vos_inference()
    monkeypatch.setattr(sys, "argv", [
        "vos_inference.py", "--sam2_cfg", CONFIG, "--sam2_checkpoint", str(checkpoint),
        "--base_video_dir", str(videos), "--input_mask_dir", str(annotations),
        "--output_mask_dir", str(tmp_path / "sam2_out"), "--apply_postprocessing",
    ])
    vos.main()
    code = main(["run", str(videos / "cups"), "--mask", str(annotations / "cups" / "00000.png"),
                 "--checkpoint", str(checkpoint), "--device", "cpu", "--strategy", "sam2long",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    for index in range(3):
        theirs = read_mask(tmp_path / "sam2_out" / "cups" / f"{index:05d}.png")
        ours = read_mask(tmp_path / "run" / "masks" / f"{index:05d}.png")
        np.testing.assert_array_equal(theirs, ours, err_msg=str(index))
    assert set(np.unique(theirs)) - {0}, "the script wrote empty masks"
