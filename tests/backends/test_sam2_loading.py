"""Checkpoint and config handling, and SAM 2 (not only 2.1) configs against sam2's predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treemem import Engine, Prompt, load_strategy
from treemem.cli import main
from treemem.types import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import (  # noqa: E402
    Sam2Backend,
    build_random_model,
    config_for_checkpoint,
    resolve_config,
)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("sam2.1_hiera_tiny.pt", "configs/sam2.1/sam2.1_hiera_t.yaml"),
        ("sam2.1_hiera_small.pt", "configs/sam2.1/sam2.1_hiera_s.yaml"),
        ("sam2.1_hiera_base_plus.pt", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
        ("sam2.1_hiera_large.pt", "configs/sam2.1/sam2.1_hiera_l.yaml"),
        ("sam2_hiera_tiny.pt", "configs/sam2/sam2_hiera_t.yaml"),
        ("sam2_hiera_small.pt", "configs/sam2/sam2_hiera_s.yaml"),
        ("sam2_hiera_base_plus.pt", "configs/sam2/sam2_hiera_b+.yaml"),
        ("my-run/SAM2_HIERA_LARGE.PT", "configs/sam2/sam2_hiera_l.yaml"),
    ],
)
def test_config_from_checkpoint_name(name: str, config: str) -> None:
    assert config_for_checkpoint(Path(name)) == config


def test_unrecognised_checkpoint_name_asks_for_config() -> None:
    with pytest.raises(ConfigError, match="--config"):
        config_for_checkpoint(Path("weights.pt"))


def test_sam2_v2_0_tiny_greedy_equals_predictor(oracle_frames: tuple) -> None:
    """SAM 2 (2.0) configs differ in pointer and no-object flags; the backend follows them."""
    folder, read, mask = oracle_frames
    model = build_random_model("configs/sam2/sam2_hiera_t.yaml", seed=7, image_size=128)
    state = model.init_state(video_path=str(folder))
    model.add_new_mask(state, 0, 1, mask)
    expected = {
        f: (logits[0, 0] > 0).cpu().numpy() for f, _, logits in model.propagate_in_video(state)
    }
    backend = Sam2Backend(model, read, 10, mask.shape)
    engine = Engine(load_strategy("greedy"), backend)
    for decision in engine.run([Prompt(1, 0, mask=mask)], range(backend.num_frames)):
        assert np.array_equal((backend.mask_logits(decision.node) > 0), expected[decision.frame])


def _two_frames_and_a_tiny_checkpoint(
    folder: Path, name: str, image_size: int
) -> tuple[Path, Path]:
    """A 2-frame 64x64 JPEG folder and a seeded random-weight tiny checkpoint named `name`."""
    from PIL import Image

    frames = folder / "frames"
    frames.mkdir()
    for index in range(2):
        Image.fromarray(np.full((64, 64, 3), 40 * index, np.uint8)).save(
            frames / f"{index:05d}.jpg"
        )
    checkpoint = folder / name
    torch.manual_seed(0)
    torch.save({"model": build_random_model(image_size=image_size).state_dict()}, checkpoint)
    return frames, checkpoint


def test_checkpoint_of_another_size_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny checkpoint named as a small one: a config/checkpoint mismatch, exit code 2."""
    frames, checkpoint = _two_frames_and_a_tiny_checkpoint(tmp_path, "sam2.1_hiera_small.pt", 128)
    code = main(
        [
            "run",
            str(frames),
            "--box",
            "10,10,40,40",
            "--checkpoint",
            str(checkpoint),
            "--image-size",
            "128",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "does not match config configs/sam2.1/sam2.1_hiera_s.yaml" in err[0]


def test_greedy_box_and_points_prompts_equal_predictor(oracle_frames: tuple) -> None:
    folder, read, mask = oracle_frames
    model = build_random_model(seed=8, image_size=128)
    state = model.init_state(video_path=str(folder))
    model.add_new_points_or_box(state, 0, 1, box=np.array([60, 80, 150, 170], np.float32))
    model.add_new_points_or_box(
        state, 0, 2, points=np.array([[200, 40], [30, 30]], np.float32), labels=np.array([1, 0])
    )
    expected = {
        (f, obj): (logits[i, 0] > 0).cpu().numpy()
        for f, ids, logits in model.propagate_in_video(state)
        for i, obj in enumerate(ids)
    }
    backend = Sam2Backend(model, read, 10, mask.shape)
    engine = Engine(load_strategy("greedy"), backend)
    prompts = [
        Prompt(1, 0, box=(60, 80, 150, 170)),
        Prompt(2, 0, points=((200, 40), (30, 30)), labels=(1, 0)),
    ]
    decisions = list(engine.run(prompts, range(backend.num_frames)))
    assert len(decisions) == 20
    for decision in decisions:
        mask = backend.mask_logits(decision.node) > 0
        assert np.array_equal(mask, expected[(decision.frame, decision.obj)])


@pytest.mark.parametrize(
    "given",
    [
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        "sam2.1/sam2.1_hiera_t.yaml",
        "sam2.1_hiera_t.yaml",
        "sam2.1_hiera_t",
        "sam2.1_hiera_tiny",
    ],
)
def test_config_names_as_sam2_users_write_them(given: str) -> None:
    assert resolve_config(given) == "configs/sam2.1/sam2.1_hiera_t.yaml"


def test_config_names_resolve_for_every_size_and_version() -> None:
    assert resolve_config("sam2_hiera_b+") == "configs/sam2/sam2_hiera_b+.yaml"
    assert resolve_config("sam2.1_hiera_large.yaml") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert resolve_config("configs/my/own.yaml") == "configs/my/own.yaml"  # passed as given
    with pytest.raises(ConfigError, match="two versions"):
        resolve_config("sam2/sam2.1_hiera_t.yaml")


def test_run_takes_a_short_config_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--config sam2.1_hiera_t.yaml` (refused as unknown before) loads the tiny model."""
    frames, checkpoint = _two_frames_and_a_tiny_checkpoint(tmp_path, "weights.pt", 64)
    code = main(["run", str(frames), "--box", "10,10,40,40", "--checkpoint", str(checkpoint),
                 "--config", "sam2.1_hiera_t.yaml", "--image-size", "64", "--device", "cpu",
                 "--strategy", "greedy", "--out", str(tmp_path / "out"), "--no-progress"])
    capsys.readouterr()
    assert code == 0 and len(list((tmp_path / "out" / "masks").glob("*.png"))) == 2
