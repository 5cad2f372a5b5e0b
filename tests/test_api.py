"""The Python API (`treemem.track`, `treemem.Predictor`) against the engine and the CLI."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import treemem
from treemem import Predictor, Prompt, TrackResult, TreememError, load_strategy
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.cli import main
from treemem.io.masks import read_mask, write_palette_png
from treemem.pipeline.inputs import ModelOptions, ModelSpec, model_spec
from treemem.types import ConfigError, InputError

FRAMES = 24


@pytest.fixture(scope="module")
def video() -> SyntheticVideo:
    return make_video(1, num_frames=FRAMES, height=64, width=80, num_objects=2)


@pytest.mark.parametrize("strategy", ["sam2long", "greedy"])
def test_track_equals_the_engine_run_directly(video: SyntheticVideo, strategy: str) -> None:
    result = treemem.track(video, video.gt[0], strategy)
    backend = SyntheticBackend(video)
    engine = treemem.Engine(load_strategy(strategy), backend)
    labels = np.zeros(video.gt.shape, np.uint8)
    for decision in engine.run(video.first_frame_prompts(), range(backend.num_frames)):
        # the synthetic logits are +-1, so a contested pixel goes to the lower id
        mask = backend.mask_logits(decision.node) > 0
        frame = labels[decision.frame]
        frame[mask & ((frame == 0) | (frame > decision.obj))] = decision.obj
    assert isinstance(result, TrackResult)
    assert result.masks.shape == video.gt.shape and result.masks.dtype == np.uint8
    assert result.objects == (1, 2) and result.strategy == strategy
    assert np.array_equal(result.masks, labels)
    assert len(result.record) == len(engine.record)
    assert np.array_equal(result.record.columns().score, engine.record.columns().score)
    assert {(d.obj, d.frame) for d in result.decisions} == {
        (obj, frame) for obj in (1, 2) for frame in range(FRAMES)
    }
    assert result.mask(2, 5).shape == (64, 80)
    assert set(result.object_masks()) == {1, 2}
    assert result.seconds_per_frame() >= 0
    with pytest.raises(ValueError, match="read-only"):
        result.masks[0, 0, 0] = 1


def test_final_answer_is_the_best_path_of_the_tree(video: SyntheticVideo) -> None:
    result = treemem.track(video, video.gt[0])
    for obj in result.objects:
        best = result.record.best_path(obj)
        by_frame = {d.frame: d.node for d in result.decisions if d.obj == obj}
        assert by_frame == best


def test_track_reads_a_saved_folder_and_a_png_prompt(
    video: SyntheticVideo, tmp_path: Path
) -> None:
    folder = video.save(tmp_path / "video")
    write_palette_png(tmp_path / "mask.png", video.gt[0])
    from_folder = treemem.track(folder, tmp_path / "mask.png", "greedy")
    in_memory = treemem.track(video, video.gt[0], "greedy")
    assert np.array_equal(from_folder.masks, in_memory.masks)


def test_strategy_by_record_set_or_overrides(video: SyntheticVideo) -> None:
    by_name = treemem.track(video, video.gt[0], "sam2long", overrides={"P": "2"})
    params = treemem.registry.REGISTRY.create("sam2long", {"pathways": 2})
    by_record = treemem.track(video, video.gt[0], params)
    by_set = treemem.track(video, video.gt[0], params.build())
    assert np.array_equal(by_name.masks, by_record.masks)
    assert np.array_equal(by_name.masks, by_set.masks)
    assert by_name.record.columns().slot.max() == 1
    with pytest.raises(ConfigError, match="overrides apply to a strategy given by name"):
        treemem.track(video, video.gt[0], params, overrides={"P": 3})
    with pytest.raises(ConfigError, match="did you mean 'delta_iou'"):
        treemem.track(video, video.gt[0], overrides={"delta_io": 0.2})


def test_backend_instance(video: SyntheticVideo) -> None:
    backend = SyntheticBackend(video, seed=0)
    result = treemem.track(None, video.gt[0], "greedy", backend=backend)
    assert np.array_equal(result.masks, treemem.track(video, video.gt[0], "greedy").masks)
    with pytest.raises(InputError, match="pass video=None"):
        treemem.track(video, video.gt[0], backend=SyntheticBackend(video))


class _CountingBackend(SyntheticBackend):
    """Remembers the newest frame the engine has asked for."""

    newest = -1

    def encode(self, frame: int) -> object:
        self.newest = max(self.newest, frame)
        return super().encode(frame)


def test_online_with_max_lag_decides_early(video: SyntheticVideo) -> None:
    """With max_lag=2, frame f comes out before the engine reads frame f + 3."""
    backend = _CountingBackend(video)
    predictor = Predictor(backend, "sam2long", max_lag=2)
    with predictor.init_state(None) as state:
        predictor.add_new_mask(state, 0, 1, video.gt[0] == 1)
        seen = []
        for frame, obj_ids, masks in predictor.propagate_in_video(state):
            assert backend.newest - frame <= 2
            seen.append(frame)
            assert obj_ids == [1] and masks.shape == (1, 64, 80) and masks.dtype == bool
    assert seen == list(range(FRAMES))
    assert any(d.forced for d in state.decisions)


def test_predictor_yields_frames_in_order_as_decided(video: SyntheticVideo) -> None:
    """Frames come out before the video ends (online), in order, and equal `track`."""
    predictor = Predictor("synthetic", "sam2long", non_overlap_masks=True)
    expected = treemem.track(video, video.gt[0]).masks
    with predictor.init_state(video) as state:
        for obj in (1, 2):
            assert predictor.add_new_mask(state, 0, obj, video.gt[0] == obj) == (0, [1, 2][:obj])
        frames = []
        rows_when_yielded = []
        for frame, obj_ids, masks in predictor.propagate_in_video(state):
            frames.append(frame)
            rows_when_yielded.append(len(state.decisions))
            assert obj_ids == [1, 2]
            assert np.array_equal(masks[1], (expected[frame] == 2))
    assert frames == list(range(FRAMES))
    assert rows_when_yielded[0] < 2 * FRAMES  # the first frame came out before the end


def test_late_prompt_and_reprompt(video: SyntheticVideo) -> None:
    """Object 2 starts on frame 5 (empty before), object 1 is re-prompted on frame 12."""
    predictor = Predictor("synthetic", "sam2long")
    with predictor.init_state(video) as state:
        predictor.add_new_mask(state, 0, 1, video.gt[0] == 1)
        predictor.add_new_mask(state, 5, 2, video.gt[5] == 2)
        predictor.add_new_mask(state, 12, 1, video.gt[12] == 1)
        out = {frame: masks for frame, _, masks in predictor.propagate_in_video(state)}
    assert sorted(out) == list(range(FRAMES))
    assert not out[4][1].any() and np.array_equal(out[5][1], video.gt[5] == 2)
    assert np.array_equal(out[12][0], video.gt[12] == 1)


def test_propagate_again_after_a_correction(video: SyntheticVideo) -> None:
    predictor = Predictor("synthetic", "greedy")
    with predictor.init_state(video) as state:
        predictor.add_new_mask(state, 0, 1, video.gt[0] == 1)
        first = [m for _, _, m in predictor.propagate_in_video(state)]
        predictor.add_new_mask(state, 10, 1, video.gt[10] == 1)
        second = [m for _, _, m in predictor.propagate_in_video(state)]
        predictor.reset_state(state)
        assert state.prompts == [] and len(state.record) == 0
    assert len(first) == len(second) == FRAMES
    assert np.array_equal(second[10][0], video.gt[10] == 1)
    # a prompt is a conditioning memory for every frame of its object (SAM 2's rule), so
    # frames before it may change too; the first prompt frame cannot
    assert np.array_equal(first[0], second[0])


def test_points_and_box_prompts(video: SyntheticVideo) -> None:
    ys, xs = np.nonzero(video.gt[0] == 1)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    predictor = Predictor("synthetic", "greedy")
    with predictor.init_state(video) as state:
        predictor.add_new_points_or_box(state, 0, 1, box=box)
        predictor.add_new_points_or_box(state, 0, 1, points=[[xs[0], ys[0]]], labels=[1],
                                        clear_old_points=False)
        (prompt,) = state.prompts
        assert prompt.box == tuple(float(v) for v in box) and prompt.labels == (1,)
        frames = [frame for frame, _, _ in predictor.propagate_in_video(state)]
    assert frames == list(range(FRAMES))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, s: p.add_new_mask(s, FRAMES, 1, np.ones((64, 80))), "outside the video"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.ones((10, 10))), "the video is"),
        (lambda p, s: p.add_new_mask(s, 0, 300, np.ones((64, 80))), "1..255"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[100, 5]]), "outside the 80x64"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[1, 1]], labels=[2]), "labels"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, box=(5, 5, 2, 9)), "not a box"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1), "give points"),
        (lambda p, s: list(p.propagate_in_video(s)), "no prompt yet"),
        (lambda p, s: list(p.propagate_in_video(s, reverse=True, direction="forward")),
         "contradicts"),
        (lambda p, s: list(p.propagate_in_video(s, direction="sideways")),
         "direction must be one of forward, backward, both"),
    ],
)
def test_predictor_refuses_bad_input(video: SyntheticVideo, call: object, message: str) -> None:
    predictor = Predictor("synthetic", "greedy")
    with predictor.init_state(video) as state, pytest.raises(TreememError, match=message):
        call(predictor, state)  # type: ignore[operator]


def test_backward_and_both_from_a_mid_video_prompt(video: SyntheticVideo) -> None:
    """`direction` for track() and `reverse=True` for the predictor: backward covers the
    prompt frame and the frames before it, both covers every frame, from the forward search
    on and after the prompt and from the backward search before it."""
    mid = 10
    prompts = [Prompt(obj, mid, mask=video.gt[mid] == obj) for obj in (1, 2)]
    forward = treemem.track(video, prompts, "sam2long")
    backward = treemem.track(video, prompts, "sam2long", direction="backward")
    both = treemem.track(video, prompts, "sam2long", direction="both")
    assert backward.direction == "backward" and backward.first_frame == mid
    assert not forward.masks[:mid].any() and not backward.masks[mid + 1 :].any()
    assert backward.masks[:mid].any()
    np.testing.assert_array_equal(both.masks[mid:], forward.masks[mid:])
    np.testing.assert_array_equal(both.masks[:mid], backward.masks[:mid])
    predictor = Predictor("synthetic", "sam2long", non_overlap_masks=True)
    with predictor.init_state(video) as state:
        for prompt in prompts:
            predictor.add_new_mask(state, mid, prompt.obj, prompt.mask)
        found = list(predictor.propagate_in_video(state, reverse=True, max_frame_num_to_track=4))
        two_ways = list(predictor.propagate_in_video(state, direction="both"))
    assert [frame for frame, _, _ in found] == [10, 9, 8, 7, 6]
    for frame, obj_ids, masks in found:
        for obj, mask in zip(obj_ids, masks, strict=True):
            assert np.array_equal(mask, backward.masks[frame] == obj), (frame, obj)
    assert sorted(frame for frame, _, _ in two_ways) == list(range(FRAMES))
    for frame, obj_ids, masks in two_ways:
        for obj, mask in zip(obj_ids, masks, strict=True):
            assert np.array_equal(mask, both.masks[frame] == obj), (frame, obj)


def test_a_stream_starts_and_stops_where_it_is_told(video: SyntheticVideo) -> None:
    """What a sam2-style predictor asks of the run layer: one direction from a start frame
    for a number of frames. Frames before the object's prompt (in tracking order) are empty;
    from the prompt on they are the same as a search started at the prompt."""
    from treemem.pipeline.frames import FrameStream

    prompt = Prompt(1, 10, mask=video.gt[10] == 1)

    def frames(**where: object) -> dict[int, np.ndarray]:
        stream = FrameStream(SyntheticBackend(video), load_strategy("greedy"), [prompt],
                             direction="backward", **where)  # type: ignore[arg-type]
        return {r.frame: r.ids() for r in stream.frames()}

    from_prompt = frames()
    late = frames(start_frame=13, last_frame=13 - 8)
    assert list(late) == list(range(13, 4, -1))
    assert not any(late[f].any() for f in (13, 12, 11))
    for frame in range(10, 4, -1):
        np.testing.assert_array_equal(late[frame], from_prompt[frame])
    with pytest.raises(InputError, match="cannot track backward from frame 3 to frame 9"):
        frames(start_frame=3, last_frame=9)


def test_both_takes_each_objects_frames_before_its_first_prompt_from_the_backward_search(
    video: SyntheticVideo,
) -> None:
    """Object 1 prompted on frame 4, object 2 on frame 15: frames 4..14 need object 1 from
    the forward search and object 2 from the backward one."""
    from treemem.pipeline.frames import FrameStream

    prompts = [Prompt(1, 4, mask=video.gt[4] == 1), Prompt(2, 15, mask=video.gt[15] == 2)]

    def results(direction: str) -> dict[int, object]:
        stream = FrameStream(SyntheticBackend(video), load_strategy("sam2long"), prompts,
                             direction=direction)  # type: ignore[arg-type]
        return {r.frame: r for r in stream.frames()}

    forward, backward, both = results("forward"), results("backward"), results("both")
    assert sorted(both) == list(range(FRAMES)) and sorted(backward) == list(range(16))
    for frame, result in both.items():
        for index, start in enumerate((4, 15)):
            source = forward if frame >= start else backward
            found = result.masks[index].mask  # type: ignore[attr-defined]
            assert np.array_equal(found, source[frame].masks[index].mask), (frame, index)
    assert any(both[f].masks[1].mask.any() for f in range(4, 15))  # type: ignore[attr-defined]


def test_track_refuses_bad_input(video: SyntheticVideo, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        treemem.track(video, np.zeros((64, 80), np.uint8))
    with pytest.raises(InputError, match="video is 80x64"):
        treemem.track(video, np.ones((8, 8), np.uint8))
    with pytest.raises(ConfigError, match="unknown backend"):
        treemem.track(video, video.gt[0], backend="sam4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown strategy"):
        treemem.track(video, video.gt[0], "sam2lon")
    with pytest.raises(InputError, match="synthetic backend tracks a SyntheticVideo"):
        treemem.track(np.zeros((2, 8, 8, 3), np.uint8), np.ones((8, 8), np.uint8),
                      backend="synthetic")
    with pytest.raises(InputError, match="needs a checkpoint"):
        treemem.track(tmp_path, video.gt[0], backend="sam2")
    with pytest.raises(ConfigError, match="unknown dtype 'float16'; use fp32, bf16 or fp16"):
        treemem.track(tmp_path, video.gt[0], backend="sam2", dtype="float16")
    with pytest.raises(ConfigError, match="the synthetic backend has no dtype"):
        treemem.track(video, video.gt[0], dtype="bf16")
    with pytest.raises(ConfigError, match="the synthetic backend has no dtype"):
        treemem.Predictor("synthetic", dtype="fp16")
    with pytest.raises(InputError, match="direction must be one of forward, backward, both"):
        treemem.track(video, video.gt[0], direction="reverse")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="the synthetic backend has no model to compile"):
        treemem.track(video, video.gt[0], compile=True)
    with pytest.raises(ConfigError, match="a Backend instance runs as it was made"):
        treemem.Predictor(SyntheticBackend(video), compile=True)


def test_the_model_keywords_are_model_spec_and_a_misspelt_one_is_one_line(
    video: SyntheticVideo,
) -> None:
    """track, sweep, stream and Predictor take `ModelOptions` keywords, each `ModelSpec`
    field under its own name (so the two cannot drift); a wrong one names the right one."""
    assert list(ModelOptions.__annotations__) == [f.name for f in fields(ModelSpec)]
    calls = [
        lambda: treemem.track(video, video.gt[0], chekpoint="x.pt"),  # type: ignore[call-arg]
        lambda: treemem.sweep(video, video.gt[0], ["greedy"], chekpoint="x.pt"),  # type: ignore[call-arg]
        lambda: treemem.stream(backend=SyntheticBackend(video), chekpoint="x.pt"),  # type: ignore[call-arg]
        lambda: treemem.Predictor("synthetic", chekpoint="x.pt"),  # type: ignore[call-arg]
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="unknown model option 'chekpoint'; did you mean "
                           "'checkpoint'") as error:
            call()
        assert "\n" not in str(error.value)
    assert model_spec({"seed": 3, "dtype": "bf16"}) == ModelSpec(seed=3, dtype="bf16")


def test_sam2_backend_matches_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`track` with a checkpoint, `track` with a built model and `treemem run` give the same
    masks (random-weight SAM 2.1 tiny, CPU, 256 px, an 8-frame folder)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from PIL import Image

    from treemem.backends.sam2 import build_random_model

    torch.set_num_threads(2)
    clip = make_video(1, num_frames=8, height=64, width=96)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(frames / f"{index:05d}.png")
    write_palette_png(tmp_path / "mask.png", clip.gt[0])
    model = build_random_model(image_size=256)
    checkpoint = tmp_path / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": model.state_dict()}, checkpoint)

    options = {"checkpoint": checkpoint, "image_size": 256, "device": "cpu"}
    from_file = treemem.track(frames, tmp_path / "mask.png", "sam2long", **options)
    from_model = treemem.track(clip.frames, clip.gt[0], "sam2long", backend="sam2", model=model)
    out = tmp_path / "run"
    code = main(["run", str(frames), "--mask", str(tmp_path / "mask.png"), "--checkpoint",
                 str(checkpoint), "--image-size", "256", "--device", "cpu", "--out", str(out),
                 "--no-progress"])
    capsys.readouterr()
    assert code == 0
    cli = np.stack([read_mask(out / "masks" / f"{i:05d}.png") for i in range(8)])
    assert np.array_equal(from_file.masks, cli)
    assert np.array_equal(from_model.masks, cli)
    assert from_file.record.columns().score.tolist() == pytest.approx(
        from_model.record.columns().score.tolist()
    )


def test_prompt_records_pass_through(video: SyntheticVideo) -> None:
    prompts = [Prompt(1, 0, mask=video.gt[0] == 1)]
    one = treemem.track(video, prompts[0], "greedy")
    many = treemem.track(video, prompts, "greedy")
    assert one.objects == (1,) and np.array_equal(one.masks, many.masks)


def test_missing_sam2_extra_is_one_actionable_error(
    monkeypatch: pytest.MonkeyPatch, video: SyntheticVideo, tmp_path: Path
) -> None:
    import treemem.pipeline.inputs as inputs

    real_import = inputs.importlib.import_module

    def no_torch(name: str) -> object:
        if name == "treemem.backends.sam2":
            raise ImportError("No module named 'torch'", name="torch")
        return real_import(name)

    monkeypatch.setattr(inputs.importlib, "import_module", no_torch)
    needs = r"needs `pip install 'treemem\[sam2\]'` \(missing: torch\)"
    with pytest.raises(InputError, match=needs):
        treemem.track(video.frames, video.gt[0], backend="sam2", checkpoint=tmp_path / "x.pt")
