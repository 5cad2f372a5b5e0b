"""Backward and two-way tracking on SAM 2: `greedy` equals sam2's own
`propagate_in_video(reverse=True)` from a mid-video prompt, and `both` equals sam2's forward
and reverse propagations from that prompt, each on its own inference state.

sam2's notebook runs the reverse propagation on the state the forward one filled; then the
first reverse frames also read the forward frames just after the prompt (sam2 looks for
memories at t + 1, t + 2, ... whether they came from this propagation or not). treemem's
two searches are independent, so `both` equals the fresh-state reverse run, and the last test
shows the notebook's reverse differs from it on this case (so the comparison can fail).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from treemem import Engine, Prompt, load_strategy
from treemem.pipeline.frames import FrameStream, ObjectMask, compose_ids

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from treemem.backends.sam2 import Sam2Backend, build_random_model  # noqa: E402

SIZE = (180, 320)
PROMPT_FRAME = 6
NEAR_TIE = 1e-5
"""Logit gap below which two objects' claim on a pixel is float noise (as in
test_sam2_composition.py)."""


def _reader(folder: Path) -> tuple[Callable[[int], np.ndarray], int]:
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))

    def read(index: int) -> np.ndarray:
        return np.array(Image.open(files[index]).convert("RGB"))

    return read, len(files)


def _two_boxes() -> list[Prompt]:
    first = np.zeros(SIZE, bool)
    first[50:140, 60:160] = True
    second = np.zeros(SIZE, bool)
    second[40:130, 150:260] = True  # overlapping the first: composition decides pixels
    return [Prompt(1, PROMPT_FRAME, mask=first), Prompt(2, PROMPT_FRAME, mask=second)]


def _sam2_logits(
    model: object, folder: Path, prompts: list[Prompt], *, reverse: bool, state: object = None
) -> dict[int, torch.Tensor]:
    """Frame -> (objects, H, W) video-resolution logits of one sam2 propagation."""
    if state is None:
        state = model.init_state(video_path=str(folder))  # type: ignore[attr-defined]
        for prompt in prompts:
            model.add_new_mask(state, prompt.frame, prompt.obj, prompt.mask)  # type: ignore[attr-defined]
    run = model.propagate_in_video(  # type: ignore[attr-defined]
        state, start_frame_idx=PROMPT_FRAME, reverse=reverse
    )
    return {frame: logits[:, 0].clone() for frame, _, logits in run}


def _video_logits(backend: Sam2Backend, node: int) -> torch.Tensor:
    """A node's logits resized to the video as sam2's predictor resizes them (no cropping)."""
    return torch.nn.functional.interpolate(
        backend.logits(node), size=backend.frame_size, mode="bilinear", align_corners=False
    )[0, 0]


def test_greedy_backward_equals_sam2_reverse_bitwise(oracle_frames: tuple) -> None:
    """One object, prompt on frame 5 of 10: frames 5, 4, ..., 0 in that order, every logit
    equal to sam2's (torch.equal)."""
    folder, read, mask = oracle_frames
    model = build_random_model(seed=0, image_size=256)
    state = model.init_state(video_path=str(folder))
    model.add_new_mask(state, 5, 1, mask)
    run = model.propagate_in_video(state, start_frame_idx=5, reverse=True)
    reference = {f: logits[0, 0].clone() for f, _, logits in run}
    backend = Sam2Backend(model, read, 10, mask.shape)
    engine = Engine(load_strategy("greedy"), backend, direction="backward")
    decisions = list(engine.run([Prompt(1, 5, mask=mask)], range(5, -1, -1)))
    assert [d.frame for d in decisions] == [5, 4, 3, 2, 1, 0]
    assert set(engine.record.columns().direction.tolist()) == {"backward"}
    for decision in decisions:
        logits = _video_logits(backend, decision.node)
        assert torch.equal(logits, reference[decision.frame]), decision.frame


@pytest.fixture(scope="module")
def model() -> object:
    built = build_random_model(seed=2, image_size=256)
    built.fill_hole_area = 0
    return built


def _stream(model: object, folder: Path, direction: str, strategy: str = "greedy") -> tuple:
    read, num_frames = _reader(folder)
    backend = Sam2Backend(model, read, num_frames, SIZE)
    stream = FrameStream(backend, load_strategy(strategy), _two_boxes(), direction=direction)  # type: ignore[arg-type]
    return {r.frame: r for r in stream.frames()}, stream


def _check_against(found: dict, expected: dict[int, torch.Tensor]) -> None:
    """Per-object masks equal sam2's; composed ids equal `compose_ids` of sam2's logits
    wherever the two objects' logits are not a near-tie."""
    assert sorted(found) == sorted(expected)
    contested = 0
    for frame, logits in expected.items():
        result = found[frame]
        masks = (logits > 0).numpy()
        assert np.array_equal(result.stacked_masks(), masks), frame
        reference = compose_ids((1, 2), [ObjectMask.from_logits(x.numpy()) for x in logits])
        near_tie = masks.all(0) & ((logits[0] - logits[1]).abs() < NEAR_TIE).numpy()
        assert np.array_equal(result.ids()[~near_tie], reference[~near_tie]), frame
        contested += int((masks.all(0) & ~near_tie).sum())
    assert contested > 1000  # the objects overlap, so composition is exercised


def test_greedy_backward_two_objects_equal_sam2_reverse(model: object, cups_clip: Path) -> None:
    expected = _sam2_logits(model, cups_clip, _two_boxes(), reverse=True)
    found, _ = _stream(model, cups_clip, "backward")
    assert list(found) == list(range(PROMPT_FRAME, -1, -1))  # yielded in tracking order
    _check_against(found, expected)


def test_greedy_both_equals_sam2_forward_and_reverse(model: object, cups_clip: Path) -> None:
    forward = _sam2_logits(model, cups_clip, _two_boxes(), reverse=False)
    backward = _sam2_logits(model, cups_clip, _two_boxes(), reverse=True)
    found, stream = _stream(model, cups_clip, "both")
    assert sorted(found) == list(range(12))  # every frame once, the prompt frame too
    _check_against(found, {**backward, **forward})
    directions = stream.record.columns().direction
    assert {"forward", "backward"} == set(directions.tolist())


def test_sam2s_notebook_reverse_reads_the_forward_frames(model: object, cups_clip: Path) -> None:
    """On one state, sam2's reverse pass after a forward pass gives other masks than on a
    fresh state: `both` is compared with the fresh-state runs above for that reason."""
    prompts = _two_boxes()
    state = model.init_state(video_path=str(cups_clip))  # type: ignore[attr-defined]
    for prompt in prompts:
        model.add_new_mask(state, prompt.frame, prompt.obj, prompt.mask)  # type: ignore[attr-defined]
    _sam2_logits(model, cups_clip, prompts, reverse=False, state=state)
    notebook = _sam2_logits(model, cups_clip, prompts, reverse=True, state=state)
    fresh = _sam2_logits(model, cups_clip, prompts, reverse=True)
    differing = [f for f in fresh if not torch.equal(notebook[f], fresh[f])]
    assert differing and PROMPT_FRAME not in differing


@pytest.mark.parametrize("direction", ["backward", "both"])
def test_sam2long_tracks_backward_and_both(model: object, cups_clip: Path, direction: str) -> None:
    """The tree search runs on SAM 2 both ways; every frame's decision is the best path's."""
    found, stream = _stream(model, cups_clip, direction, "sam2long")
    assert sorted(found) == (list(range(PROMPT_FRAME + 1)) if direction == "backward"
                             else list(range(12)))
    columns = stream.record.columns()
    # each search decides the prompt frame; the forward search's is the one a run writes
    by_search = sorted(stream.decisions, key=lambda d: columns.direction[d.node] == "forward")
    for obj in (1, 2):
        decided = {d.frame: d.node for d in by_search if d.obj == obj}
        assert decided == stream.record.best_path(obj)
