"""Sweeps (`treemem.pipeline.sweep`, `treemem.sweep`): many configurations in one pass, each
exactly as run alone, sharing one encoder pass, the batched calls and identical memories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

import treemem
from treemem import Prompt, load_strategy
from treemem.backends.synthetic import SyntheticBackend
from treemem.backends.synthetic_video import SyntheticVideo, make_video
from treemem.pipeline.frames import FrameStream
from treemem.pipeline.sweep import SweepStream
from treemem.registry import REGISTRY
from treemem.tree import FIELDS, TreeRecord
from treemem.types import (
    Commit,
    Float32Array,
    PathwayQuery,
    PromptResult,
    ProposalOptions,
    Proposals,
)

Config = tuple[str, dict[str, object]]

SAM2LONG_P = [("sam2long", {"P": p}) for p in (1, 2, 3, 4)]
KNOBS = [
    ("sam2long", {"delta_iou": 0.0}),
    ("sam2long", {"delta_iou": 0.9}),
    ("sam2long", {"delta_conf": 0.5}),
    ("sam2long", {"delta_conf": 5.0, "P": 2}),
    ("sam2long", {"w_low": 1.0, "w_high": 1.0}),
    ("sam2long", {"w_low": 0.9, "w_high": 1.1, "P": 4}),
]
FAMILIES = [
    ("greedy", {}),
    ("samurai", {}),
    ("sam3-memory", {}),
    ("samurai-tree", {"P": 2}),
    ("sam3-memory-tree", {}),
    ("dam4sam", {}),
    ("dam4sam-tree", {"P": 2}),
    ("sam2long", {}),
]
MIXES = {"sam2long P 1-4": SAM2LONG_P, "knobs": KNOBS, "families": FAMILIES}


def assert_same_record(swept: TreeRecord, alone: TreeRecord, label: str) -> None:
    a, b = swept.columns(), alone.columns()
    for name in FIELDS:
        np.testing.assert_array_equal(
            getattr(a, name), getattr(b, name), err_msg=f"{label}: {name}"
        )
    np.testing.assert_array_equal(swept.parent_rows(), alone.parent_rows(), err_msg=label)


def assert_same_result(swept: treemem.TrackResult, alone: treemem.TrackResult, label: str) -> None:
    np.testing.assert_array_equal(swept.masks, alone.masks, err_msg=label)
    assert_same_record(swept.record, alone.record, label)
    assert swept.decisions == alone.decisions, label
    assert swept.lags == alone.lags, label


def two_object_video() -> tuple[SyntheticVideo, list[Prompt]]:
    """Two objects, the second prompted on frame 3, the first prompted again on frame 11."""
    video = make_video(2, num_frames=24, height=32, width=40, num_objects=2)
    prompts = [
        Prompt(1, 0, mask=video.object_mask(1, 0)),
        Prompt(2, 3, mask=video.object_mask(2, 3)),
        Prompt(1, 11, mask=video.object_mask(1, 11)),
    ]
    return video, prompts


@pytest.mark.parametrize("mix", sorted(MIXES))
@pytest.mark.parametrize("max_lag", [None, 2])
def test_every_configuration_equals_running_it_alone(mix: str, max_lag: int | None) -> None:
    video, prompts = two_object_video()
    configs = MIXES[mix]
    swept = treemem.sweep(video, prompts, configs, max_lag=max_lag)
    assert len(swept) == len(configs)
    for (name, overrides), result in zip(configs, swept, strict=True):
        alone = treemem.track(video, prompts, name, overrides=overrides, max_lag=max_lag)
        assert_same_result(result, alone, f"{name} {overrides}")


def test_a_backward_sweep_equals_each_backward_run() -> None:
    """Backward from the last prompt (frame 11) to frame 0, in sam2's reverse memory order."""
    video, prompts = two_object_video()
    configs = [("sam2long", {"P": 2}), ("greedy", {}), ("sam3-memory", {})]
    swept = treemem.sweep(video, prompts, configs, direction="backward")
    for (name, overrides), result in zip(configs, swept, strict=True):
        alone = treemem.track(video, prompts, name, overrides=overrides, direction="backward")
        assert_same_result(result, alone, f"backward {name}")


def test_configurations_given_as_names_records_and_sets() -> None:
    video, prompts = two_object_video()
    record = REGISTRY.create("sam2long", {"P": 2})
    swept = treemem.sweep(video, prompts, ["greedy", record, load_strategy("samurai")])
    assert [r.strategy for r in swept] == ["greedy", "sam2long", "samurai"]
    assert_same_result(swept[1], treemem.track(video, prompts, record), "record")


class Counting:
    """Forwards to a backend; counts the calls and rows of each kind."""

    def __init__(self, inner: SyntheticBackend) -> None:
        self.inner = inner
        self.encoded: list[int] = []
        self.proposed: list[tuple[int, ProposalOptions]] = []
        self.committed: list[int] = []

    @property
    def batch_invariant(self) -> bool:
        return self.inner.batch_invariant

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.inner.frame_size

    def encode(self, frame: int) -> object:
        self.encoded.append(frame)
        return self.inner.encode(frame)

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        return self.inner.prompt(features, prompt, node, options)

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        self.proposed.append((len(queries), options))
        return self.inner.propose(features, queries, options)

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        self.committed.append(len(commits))
        self.inner.commit(features, proposals, commits)

    def mask_logits(self, node: int) -> Float32Array:
        return self.inner.mask_logits(node)

    def release(self, nodes: Iterable[int]) -> None:
        self.inner.release(nodes)


def run_sweep(
    backend: Any, configs: Sequence[Config], prompts: Sequence[Prompt], **options: Any
) -> SweepStream:
    sweep = SweepStream(backend, [load_strategy(n, o) for n, o in configs], prompts, **options)
    for _ in sweep.frames():
        pass
    return sweep


def test_one_encode_one_propose_one_commit_per_frame() -> None:
    """sam2long P 1-4 and greedy: per tracked frame one encode, one propose holding every
    configuration's pathways, one commit; the prompt frame is encoded once for all."""
    video = make_video(4, num_frames=16, height=32, width=40)
    prompts = [Prompt(1, 0, mask=video.object_mask(1, 0))]
    configs = [*SAM2LONG_P, ("greedy", {})]
    backend = Counting(SyntheticBackend(video))
    run_sweep(backend, configs, prompts)
    assert backend.encoded == [0, *range(16)]  # the prompt, then each frame
    assert len(backend.proposed) == len(backend.committed) == 15
    # frame 1 reads the prompt only: one row per configuration; then every pathway
    assert [rows for rows, _ in backend.proposed[:2]] == [5, 1 + 2 + 3 + 4 + 1]


def test_different_presence_thresholds_never_share_a_call() -> None:
    """samurai (threshold -1, boxes) and sam2long (0): two proposals a frame, each with its
    own options, and nothing stored twice for either (no prompt shared between them)."""
    video = make_video(4, num_frames=12, height=32, width=40)
    prompts = [Prompt(1, 0, mask=video.object_mask(1, 0))]
    backend = Counting(SyntheticBackend(video))
    run_sweep(backend, [("sam2long", {}), ("samurai", {}), ("greedy", {})], prompts)
    assert len(backend.proposed) == 2 * 11
    options = {o for _, o in backend.proposed}
    assert options == {ProposalOptions(), ProposalOptions(boxes=True, presence_threshold=-1.0)}


def test_identical_configurations_share_every_memory() -> None:
    """Three copies of sam2long P=3 hold what one copy holds, at every frame (identical rows
    of a shared call store one memory, held until every configuration released it), and no
    more than the configuration alone (whose clones' children are separate nodes)."""
    video = make_video(5, num_frames=60, height=32, width=40)
    prompts = [Prompt(1, 0, mask=video.object_mask(1, 0))]
    alone = SyntheticBackend(video)
    stream = FrameStream(alone, load_strategy("sam2long"), prompts)
    for _ in stream.frames():
        pass
    held: dict[int, list[int]] = {1: [], 3: []}
    for copies in held:
        backend = SyntheticBackend(video)
        sweep = SweepStream(backend, [load_strategy("sam2long")] * copies, prompts)
        for _ in sweep.frames(lambda done, b=backend, h=held[copies]: h.append(b.held)):
            pass
        for one in sweep.streams:
            assert_same_record(one.record, stream.record, f"{copies} copies")
        assert backend.peak_held <= alone.peak_held
    assert held[3] == held[1]


def test_per_configuration_calls_are_exact_and_share_only_the_encoder() -> None:
    """`batched=False` (what a backend that is not batch-invariant gets): one propose per
    configuration and frame, the same results, and no memory shared but the prompt."""
    video, prompts = two_object_video()
    configs = SAM2LONG_P
    backend = Counting(SyntheticBackend(video))
    sweep = run_sweep(backend, configs, prompts, batched=False)
    assert backend.encoded == [0, 3, 11, *range(24)]  # each prompt frame once for all
    assert len(backend.proposed) == len(configs) * 23
    for (name, overrides), one in zip(configs, sweep.streams, strict=True):
        alone = treemem.track(video, prompts, name, overrides=overrides)
        assert_same_record(one.record, alone.record, f"{name} {overrides}")


def test_sweep_memory_is_flat_in_video_length() -> None:
    """1,000 frames, three configurations of three families, decided at most 8 frames late
    (exact decisions alone wait as long as the pathways disagree): the backend never holds
    more than the configurations hold alone together (the union of live pathways is at most
    their sum), what it holds after frame 500 is no more than before, and the sweep's node
    map holds one backend node per memory the backend holds."""
    video = make_video(3, num_frames=1000, height=32, width=32)
    prompts = [Prompt(1, 0, mask=video.object_mask(1, 0))]
    configs: list[Config] = [("sam2long", {}), ("greedy", {}), ("sam3-memory-tree", {"P": 2})]
    bound = 0
    for name, overrides in configs:
        alone = SyntheticBackend(video)
        lagged = FrameStream(alone, load_strategy(name, overrides), prompts, max_lag=8)
        for _ in lagged.frames():
            pass
        bound += alone.peak_held
    backend = SyntheticBackend(video)
    sets = [load_strategy(n, o) for n, o in configs]
    sweep = SweepStream(backend, sets, prompts, max_lag=8)
    held: list[int] = []
    views: list[int] = []

    def sample(done: int) -> None:
        held.append(backend.held)
        views.append(sweep.nodes.held)

    for _ in sweep.frames(sample):
        pass
    assert len(held) == 1000
    assert backend.peak_held <= bound
    assert max(held[500:]) <= max(held[:500])
    assert views == held


@pytest.fixture(scope="module")
def sam2_video() -> tuple[Any, SyntheticVideo, list[Prompt]]:
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    import torch

    from treemem.backends.sam2 import build_random_model

    torch.set_num_threads(2)  # exactness depends on the thread count
    model = build_random_model(seed=0, image_size=64)
    with torch.no_grad():  # spread the IoU head's answers, so configurations choose apart
        model.sam_mask_decoder.iou_prediction_head.layers[2].weight *= 40.0
    video = make_video(3, num_frames=8, height=40, width=56, num_objects=2)
    prompts = [Prompt(obj, 0, mask=video.object_mask(obj, 0)) for obj in (1, 2)]
    return model, video, prompts


SAM2_CONFIGS = [
    *SAM2LONG_P,
    ("greedy", {}),
    ("samurai", {}),
    ("sam3-memory", {}),
    ("sam2long", {"delta_iou": 0.7}),
    ("sam2long", {"delta_conf": 0.5, "w_low": 1.0, "w_high": 1.0}),
]


def test_sam2_every_configuration_equals_running_it_alone(
    sam2_video: tuple[Any, SyntheticVideo, list[Prompt]],
) -> None:
    """A random-weight SAM 2.1 tiny at 64 px, two objects: each configuration's mask logits
    (bit for bit) and tree record equal its own run, with one image-encoder pass a frame."""
    from treemem.backends.sam2 import Sam2Backend

    model, video, prompts = sam2_video
    frames = video.frames

    def make() -> Sam2Backend:
        return Sam2Backend(model, lambda i: frames[i], len(frames), video.frame_size)

    encoded: list[int] = []
    forward = model.forward_image

    def counted(image: Any) -> Any:
        encoded.append(1)
        return forward(image)

    backend = make()
    model.forward_image = counted
    try:
        sweep = SweepStream(backend, [load_strategy(n, o) for n, o in SAM2_CONFIGS], prompts)
        swept: dict[int, dict[int, Any]] = {i: {} for i in range(len(SAM2_CONFIGS))}
        for index, result in sweep.frames():
            swept[index][result.frame] = result
    finally:
        model.forward_image = forward
    assert sweep.batched is False  # SAM 2 is not batch-invariant: per-configuration calls
    assert len(encoded) == len(frames)
    for index, (name, overrides) in enumerate(SAM2_CONFIGS):
        stream = FrameStream(make(), load_strategy(name, overrides), prompts)
        alone = {result.frame: result for result in stream.frames()}
        assert sorted(alone) == sorted(swept[index])
        for frame, result in alone.items():
            for mine, theirs in zip(swept[index][frame].masks, result.masks, strict=True):
                np.testing.assert_array_equal(mine.mask, theirs.mask)
                np.testing.assert_array_equal(mine.positive_logits, theirs.positive_logits)
        assert_same_record(sweep.streams[index].record, stream.record, f"{name} {overrides}")


def test_sam2_one_shared_batch_is_within_the_batch_tolerance(
    sam2_video: tuple[Any, SyntheticVideo, list[Prompt]],
) -> None:
    """`batched=True` on SAM 2: one propose a frame for every configuration, computing each
    distinct plan once (far fewer rows than the configurations alone), the same choices,
    and scores within the backend's batch tolerance (not bit for bit: why it is opt-in)."""
    from treemem.backends.sam2 import Sam2Backend

    model, video, prompts = sam2_video
    frames = video.frames
    configs = SAM2LONG_P
    backend = Sam2Backend(model, lambda i: frames[i], len(frames), video.frame_size)
    sweep = run_sweep(backend, configs, prompts, batched=True)
    assert len(backend.distinct_rows) == len(frames) - 1
    alone_rows = 0.0
    for (name, overrides), one in zip(configs, sweep.streams, strict=True):
        solo = Sam2Backend(model, lambda i: frames[i], len(frames), video.frame_size)
        stream = FrameStream(solo, load_strategy(name, overrides), prompts)
        for _ in stream.frames():
            pass
        alone_rows += sum(solo.distinct_rows)
        a, b = one.record.columns(), stream.record.columns()
        for field in ("frame", "slot", "parent", "candidate", "kept"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_allclose(a.iou, b.iou, atol=1e-4)
    assert sum(backend.distinct_rows) < alone_rows
