"""The beam search over segmentation hypotheses.

Per frame: the backend encodes the frame once and proposes K candidates for every pathway of
every object in one batched call; the strategy set scores each object's candidates and
chooses at most P survivors (`treemem.survivors.choose_survivors`, a pure function of the
scores); the backend commits the survivors' memories; the tree record (with the rule that
chose) and the lineage (liveness, exact decisions, memory release) are updated. Frames are
emitted as soon as they are decided, so output is online and exact.

A strategy set with a pathway model (SAMURAI's Kalman filter) also gets one model state per
pathway, kept next to its memory history: started on a (re-)prompt, stepped with the parent
row's candidate boxes, and its per-candidate likelihood is the scoring evidence in place of
the predicted IoU. A set with a promotion rule (DAM4SAM's distractor-aware memory) gets a
second per-pathway state the same way, stepped with the row's mask statistics; it decides
which kept candidates are committed as conditioning memory (`Commit.promote`).

An engine runs in one direction (`treemem.types.Direction`). Backward, frames are visited in
descending order from the start frame, as sam2's `propagate_in_video(reverse=True)` does:
every "before", "after" and "how old" of the search is taken in tracking order (frame
positions `frame * step`), and memory entries carry the direction so memory selection reads
the frames already tracked (sam2's `track_in_reverse`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from treemem.backend import Backend
from treemem.lineage import Lineage
from treemem.strategy import CandidateTable, Evidence, PathwayStep, PromotionStep, StrategySet
from treemem.survivors import Selection, choose_survivors
from treemem.tree import TreeRecord
from treemem.types import (
    Commit,
    Direction,
    Float32Array,
    FloatArray,
    FrameDecision,
    InputError,
    MaskStats,
    MemoryEntry,
    MemoryHistory,
    PathwayQuery,
    Prompt,
    PromptResult,
    ProposalOptions,
    Proposals,
    TreememError,
    frame_step,
)

log = logging.getLogger("treemem.engine")


@dataclass(frozen=True)
class Pathway:
    """One surviving pathway of an object: the node it stands on and what it carries.

    score: its cumulative score; history: the memory it may still read; slot: the slot its
    node was recorded in (pathways may share a node, as after a clone start); state: its
    pathway-model state (None when the strategy set has no model); promotion: its promotion
    rule's state (None when the set has no promotion rule).
    """

    node: int
    score: float
    history: MemoryHistory
    slot: int
    state: object = None
    promotion: object = None


@dataclass(frozen=True)
class Beam:
    """One object's surviving pathways at `frame`, in rank order (pathway 0 is the best).

    `started` is False until the start rule has run after the object's latest prompt."""

    frame: int
    pathways: tuple[Pathway, ...]
    started: bool = False

    @property
    def best(self) -> Pathway:
        return self.pathways[0]

    def scores(self) -> FloatArray:
        """(P,) float64 cumulative scores, the parent scores of the next frame's scoring."""
        return np.array([p.score for p in self.pathways], np.float64)

    def nodes(self) -> set[int]:
        """The distinct nodes the pathways stand on."""
        return {p.node for p in self.pathways}


@dataclass(frozen=True)
class _Step:
    """One object's outcome at one frame."""

    obj: int
    beam: Beam
    commits: list[Commit]
    parents: list[int]
    """Each commit's parent node (the node its pathway stood on), for the lineage."""


@dataclass(frozen=True)
class FrameStep:
    """One frame's selection, between the batched proposal and the commit.

    `commits` are what the backend must store, as (row, candidate) addresses of the proposals
    `Engine.select` was given; `Engine.end_frame` applies the rest once they are stored."""

    frame: int
    commits: tuple[Commit, ...]
    objects: tuple[_Step, ...] = field(repr=False)


@dataclass(frozen=True)
class EngineState:
    """The search after frame `frame`, everything a resumed engine needs to go on from there
    (`Engine.snapshot` / `Engine.restore`); the backend's memories are saved beside it.

    beams: each object's survivors (with their memory histories and pathway-model states);
    lineage: a copy of the liveness and decision bookkeeping; conditioning, prompt_results,
    prompted ((object, frame) of every prompt added) and prompt_nodes (frame -> (object,
    node) of the prompts not stepped yet): what later re-prompts need; tree_rows: the
    record's length, the next node id; rejected: candidates rejected so far.
    """

    frame: int
    beams: Mapping[int, Beam]
    lineage: Lineage
    conditioning: Mapping[int, tuple[MemoryEntry, ...]]
    prompt_results: Mapping[int, PromptResult]
    prompted: frozenset[tuple[int, int]]
    prompt_nodes: Mapping[int, tuple[tuple[int, int], ...]]
    tree_rows: int
    rejected: int


class Engine:
    """Runs a `StrategySet` over a `Backend`; yields each frame's decision when it is final.

    `max_lag` forces a decision from the current best pathway once an undecided frame is that
    many frames old (for live use; the exact rule alone reproduces the final answer).
    `direction` is the order frames are tracked in (see the module docstring); the frames
    given to `run` must follow it; `sign` is +1 forward, -1 backward.
    """

    def __init__(
        self,
        strategy: StrategySet,
        backend: Backend,
        *,
        record: TreeRecord | None = None,
        max_lag: int | None = None,
        direction: Direction = "forward",
    ) -> None:
        if max_lag is not None and max_lag < 0:
            raise InputError(f"max_lag must be >= 0, got {max_lag}")
        try:
            self.sign = frame_step(direction)
        except ValueError as error:
            raise InputError(str(error)) from None
        self.direction = direction
        self.strategy = strategy
        self.backend = backend
        self.record = record if record is not None else TreeRecord()
        self.max_lag = max_lag
        self.lineage = Lineage()
        self.beams: dict[int, Beam] = {}
        self.rejected = 0
        self._conditioning: dict[int, tuple[MemoryEntry, ...]] = {}
        self._prompt_results: dict[int, PromptResult] = {}
        self._prompted: set[tuple[int, int]] = set()
        self._prompt_nodes: dict[int, list[tuple[int, int]]] = {}
        """Frame -> (object, node) of the prompts whose frame is not stepped yet."""
        self._frame: int | None = None
        """The last frame stepped."""

    def run(
        self,
        prompts: Sequence[Prompt],
        frames: Iterable[int],
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[FrameDecision]:
        """Track every prompted object through `frames`, any iterable of frame indices in
        tracking order (ascending forward, descending backward), of any length: the engine
        never reads the video's length, so a live source works as a file does (the end of
        `frames` finalises what is open)."""
        if not prompts:
            raise InputError("at least one prompt is needed")
        self.add_prompts(prompts)
        for frame in frames:
            yield from self.step(frame)
            if progress is not None:
                progress(frame)
        yield from self.finish()

    def step(self, frame: int) -> Iterator[FrameDecision]:
        """Search one more frame (after the last one stepped); yields what it decides.

        The prompts on `frame` must have been added first (`add_prompts`); a stream may add
        prompts for a frame right before stepping it (a re-prompt while streaming).

        A step is the phases below, in this order; a sweep (`treemem.pipeline.sweep`) runs
        them for several engines in lockstep, sharing one `encode` (and the batched calls)."""
        queries = self.begin_frame(frame)
        features = self.backend.encode(frame)
        proposals = None
        if queries:
            proposals = self.backend.propose(features, queries, self.options())
        step = self.select(frame, proposals)
        if proposals is not None:
            self.backend.commit(features, proposals, step.commits)
        yield from self.end_frame(step)

    # --- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> EngineState:
        """The search state after the last frame stepped. Take it between frames (after
        `step`'s decisions are consumed, from `run`'s `progress` callback): then the backend
        holds exactly the memories of the nodes the lineage keeps."""
        if self._frame is None:
            raise TreememError("no frame has been searched yet: nothing to snapshot")
        return EngineState(
            self._frame,
            dict(self.beams),
            self.lineage.copy(),
            dict(self._conditioning),
            dict(self._prompt_results),
            frozenset(self._prompted),
            {frame: tuple(nodes) for frame, nodes in self._prompt_nodes.items()},
            len(self.record),
            self.rejected,
        )

    def restore(self, state: EngineState) -> None:
        """Continue from `state` in a fresh engine (same strategy set and direction): its
        backend must hold the snapshot's memories (`MemoryExport.import_memories`) and its
        record the snapshot's rows, so node ids go on where they stopped. Then `step` the
        frames after `state.frame` and `finish` (the prompts are restored with the state;
        `run` would add them again)."""
        if self._frame is not None or self._prompted or self.beams:
            raise TreememError("restore needs a fresh engine")
        if len(self.record) != state.tree_rows:
            raise TreememError(
                f"the tree record has {len(self.record)} rows, the snapshot {state.tree_rows}: "
                "give the engine the record the snapshot was taken with"
            )
        self.beams = dict(state.beams)
        self.lineage = state.lineage.copy()
        self._conditioning = dict(state.conditioning)
        self._prompt_results = dict(state.prompt_results)
        self._prompted = set(state.prompted)
        self._prompt_nodes = {frame: list(nodes) for frame, nodes in state.prompt_nodes.items()}
        self._frame = state.frame
        self.rejected = state.rejected

    # --- one frame, in phases -------------------------------------------------------------------

    def begin_frame(self, frame: int) -> list[PathwayQuery]:
        """(Re)start the objects prompted on `frame`; return one query per pathway of every
        tracked object (objects in order, pathways in rank order): the rows `select` expects."""
        if self._frame is not None and self._position(frame) <= self._position(self._frame):
            raise InputError(
                f"frame {frame} comes after frame {self._frame}: frames go {self.direction}"
            )
        self._frame = frame
        for obj, node in self._prompt_nodes.pop(frame, []):
            self._restart(obj, frame, node)
        return [
            PathwayQuery(
                obj, self.strategy.weighting(self.strategy.memory.recall(p.history, frame))
            )
            for obj in self._tracked(frame)
            for p in self.beams[obj].pathways
        ]

    def select(self, frame: int, proposals: Proposals | None) -> FrameStep:
        """Score and choose every tracked object's survivors from `proposals`, whose rows are
        `begin_frame(frame)`'s queries in order (None when there were none); the step's
        commits name rows of these proposals."""
        if proposals is None:
            return FrameStep(frame, (), ())
        if self.strategy.pathway_model is not None and proposals.boxes is None:
            raise TreememError(
                f"strategy {self.strategy.name!r} needs candidate boxes, and the backend "
                "returned none: use a backend whose propose supports boxes=True"
            )
        if self.strategy.promotion is not None and proposals.stats is None:
            raise TreememError(
                f"strategy {self.strategy.name!r} needs mask statistics, and the backend "
                "returned none: use a backend whose propose supports mask_stats=True"
            )
        steps, row = [], 0
        for obj in self._tracked(frame):
            beam = self.beams[obj]
            n = len(beam.pathways)
            iou = proposals.iou[row : row + n]
            occlusion = proposals.occlusion[row : row + n]
            boxes = None if proposals.boxes is None else proposals.boxes[row : row + n]
            stats = None if proposals.stats is None else proposals.stats.rows(slice(row, row + n))
            steps.append(self._select(obj, frame, beam, iou, occlusion, row, boxes, stats))
            row += n
        commits = tuple(c for step in steps for c in step.commits)
        return FrameStep(frame, commits, tuple(steps))

    def end_frame(self, step: FrameStep) -> Iterator[FrameDecision]:
        """After the step's commits are stored: advance the beams, yield the decisions that
        became final, release what no pathway can read any more."""
        for object_step in step.objects:
            self._advance(object_step)
        yield from self._decisions(step.frame)
        self.backend.release(self.lineage.drain_releasable())
        self.record.forget_before(self.open_row())

    def open_row(self) -> int:
        """The first tree row of the open tail: rows before it belong to frames every object
        has decided (or to prompts recorded ahead of their frame), so no pathway still
        searching traces back through them; an "open" `TreeRecord` drops them."""
        firsts = (self.lineage.first_undecided_node(obj) for obj in self.beams)
        return min((row for row in firsts if row is not None), default=len(self.record))

    def options(self) -> ProposalOptions:
        """What the strategy set asks of the backend's prompt and propose calls."""
        return self.strategy.options()

    def _tracked(self, frame: int) -> list[int]:
        """The objects searched on `frame` (not on the frame an object was (re)prompted:
        its mask there is the prompt)."""
        return [obj for obj in self.beams if self._tracks(obj, frame)]

    def _tracks(self, obj: int, frame: int) -> bool:
        """False on the frame an object was (re)prompted: its mask there is the prompt."""
        beam = self.beams[obj]
        return self._position(beam.frame) < self._position(frame)

    def _position(self, frame: int) -> int:
        """A frame's place in tracking order (ascending in both directions; the map is its own
        inverse): the lineage and every age or "later than" test work in positions, so they
        need no direction."""
        return frame * self.sign

    def _select(
        self,
        obj: int,
        frame: int,
        beam: Beam,
        iou: Float32Array,
        occlusion: Float32Array,
        row0: int,
        boxes: Float32Array | None = None,
        stats: MaskStats | None = None,
    ) -> _Step:
        """One object's frame step: evidence, scores, survivors, then what they become.

        iou: (N, K) and occlusion: (N,) are the object's proposal rows, starting at row `row0`
        of the batched proposal; boxes: (N, K, 4) when the set has a pathway model; stats:
        the rows' mask statistics when it has a promotion rule."""
        iou, occlusion = self._reject_non_finite(obj, frame, iou, occlusion)
        model_steps = self._step_models(beam, iou, occlusion, boxes)
        promotions = self._step_promotions(frame, beam, iou, occlusion, stats)
        evidence: Evidence = iou
        if model_steps:
            evidence = np.stack([step.likelihood for step in model_steps]).astype(np.float64)
        score = self.strategy.scoring(beam.scores(), evidence)
        if beam.started:
            self._count_unscorable(obj, frame, evidence, score)
        table = CandidateTable.build(score, iou, occlusion)
        chosen = choose_survivors(table, evidence, self.strategy, started=beam.started)
        if chosen.kept.size == 0:
            raise TreememError(f"object {obj}, frame {frame}: the backend gave no usable candidate")
        first_row = self._record(obj, frame, beam, table, chosen)
        return self._grow(
            obj, frame, beam, table, chosen, first_row, row0, model_steps, promotions, stats
        )

    def _step_models(
        self,
        beam: Beam,
        iou: Float32Array,
        occlusion: Float32Array,
        boxes: Float32Array | None,
    ) -> list[PathwayStep]:
        """Each parent row's pathway-model step ([] when the set has no model)."""
        model = self.strategy.pathway_model
        if model is None:
            return []
        assert boxes is not None
        return [
            model.step(pathway.state, iou[p], boxes[p], float(occlusion[p]))
            for p, pathway in enumerate(beam.pathways)
        ]

    def _step_promotions(
        self,
        frame: int,
        beam: Beam,
        iou: Float32Array,
        occlusion: Float32Array,
        stats: MaskStats | None,
    ) -> list[PromotionStep]:
        """Each parent row's promotion-rule step ([] when the set has no promotion rule)."""
        promotion = self.strategy.promotion
        if promotion is None:
            return []
        assert stats is not None
        return [
            promotion.step(
                pathway.promotion, frame, iou[p], float(occlusion[p]), stats.rows(slice(p, p + 1))
            )
            for p, pathway in enumerate(beam.pathways)
        ]

    def _grow(
        self,
        obj: int,
        frame: int,
        beam: Beam,
        table: CandidateTable,
        chosen: Selection,
        first_row: int,
        row0: int,
        model_steps: list[PathwayStep],
        promotions: list[PromotionStep],
        stats: MaskStats | None,
    ) -> _Step:
        """The survivors as new pathways (one per slot, shared by the pathways on it) and the
        commits that store their memories; node ids are the rows `_record` gave them.

        A kept memory is visible iff its mask is non-empty at the decoder's resolution when
        the rows' mask statistics say so, else iff its row is present."""
        k = table.num_candidates
        commits, parents, grown = [], [], []
        for slot, flat in enumerate(chosen.kept.tolist()):
            parent, candidate = divmod(flat, k)
            pathway = beam.pathways[parent]
            rule = promotions[parent] if promotions else None
            promote = rule is not None and bool(rule.promote(candidate))
            commits.append(Commit(first_row + slot, row0 + parent, candidate, promote))
            parents.append(pathway.node)
            step = model_steps[parent] if model_steps else None
            occlusion = float(table.occlusion[parent])
            visible = occlusion > self.strategy.presence_threshold
            if stats is not None:
                visible = bool(stats.area_lowres[parent, candidate] > 0)
            entry = MemoryEntry(
                first_row + slot,
                frame,
                float(table.iou[parent, candidate]),
                occlusion,
                motion=None if step is None else step.motion(candidate),
                direction=self.direction,
                visible=visible,
                promoted=promote,
            )
            grown.append(
                Pathway(
                    first_row + slot,
                    float(chosen.scores[slot]),
                    self.strategy.memory.extend(pathway.history, entry),
                    slot,
                    None if step is None else step.child(candidate),
                    None if rule is None else rule.child(candidate),
                )
            )
        pathways = tuple([grown[slot] for slot in chosen.slots])
        return _Step(obj, Beam(frame, pathways, started=True), commits, parents)

    def _reject_non_finite(
        self, obj: int, frame: int, iou: Float32Array, occlusion: Float32Array
    ) -> tuple[Float32Array, Float32Array]:
        """A NaN or inf from the backend disqualifies that candidate (or that whole row); a
        rejected row's occlusion logit becomes 0, so it cannot make the frame certain."""
        bad = ~np.isfinite(iou) | ~np.isfinite(occlusion)[:, None]
        if not bad.any():
            return iou, occlusion
        self.rejected += int(bad.sum())
        log.warning("object %d, frame %d: rejected %d non-finite candidates", obj, frame, bad.sum())
        usable = np.where(np.isfinite(occlusion), occlusion, 0.0).astype(np.float32)
        return np.where(bad, np.nan, iou).astype(np.float32), usable

    def _count_unscorable(
        self, obj: int, frame: int, iou: Float32Array | FloatArray, score: FloatArray
    ) -> None:
        """A finite IoU the scoring rule cannot score (a negative IoU under the log) is a
        rejected candidate too: pruning skips non-finite scores, so count and log it here."""
        unscorable = np.isfinite(iou) & ~np.isfinite(score)
        if unscorable.any():
            self.rejected += int(unscorable.sum())
            log.warning(
                "object %d, frame %d: rejected %d candidates whose score is not finite "
                "(IoU outside [0, 1]?)", obj, frame, unscorable.sum()
            )

    def _record(
        self, obj: int, frame: int, beam: Beam, table: CandidateTable, chosen: Selection
    ) -> int:
        """Append kept rows (slot order) then pruned candidates; returns the first node id.

        `parent` is the slot the parent node was recorded in at the previous frame."""
        n, k = table.iou.shape
        kept = chosen.kept
        is_kept = np.zeros(n * k, dtype=bool)
        is_kept[kept] = True
        pruned = np.flatnonzero(~is_kept)
        flat = np.concatenate([kept, pruned])
        parents = flat // k
        return self.record.append(
            obj=obj,
            frame=frame,
            slot=np.concatenate([np.arange(kept.size), np.full(pruned.size, -1)]),
            parent=np.array([p.slot for p in beam.pathways], np.int64)[parents],
            candidate=flat % k,
            score=np.concatenate([chosen.scores, table.score.ravel()[pruned]]),
            iou=table.iou.ravel()[flat].astype(np.float64),
            occlusion=table.occlusion[parents].astype(np.float64),
            kept=np.arange(flat.size) < kept.size,
            parent_row=np.array([p.node for p in beam.pathways], np.int64)[parents],
            rule=chosen.rule,
            direction=self.direction,
        )

    def _advance(self, step: _Step) -> None:
        """Swap in the new survivors; the lineage frees what no pathway can reach any more."""
        old = self.beams[step.obj]
        for commit, parent in zip(step.commits, step.parents, strict=True):
            content = self.lineage.content_of(parent, commit.candidate)
            position = self._position(step.beam.frame)
            self.lineage.add(commit.node, step.obj, position, parent, content)
        for pathway in step.beam.pathways:
            self.lineage.hold(e.node for e in pathway.history.recent)
        self.lineage.retire(old.nodes())
        for pathway in old.pathways:
            self.lineage.unhold(e.node for e in pathway.history.recent)
        self.beams[step.obj] = step.beam

    # --- prompts --------------------------------------------------------------------------------

    def add_prompts(self, prompts: Sequence[Prompt]) -> None:
        """Store prompts as conditioning memories before their frames are tracked, as SAM 2
        does: a prompt conditions every frame of its object tracked after it is added (all of
        them when every prompt is added first, as `run` does), pointers only later frames (in
        tracking order).

        Prompts on a frame already stepped are refused: the search does not go back."""
        ordered = sorted(prompts, key=lambda p: (self._position(p.frame), p.obj))
        for prompt in ordered:
            if (prompt.obj, prompt.frame) in self._prompted:
                raise InputError(f"object {prompt.obj} has two prompts on frame {prompt.frame}")
            past = self._frame is not None and (
                self._position(prompt.frame) <= self._position(self._frame)
            )
            if prompt.frame < 0 or past:
                raise InputError(
                    f"prompt on frame {prompt.frame}, but the search is past it (frame "
                    f"{self._frame}): prompt a frame before it is tracked"
                )
            self._prompted.add((prompt.obj, prompt.frame))
        for prompt in ordered:
            node = len(self.record)
            features = self.backend.encode(prompt.frame)
            result = self.backend.prompt(features, prompt, node, self.options())
            reprompt = any(
                obj == prompt.obj and self._position(frame) < self._position(prompt.frame)
                for obj, frame in self._prompted
            )
            self.record.append(
                obj=prompt.obj,
                frame=prompt.frame,
                slot=np.zeros(1, np.int64),
                parent=np.array([0 if reprompt else -1]),
                candidate=np.array([-1]),
                score=np.zeros(1),
                iou=np.array([result.iou]),
                occlusion=np.array([result.occlusion]),
                kept=np.ones(1, bool),
                parent_row=np.array([-1]),
                rule="prompt",
                direction=self.direction,
            )
            self._prompt_nodes.setdefault(prompt.frame, []).append((prompt.obj, node))
            self._prompt_results[node] = result
            entry = MemoryEntry(
                node,
                prompt.frame,
                result.iou,
                result.occlusion,
                conditioning=True,
                direction=self.direction,
            )
            self._conditioning[prompt.obj] = (*self._conditioning.get(prompt.obj, ()), entry)

    def _restart(self, obj: int, frame: int, node: int) -> None:
        """A prompt on this frame (re)starts the object's tree from the prompted mask; the
        memory strategy decides what of the best pathway's past it keeps reading."""
        old = self.beams.get(obj)
        history = MemoryHistory(self._conditioning[obj])
        parent = -1
        if old is not None:
            parent = old.best.node
            self.record.link(node, parent)
            history = self.strategy.memory.restart(
                MemoryHistory(self._conditioning[obj], old.best.history.recent)
            )
        position = self._position(frame)
        self.lineage.add(node, obj, position, parent, self.lineage.new_content(), pinned=True)
        self.lineage.hold(e.node for e in history.recent)
        if old is not None:
            self.lineage.retire(old.nodes())
            for pathway in old.pathways:
                self.lineage.unhold(e.node for e in pathway.history.recent)
        model = self.strategy.pathway_model
        state = None if model is None else model.start(self._prompt_results[node])
        promotion = self.strategy.promotion
        rule = None if promotion is None else promotion.start(self._prompt_results[node])
        self.beams[obj] = Beam(frame, (Pathway(node, 0.0, history, 0, state, rule),))

    # --- decisions ------------------------------------------------------------------------------

    def _decisions(self, frame: int) -> Iterator[FrameDecision]:
        for obj, beam in self.beams.items():
            for position, node in self.lineage.decided(obj):
                yield FrameDecision(obj, self._position(position), node)
            oldest = self.lineage.undecided_since(obj)
            now = self._position(frame)
            if self.max_lag is not None and oldest is not None and now - oldest >= self.max_lag:
                yield from self._force(obj, beam, now - self.max_lag, forced=True)

    def _force(self, obj: int, beam: Beam, until: int, *, forced: bool) -> Iterator[FrameDecision]:
        """Decide `obj`'s frames up to position `until` from the best pathway's ancestry
        (positions, as the lineage keeps them: see `_position`)."""
        oldest = self.lineage.undecided_since(obj)
        if oldest is None or until < oldest:
            return
        path: list[tuple[int, int]] = []
        node = beam.best.node
        while True:
            position = self.lineage.frame(node)
            if position <= until:
                path.append((position, node))
            if position <= oldest:
                break
            node = self.lineage.parent(node)
        self.lineage.force(obj, until)
        for position, node in reversed(path):
            yield FrameDecision(obj, self._position(position), node, forced=forced)

    def finish(self) -> Iterator[FrameDecision]:
        """End of the frames (a video's last frame, or a stream that stopped): the best
        pathway's ancestry decides what is still open (exact)."""
        for obj, beam in self.beams.items():
            yield from self._force(obj, beam, self._position(beam.frame), forced=False)
        self.backend.release(self.lineage.drain_releasable())
