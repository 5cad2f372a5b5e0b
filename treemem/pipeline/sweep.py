"""Many strategy configurations on one video in one pass, sharing the model's work.

An ablation runs the same video under many strategy sets; the image encoder, which is most of
a frame's cost, is the same for all of them. `SweepStream` runs the configurations in
lockstep, each frame in the engine's phases (`Engine.begin_frame` -> `select` -> `end_frame`):

1. one `encode` of the frame, for every configuration;
2. the configurations' queries, translated to shared node ids, in batched `propose` calls;
3. each configuration's own selection over its rows of the proposals, then one `commit` per
   `propose` call;
4. each configuration's own decisions (to its own sinks) and releases.

How the proposals are batched is what exactness allows. A backend whose rows are
bit-identical in any batch declares it (`batch_invariant = True`, held to atol 0 by the
conformance suite; the synthetic backend does): then every configuration's rows go in ONE
`propose` and ONE `commit` per frame, and memory plans that are identical across
configurations are computed once, as the backend already does within one configuration.
A backend that does not (SAM 2: a row's floats depend on the batch at ~1e-6, which moves a
mask pixel now and then) gets one `propose` and one `commit` per configuration, each the
batch that configuration makes alone, so its masks stay bit-identical to running it alone;
only the encoder pass (and the prompts) are shared, which is the compute floor of a sweep.
`batched=True` forces the one shared batch anyway (results then within the backend's batch
tolerance of running alone). Configurations with different `presence_threshold`s never
share a call (the option changes a row's outputs); boxes, mask statistics and promotion are
asked for when any configuration of a call needs them, and the others ignore them.

Every configuration keeps its own `Engine`, tree record, decisions and outputs: an engine's
node ids are its own tree rows, and `NodeView` maps them to the backend's. Memories that are
provably identical across configurations are one backend node, held until every
configuration has released it: a prompt (the same prompt with the same options), and in a
shared call a commit of the same candidate of rows with the same object and the same
(shared-id) memory plan (rows are independent and deterministic, so they have the same
candidates). With shared calls memory is bounded by the union of the configurations' live
pathways; with per-configuration calls, by their sum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from treemem.backend import Backend
from treemem.engine import Engine, FrameStep
from treemem.pipeline.frames import FrameResult, FrameStream
from treemem.strategy import StrategySet
from treemem.types import (
    Commit,
    Direction,
    Float32Array,
    InputError,
    MemoryContractError,
    MemoryRef,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
    frame_step,
)


@dataclass(frozen=True)
class _Deferred:
    """What `NodeView.encode` returns: the frame, encoded by the backend only if needed (a
    prompt another configuration already stored needs no encoder pass)."""

    frame: int


class SharedNodes:
    """One backend serving several engines: its node ids, and who holds each.

    Each engine sees its own node ids (its tree rows) through a `NodeView`; a backend node
    is released when the last view holding it releases it.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._next = 0
        self._holders: dict[int, int] = {}
        self._prompts: dict[tuple[int, int, ProposalOptions], tuple[int, PromptResult]] = {}

    def new_node(self) -> int:
        """A backend node id no view uses yet."""
        node = self._next
        self._next += 1
        return node

    def hold(self, node: int) -> None:
        self._holders[node] = self._holders.get(node, 0) + 1

    def release(self, nodes: Iterable[int]) -> None:
        """One holder fewer for each node; the backend forgets the ones nobody holds."""
        free = []
        for node in nodes:
            self._holders[node] -= 1
            if self._holders[node] == 0:
                del self._holders[node]
                free.append(node)
        if free:
            self.backend.release(free)

    def prompt(
        self, frame: int, prompt: Prompt, options: ProposalOptions
    ) -> tuple[int, PromptResult]:
        """The backend node and result of `prompt`, stored once per (object, frame, options).

        Within one sweep every engine is given the same prompts, and an engine refuses two
        prompts for one object on one frame, so (object, frame) names one prompt; the backend
        is deterministic, so storing it again would store the same memory."""
        key = (prompt.obj, prompt.frame, options)
        found = self._prompts.get(key)
        if found is None:
            node = self.new_node()
            features = self.backend.encode(frame)
            result = self.backend.prompt(features, prompt, node, options)
            found = self._prompts[key] = (node, result)
        self.hold(found[0])
        return found

    @property
    def held(self) -> int:
        """Backend nodes held now (by any view)."""
        return len(self._holders)


class NodeView:
    """One engine's view of a shared backend: a `Backend` whose node ids are the engine's own.

    Node ids cross the boundary in prompts, memory plans, commits, mask reads and releases;
    this view maps each of them, so an engine (and its tree record) is the same as with a
    backend of its own.
    """

    def __init__(self, shared: SharedNodes) -> None:
        self.shared = shared
        self._nodes: dict[int, int] = {}

    @property
    def num_frames(self) -> int:
        return self.shared.backend.num_frames

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.shared.backend.frame_size

    def encode(self, frame: int) -> object:
        return _Deferred(frame)

    def prompt(
        self, features: object, prompt: Prompt, node: int, options: ProposalOptions
    ) -> PromptResult:
        node_id, result = self.shared.prompt(_frame(features), prompt, options)
        self.bind(node, node_id)
        return result

    def propose(
        self, features: object, queries: Sequence[PathwayQuery], options: ProposalOptions
    ) -> Proposals:
        backend = self.shared.backend
        return backend.propose(
            backend.encode(_frame(features)), [self.query(q) for q in queries], options
        )

    def commit(self, features: object, proposals: Proposals, commits: Sequence[Commit]) -> None:
        stored = []
        for commit in commits:
            node = self.shared.new_node()
            self.bind(commit.node, node)
            stored.append(replace(commit, node=node))
        self.shared.backend.commit(
            self.shared.backend.encode(_frame(features)), proposals, stored
        )

    def mask_logits(self, node: int) -> Float32Array:
        return self.shared.backend.mask_logits(self.backend_node(node))

    def release(self, nodes: Iterable[int]) -> None:
        backend_nodes = []
        for node in nodes:
            backend_nodes.append(self.backend_node(node))
            del self._nodes[node]
        self.shared.release(backend_nodes)

    # --- the mapping ------------------------------------------------------------------------

    def bind(self, node: int, backend_node: int) -> None:
        """Engine node `node` is backend node `backend_node` (held once more)."""
        self._nodes[node] = backend_node
        self.shared.hold(backend_node)

    def backend_node(self, node: int) -> int:
        found = self._nodes.get(node)
        if found is None:
            raise MemoryContractError(f"node {node} is not held (released, or never stored)")
        return found

    def query(self, query: PathwayQuery) -> PathwayQuery:
        """`query` with its memory plan in backend node ids."""
        plan = query.plan
        return PathwayQuery(
            query.obj,
            dataclasses.replace(
                plan, spatial=self._refs(plan.spatial), pointers=self._refs(plan.pointers)
            ),
        )

    def _refs(self, refs: tuple[MemoryRef, ...]) -> tuple[MemoryRef, ...]:
        try:
            return tuple(MemoryRef(self._nodes[r.node], r.position, r.weight) for r in refs)
        except KeyError as error:
            raise MemoryContractError(
                f"a memory plan reads node {error.args[0]}, which is not held"
            ) from None

    @property
    def held(self) -> int:
        """Engine nodes this view holds now."""
        return len(self._nodes)


def _frame(features: object) -> int:
    if not isinstance(features, _Deferred):
        raise MemoryContractError(f"features {features!r} did not come from this view's encode")
    return features.frame


@dataclass(frozen=True)
class _Lane:
    """One configuration in the sweep: its output stream (which owns its engine) and the
    view of the shared backend that engine sees."""

    stream: FrameStream
    view: NodeView

    @property
    def engine(self) -> Engine:
        return self.stream.engine


@dataclass(eq=False)
class SweepStream:
    """Runs every strategy set on `backend` in one pass; `frames` yields (configuration
    index, complete frame) as each configuration's frames complete.

    `streams[i]` is configuration i's `FrameStream` (its record, decisions, lags, counts, as
    after running it alone). `nodes` is the shared node bookkeeping (`nodes.held`: backend
    nodes held now). One direction, forward or backward (not "both"), from the first prompt
    frame that way (`FrameStream.first_frame`) to `last_frame` (default: the video's end).
    """

    backend: Backend
    strategies: Sequence[StrategySet]
    prompts: Sequence[Prompt]
    max_lag: int | None = None
    last_frame: int | None = None
    """Track up to this frame, inclusive (default: the end of the video in the direction)."""
    batched: bool | None = None
    """One `propose`/`commit` for every configuration (True) or one per configuration
    (False); None: shared when the backend declares `batch_invariant` (module docstring)."""
    direction: Direction = "forward"
    streams: tuple[FrameStream, ...] = field(init=False)
    nodes: SharedNodes = field(init=False)
    _lanes: tuple[_Lane, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.strategies:
            raise InputError("a sweep needs at least one strategy set")
        if self.direction not in ("forward", "backward"):
            raise InputError(
                f"a sweep tracks one direction, forward or backward, got {self.direction!r}"
            )
        self.nodes = SharedNodes(self.backend)
        lanes = []
        for strategy in self.strategies:
            view = NodeView(self.nodes)
            stream = FrameStream(
                view, strategy, self.prompts, self.max_lag, direction=self.direction
            )
            lanes.append(_Lane(stream, view))
        self._lanes = tuple(lanes)
        self.streams = tuple(lane.stream for lane in lanes)
        if self.batched is None:
            self.batched = bool(getattr(self.backend, "batch_invariant", False))

    @property
    def first_frame(self) -> int:
        return self.streams[0].first_frame

    @property
    def last(self) -> int:
        """The last frame tracked (inclusive)."""
        if self.last_frame is not None:
            return self.last_frame
        return self.backend.num_frames - 1 if self.direction == "forward" else 0

    @property
    def frame_count(self) -> int:
        return abs(self.last - self.first_frame) + 1

    def frames(
        self, on_frame: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, FrameResult]]:
        """(configuration index, frame) for every configuration's complete frames, each
        configuration's in tracking order; `on_frame(done)` after each searched frame."""
        for lane in self._lanes:
            lane.stream.start()  # its engine stores the prompts: one backend prompt for all
        first, sign = self.first_frame, frame_step(self.direction)
        for frame in range(first, self.last + sign, sign):
            steps = self._search(frame)
            for index, (lane, step) in enumerate(zip(self._lanes, steps, strict=True)):
                for result in lane.stream.decided(frame, lane.engine.end_frame(step)):
                    yield index, result
            if on_frame is not None:
                on_frame(abs(frame - first) + 1)
        for index, lane in enumerate(self._lanes):
            for result in lane.stream.finish():
                yield index, result

    def _search(self, frame: int) -> list[FrameStep]:
        """One encode; one propose and one commit per call (shared, or per configuration),
        every configuration's selection in between; returns each configuration's step."""
        backend = self.backend
        features = backend.encode(frame)
        queries = [lane.engine.begin_frame(frame) for lane in self._lanes]
        groups: dict[tuple[float, int], list[int]] = {}
        for index, (lane, mine) in enumerate(zip(self._lanes, queries, strict=True)):
            if mine:
                call = (lane.engine.options().presence_threshold, -1 if self.batched else index)
                groups.setdefault(call, []).append(index)
        steps: list[FrameStep | None] = [None] * len(self._lanes)
        for (threshold, _), members in groups.items():
            rows = [self._lanes[i].view.query(q) for i in members for q in queries[i]]
            asked = [self._lanes[i].engine.options() for i in members]
            options = ProposalOptions(
                boxes=any(o.boxes for o in asked),
                presence_threshold=threshold,
                mask_stats=any(o.mask_stats for o in asked),
                promotion=any(o.promotion for o in asked),
            )
            proposals = backend.propose(features, rows, options)
            commits: list[Commit] = []
            made: dict[tuple[PathwayQuery, int, bool], int] = {}
            offset = 0
            for i in members:
                lane, count = self._lanes[i], len(queries[i])
                step = lane.engine.select(frame, _rows(proposals, offset, offset + count))
                for commit in step.commits:
                    row = offset + commit.row
                    key = (rows[row], commit.candidate, commit.promote)
                    node = made.get(key)
                    if node is None:
                        node = made[key] = self.nodes.new_node()
                        commits.append(Commit(node, row, commit.candidate, commit.promote))
                    lane.view.bind(commit.node, node)
                steps[i] = step
                offset += count
            backend.commit(features, proposals, commits)
        return [
            step if step is not None else lane.engine.select(frame, None)
            for lane, step in zip(self._lanes, steps, strict=True)
        ]


def _rows(proposals: Proposals, start: int, stop: int) -> Proposals:
    """Rows start..stop of `proposals`, for the configuration that asked for them (its
    selection reads IoUs, occlusion, boxes and mask statistics; only the whole call is
    committed)."""
    rows = slice(start, stop)
    boxes = None if proposals.boxes is None else proposals.boxes[rows]
    stats = None if proposals.stats is None else proposals.stats.rows(rows)
    return Proposals(proposals.iou[rows], proposals.occlusion[rows], boxes, stats=stats)


__all__ = ["NodeView", "SharedNodes", "SweepStream"]
