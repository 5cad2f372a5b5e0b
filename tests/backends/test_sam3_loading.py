"""SAM 3 checkpoints and configs: the released shape is the package's own, `sam3.pt`'s layout
loads strictly, and wrong or missing files fail with one line a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.cli import main
from treemem.types import ConfigError, InputError

torch = pytest.importorskip("torch")
pytest.importorskip("sam3", reason="sam3 is not installed (pip install 'treemem[sam3]')")

from treemem.backends.sam3 import (  # noqa: E402
    RELEASED,
    Sam3Backend,
    Sam3Config,
    Sam3Tracker,
    build_random_model,
    load_model,
    resolve_config,
    small_config,
)
from treemem.backends.sam3.loading import (  # noqa: E402
    VISION_PREFIX,
    build_memory_attention,
    build_memory_encoder,
    build_vision,
    config_for_state,
    tracker_options,
)

PREDICTOR_ONLY = {
    "clear_non_cond_mem_around_input": True,
    "fill_hole_area": 0,
    "always_start_from_first_ann_frame": False,
    "non_overlap_masks_for_output": False,
}


def describe(module: Any) -> list[tuple[str, str, object]]:
    """Every submodule's type and plain settings, and the shape of every tensor it holds."""
    out: list[tuple[str, str, object]] = []
    for name, sub in module.named_modules():
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, (bool, int, float, str, tuple, list)):
                out.append((name, key, value))
            elif isinstance(value, torch.Tensor):
                out.append((name, key, tuple(value.shape)))
        out.append((name, "type", type(sub).__name__))
    out += [(name, "shape", tuple(t.shape)) for name, t in module.state_dict().items()]
    return out


@pytest.fixture
def package_builder(monkeypatch: pytest.MonkeyPatch) -> Any:
    """SAM 3's `model_builder`, its position encodings made without the CUDA precompute (the
    values are the same, computed on use): in this test only."""
    from sam3 import model_builder
    from sam3.model.position_encoding import PositionEmbeddingSine

    def no_precompute(*args: Any, precompute_resolution: Any = None, **kwargs: Any) -> Any:
        return PositionEmbeddingSine(*args, **kwargs)

    monkeypatch.setattr(model_builder, "PositionEmbeddingSine", no_precompute)
    return model_builder


class RecordedTrunk(torch.nn.Module):
    """Stands in for the ViT trunk (461 M parameters at the released size): records the
    arguments it was made with."""

    def __init__(self, **arguments: object) -> None:
        super().__init__()
        self.arguments = arguments
        self.channel_list = [arguments["embed_dim"]]


def test_released_config_builds_the_package_s_own_tracker(
    package_builder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The released shape's modules and settings are those SAM 3's own builder makes: the
    memory attention and memory encoder module by module, the ViT by its arguments, the neck
    around it, and `build_tracker`'s tracker settings."""
    assert describe(build_memory_attention(RELEASED)) == describe(
        package_builder._create_tracker_transformer()
    )
    assert describe(build_memory_encoder(RELEASED)) == describe(
        package_builder._create_tracker_maskmem_backbone()
    )
    import sam3.model.vitdet

    monkeypatch.setattr(sam3.model.vitdet, "ViT", RecordedTrunk)
    monkeypatch.setattr(package_builder, "ViT", RecordedTrunk)
    ours, theirs = build_vision(RELEASED), package_builder._create_vision_backbone()
    assert ours.trunk.arguments == theirs.trunk.arguments
    assert describe(ours) == describe(theirs)

    captured: dict[str, object] = {}

    class Capture:
        def __init__(self, **kwargs: object) -> None:
            captured.update(kwargs)

    monkeypatch.setattr(package_builder, "Sam3TrackerPredictor", Capture)
    monkeypatch.setattr(package_builder, "_create_tracker_maskmem_backbone", lambda: None)
    monkeypatch.setattr(package_builder, "_create_tracker_transformer", lambda: None)
    package_builder.build_tracker(apply_temporal_disambiguation=False)
    settings = {k: v for k, v in captured.items()
                if k not in ("backbone", "transformer", "maskmem_backbone")}
    assert settings == tracker_options(RELEASED) | PREDICTOR_ONLY


def test_released_shapes_imply_the_released_config() -> None:
    trunk = VISION_PREFIX + "trunk."
    state = {trunk + "patch_embed.proj.weight": torch.empty(1024, 3, 14, 14)}
    state |= {f"{trunk}blocks.{i}.norm1.weight": torch.empty(1024) for i in range(32)}
    assert config_for_state(state, Path("sam3.pt")) is RELEASED
    small = build_random_model(small_config(112)).checkpoint_state()
    with pytest.raises(ConfigError, match=r"2-block, 128-wide trunk.*--config"):
        config_for_state(small, Path("mine.pt"))


def test_config_names_and_files(tmp_path: Path) -> None:
    assert resolve_config("sam3") is RELEASED and resolve_config(None) is None
    path = tmp_path / "small.json"
    small_config(112).to_json(path)
    assert resolve_config(str(path)) == small_config(112)
    with pytest.raises(ConfigError, match="unknown SAM 3 config 'sam3-large'"):
        resolve_config("sam3-large")
    path.write_text(json.dumps({"image_size": 224, "depth": 2}))
    with pytest.raises(ConfigError, match=r"unknown fields \['depth'\]"):
        resolve_config(str(path))
    with pytest.raises(ConfigError, match="multiple of 14"):
        Sam3Config(image_size=100)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(str(tmp_path / "missing.json"))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Sam3Tracker]:
    """A seeded reduced model saved in sam3.pt's layout (with unread detector parts), and its
    config as JSON."""
    folder = tmp_path_factory.mktemp("sam3")
    model = build_random_model(small_config(112), seed=1)
    state = model.checkpoint_state()
    state["detector.transformer.decoder.norm.weight"] = torch.ones(256)
    torch.save({"model": state}, folder / "small.pt")
    small_config(112).to_json(folder / "small.json")
    return folder / "small.pt", folder / "small.json", model


def test_a_checkpoint_loads_strictly_onto_the_device(
    small_checkpoint: tuple[Path, Path, Sam3Tracker],
) -> None:
    checkpoint, config, original = small_checkpoint
    model = load_model(checkpoint, config=str(config), device="cpu")
    loaded, expected = model.checkpoint_state(), original.checkpoint_state()
    assert sorted(loaded) == sorted(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_wrong_and_missing_files_are_one_line(
    small_checkpoint: tuple[Path, Path, Sam3Tracker], tmp_path: Path
) -> None:
    checkpoint, _, _ = small_checkpoint
    cases: list[tuple[Path, str | None, type[Exception], str]] = []
    cases.append((tmp_path / "sam3.pt", None, InputError, "does not exist"))
    (tmp_path / "text.pt").write_text("not a checkpoint")
    cases.append((tmp_path / "text.pt", None, InputError, "not a PyTorch file"))
    torch.save({"model": {"image_encoder.trunk.weight": torch.zeros(1)}}, tmp_path / "sam2.pt")
    cases.append((tmp_path / "sam2.pt", None, InputError, "SAM 2 checkpoint: use --backend sam2"))
    cases.append((checkpoint, None, ConfigError, "--config FILE.json"))
    larger = tmp_path / "larger.json"
    small_config(224).to_json(larger)
    cases.append((checkpoint, str(larger), InputError, "does not match the SAM 3 config"))
    for path, name, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            load_model(path, config=name, device="cpu")
        assert "\n" not in str(raised.value), str(raised.value)


def _frames(folder: Path, count: int = 3) -> Path:
    from PIL import Image

    frames = folder / "frames"
    frames.mkdir()
    for index in range(count):
        Image.fromarray(np.full((48, 64, 3), 50 * index, np.uint8)).save(
            frames / f"{index:05d}.jpg"
        )
    return frames


def test_treemem_run_takes_a_sam3_checkpoint(
    small_checkpoint: tuple[Path, Path, Sam3Tracker], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`treemem run --backend sam3 --checkpoint ... --config ...` end to end; a wrong file is
    exit code 2 and one line."""
    checkpoint, config, _ = small_checkpoint
    frames = _frames(tmp_path)
    common = ["run", str(frames), "--box", "10,10,40,40", "--backend", "sam3", "--device", "cpu",
              "--strategy", "sam3-memory", "--no-progress"]
    code = main([*common, "--checkpoint", str(checkpoint), "--config", str(config),
                 "--out", str(tmp_path / "out")])
    capsys.readouterr()
    assert code == 0 and len(list((tmp_path / "out" / "masks").glob("*.png"))) == 3
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["backend"]["name"] == "sam3"
    assert summary["backend"]["checkpoint"] == str(checkpoint)

    code = main([*common, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "again")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--config FILE.json" in err[0]


def test_track_and_predictor_take_sam3(
    small_checkpoint: tuple[Path, Path, Sam3Tracker], tmp_path: Path
) -> None:
    """The API opens sam3 by name through the same opener, and equals a backend made by hand."""
    checkpoint, config, model = small_checkpoint
    frames = _frames(tmp_path)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 12:40] = True
    prompt = Prompt(1, 0, mask=mask)
    result = treemem.track(frames, [prompt], "greedy", backend="sam3", checkpoint=checkpoint,
                           config=str(config), device="cpu")
    reader = read_frames(frames)
    backend = Sam3Backend(model, reader, 3, (48, 64))
    engine = Engine(load_strategy("greedy"), backend)
    for decision in engine.run([prompt], range(3)):
        expected = backend.mask_logits(decision.node) > 0
        assert np.array_equal(result.mask(1, decision.frame), expected)

    predictor = treemem.Predictor("sam3", "greedy", checkpoint=checkpoint, config=str(config),
                                  device="cpu")
    state = predictor.init_state(frames)
    predictor.add_new_mask(state, 0, 1, mask)
    got = {frame: masks[0] for frame, _, masks in predictor.propagate_in_video(state)}
    assert all(np.array_equal(got[f], result.mask(1, f)) for f in range(3))


def read_frames(folder: Path) -> Any:
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))
    return lambda index: np.array(Image.open(files[index]).convert("RGB"))
