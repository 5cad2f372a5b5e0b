"""`dtype` on the SAM 2 backend (`--dtype`, `track(dtype=...)`, `Sam2Backend(autocast=...)`):
fp32 is today's code path bit for bit, with no autocast entered; bf16 runs the model under
CPU autocast through `treemem run` and `track()`, its masks close to fp32's (random-weight
SAM 2.1 tiny at 64 px, 4 frames: bf16 agrees with fp32 on 99.8% of pixels, fp16 on 99.97%);
greedy under bf16 equals sam2's own predictor under the same autocast, bit for bit."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest

import treemem
from treemem import Engine, Prompt, load_strategy
from treemem.backends.synthetic_video import make_video
from treemem.cli import main
from treemem.io.masks import read_mask, write_palette_png
from treemem.resume import PARTIAL
from treemem.types import ConfigError

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, autocast_dtype, build_random_model  # noqa: E402

SIZE = 64
FRAMES = 4
AGREEMENT = 0.95  # measured 0.998 (bf16 vs fp32 pixels, frames after the prompt)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, torch_threads: None) -> dict[str, object]:
    """4 synthetic frames as a PNG folder, the first frame's mask, a random-weight model and
    its checkpoint."""
    from PIL import Image

    video = make_video(3, num_frames=8, height=72, width=96)
    root = tmp_path_factory.mktemp("dtype")
    frames = root / "frames"
    frames.mkdir()
    for index in range(FRAMES):
        Image.fromarray(video.frames[index]).save(frames / f"{index:05d}.png")
    write_palette_png(root / "mask.png", video.gt[0])
    model = build_random_model(image_size=SIZE)
    checkpoint = root / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"root": root, "frames": frames, "array": video.frames[:FRAMES],
            "mask": video.gt[0], "model": model, "checkpoint": checkpoint}


def run_args(clip: dict[str, object], out: Path, *extra: str) -> list[str]:
    return ["run", str(clip["frames"]), "--checkpoint", str(clip["checkpoint"]),
            "--image-size", str(SIZE), "--device", "cpu", "--mask",
            str(Path(str(clip["root"])) / "mask.png"), "--set", "P=2", "--out", str(out),
            "--no-progress", *extra]


def png_masks(out: Path) -> np.ndarray:
    return np.stack([read_mask(out / "masks" / f"{i:05d}.png") for i in range(FRAMES)])


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal pixels on the tracked frames (the prompt frame is the prompt)."""
    return float((a[1:] == b[1:]).mean())


def engine_logits(
    clip: dict[str, object], **options: object
) -> tuple[list[np.ndarray], list[torch.Tensor], list[bool]]:
    """sam2long P=2 on the array frames: every decision's video-size and low-res logits, and
    whether autocast was on in each image-encoder call."""
    frames = np.asarray(clip["array"])
    model = clip["model"]
    autocast_on: list[bool] = []
    forward_image = model.forward_image  # type: ignore[attr-defined]

    def recording(image: torch.Tensor) -> object:
        autocast_on.append(torch.is_autocast_enabled("cpu"))
        return forward_image(image)

    backend = Sam2Backend(model, lambda i: frames[i], FRAMES, frames.shape[1:3], **options)
    engine = Engine(load_strategy("sam2long", {"P": 2}), backend)
    model.forward_image = recording  # type: ignore[attr-defined]
    try:
        decisions = list(engine.run([Prompt(1, 0, mask=np.asarray(clip["mask"]) == 1)],
                                    range(backend.num_frames)))
    finally:
        del model.forward_image  # type: ignore[attr-defined]
    full = [backend.mask_logits(d.node) for d in decisions]
    low = [backend.logits(d.node) for d in decisions]
    return full, low, autocast_on


def test_fp32_through_the_option_is_the_default_bit_for_bit(clip: dict[str, object]) -> None:
    default_full, default_low, default_on = engine_logits(clip)
    fp32_full, fp32_low, fp32_on = engine_logits(clip, autocast=autocast_dtype("fp32"))
    assert all(np.array_equal(a, b) for a, b in zip(default_full, fp32_full, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(default_low, fp32_low, strict=True))
    assert not any(default_on) and not any(fp32_on)  # no autocast context in fp32
    bf16_full, _, bf16_on = engine_logits(clip, autocast=torch.bfloat16)
    assert all(bf16_on) and len(bf16_on) == FRAMES
    assert all(logits.dtype == np.float32 for logits in bf16_full)  # handed out as float32
    options = {"backend": "sam2", "model": clip["model"], "overrides": {"P": 2}}
    by_default = treemem.track(clip["array"], clip["mask"], "sam2long", **options)
    by_option = treemem.track(clip["array"], clip["mask"], "sam2long", dtype="fp32", **options)
    assert np.array_equal(by_default.masks, by_option.masks)


def test_bf16_through_treemem_run_and_track_is_close_to_fp32(
    clip: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run_args(clip, tmp_path / "fp32")) == 0
    assert main(run_args(clip, tmp_path / "bf16", "--dtype", "bf16")) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert summary["backend"]["dtype"] == "bf16"
    fp32, bf16 = png_masks(tmp_path / "fp32"), png_masks(tmp_path / "bf16")
    assert agreement(bf16, fp32) >= AGREEMENT
    tracked = treemem.track(clip["frames"], Path(str(clip["root"])) / "mask.png", "sam2long",
                            overrides={"P": 2}, checkpoint=clip["checkpoint"], image_size=SIZE,
                            device="cpu", dtype="bf16")
    assert np.array_equal(tracked.masks, bf16)  # one implementation behind both


def test_resume_with_another_dtype_is_refused(
    clip: dict[str, object],
    tmp_path: Path,
    interrupted_at: Callable[[int], AbstractContextManager[None]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bf16 run interrupted on frame 2 (KeyboardInterrupt in encode) resumes only as bf16."""
    out = tmp_path / "run"
    with interrupted_at(2):
        assert main(run_args(clip, out, "--dtype", "bf16", "--max-lag", "0")) == 130
    assert (out / PARTIAL).is_file()
    capsys.readouterr()
    assert main(run_args(clip, out, "--resume", "--max-lag", "0")) == 2
    err = capsys.readouterr().err
    assert 'backend.dtype: "bf16" -> "fp32"' in err and err.count("\n") == 1, err


def test_a_dtype_torch_cannot_autocast_is_one_config_error(clip: dict[str, object]) -> None:
    """torch's CPU autocast takes bfloat16 and float16 (torch 2.13); any other dtype would be
    silently disabled by torch, so the backend refuses it. fp16 on the CPU is refused the same
    way on a torch whose CPU autocast lacks it."""
    frames = np.asarray(clip["array"])
    with pytest.raises(ConfigError, match=r"cpu autocast does not support torch\.float64") as error:
        Sam2Backend(clip["model"], lambda i: frames[i], FRAMES, frames.shape[1:3],
                    autocast=torch.float64)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="unknown dtype 'int8'"):
        autocast_dtype("int8")
    Sam2Backend(clip["model"], lambda i: frames[i], FRAMES, frames.shape[1:3],
                autocast=torch.float16)


def test_greedy_bf16_equals_sam2_predictor_under_the_same_autocast(oracle_frames: tuple) -> None:
    """sam2's predictor inside `torch.autocast("cpu", torch.bfloat16)` (as its tools run it)
    and greedy on `Sam2Backend(autocast=torch.bfloat16)` give the same logits, bit for bit
    (the shared oracle case, random weights, 128 px)."""
    folder, read, mask = oracle_frames
    model = build_random_model(seed=0, image_size=128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.init_state(video_path=str(folder))
        model.add_new_mask(state, 0, 1, mask)
        reference = {f: logits[0, 0].clone() for f, _, logits in model.propagate_in_video(state)}
    backend = Sam2Backend(model, read, len(reference), mask.shape, autocast=torch.bfloat16)
    decisions = list(Engine(load_strategy("greedy"), backend).run([Prompt(1, 0, mask=mask)],
                                                                  range(backend.num_frames)))
    assert [d.frame for d in decisions] == sorted(reference)
    for decision in decisions:
        ours = torch.from_numpy(backend.mask_logits(decision.node))
        assert torch.equal(ours, reference[decision.frame]), decision.frame
