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
the predicted IoU.

An engine runs in one direction (`treemem.types.Direction`). Backward, frames are visited in
descending order from the start frame, as sam2's `propagate_in_video(reverse=True)` does:
every "before", "after" and "how old" of the search is taken in tracking order (frame
positions `frame * step`), and memory entries carry the direction so memory selection reads
the frames already tracked (sam2's `track_in_reverse`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from treemem.backend import Backend
from treemem.lineage import Lineage
from treemem.strategy import CandidateTable, Evidence, PathwayStep, StrategySet
from treemem.survivors import Selection, choose_survivors
from treemem.tree import TreeRecord
from treemem.types import (
    Commit,
    Direction,
    Float32Array,
    FloatArray,
    FrameDecision,
    InputError,
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
    pathway-model state (None when the strategy set has no model).
    """

    node: int
    score: float
    history: MemoryHistory
    slot: int
    state: object = None


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
        prompts for a frame right before stepping it (a re-prompt while streaming)."""
        if self._frame is not None and self._position(frame) <= self._position(self._frame):
            raise InputError(
                f"frame {frame} comes after frame {self._frame}: frames go {self.direction}"
            )
        self._frame = frame
        features = self.backend.encode(frame)
        for obj, node in self._prompt_nodes.pop(frame, []):
            self._restart(obj, frame, node)
        steps, proposals = self._search(frame, features)
        if proposals is not None:
            commits = [c for step in steps for c in step.commits]
            self.backend.commit(features, proposals, commits)
        for step in steps:
            self._advance(step)
        yield from self._decisions(frame)
        self.backend.release(self.lineage.drain_releasable())

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

    # --- one frame ----------------------------------------------------------------------------

    def _search(self, frame: int, features: object) -> tuple[list[_Step], Proposals | None]:
        """Expand every started pathway of every object in one batched proposal; returns the
        steps and the proposals their commits are made from (None when nothing is tracked)."""
        tracked = [obj for obj in self.beams if self._tracks(obj, frame)]
        queries = [
            PathwayQuery(
                obj, self.strategy.weighting(self.strategy.memory.recall(p.history, frame))
            )
            for obj in tracked
            for p in self.beams[obj].pathways
        ]
        if not queries:
            return [], None
        proposals = self._propose(features, queries)
        steps, row = [], 0
        for obj in tracked:
            beam = self.beams[obj]
            n = len(beam.pathways)
            iou = proposals.iou[row : row + n]
            occlusion = proposals.occlusion[row : row + n]
            boxes = None if proposals.boxes is None else proposals.boxes[row : row + n]
            steps.append(self._select(obj, frame, beam, iou, occlusion, row, boxes))
            row += n
        return steps, proposals

    def _propose(self, features: object, queries: list[PathwayQuery]) -> Proposals:
        """The batched proposal, with what the strategy set asks of the backend."""
        proposals = self.backend.propose(features, queries, self._options())
        if self.strategy.pathway_model is not None and proposals.boxes is None:
            raise TreememError(
                f"strategy {self.strategy.name!r} needs candidate boxes, and the backend "
                "returned none: use a backend whose propose supports boxes=True"
            )
        return proposals

    def _options(self) -> ProposalOptions:
        """What the strategy set asks of the backend's prompt and propose calls."""
        return ProposalOptions(
            boxes=self.strategy.pathway_model is not None,
            presence_threshold=self.strategy.presence_threshold,
        )

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
    ) -> _Step:
        """One object's frame step: evidence, scores, survivors, then what they become.

        iou: (N, K) and occlusion: (N,) are the object's proposal rows, starting at row `row0`
        of the batched proposal; boxes: (N, K, 4) when the set has a pathway model."""
        iou, occlusion = self._reject_non_finite(obj, frame, iou, occlusion)
        model_steps = self._step_models(beam, iou, occlusion, boxes)
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
        return self._grow(obj, frame, beam, table, chosen, first_row, row0, model_steps)

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
    ) -> _Step:
        """The survivors as new pathways (one per slot, shared by the pathways on it) and the
        commits that store their memories; node ids are the rows `_record` gave them."""
        k = table.num_candidates
        commits, parents, grown = [], [], []
        for slot, flat in enumerate(chosen.kept.tolist()):
            parent, candidate = divmod(flat, k)
            pathway = beam.pathways[parent]
            commits.append(Commit(first_row + slot, row0 + parent, candidate))
            parents.append(pathway.node)
            step = model_steps[parent] if model_steps else None
            entry = MemoryEntry(
                first_row + slot,
                frame,
                float(table.iou[parent, candidate]),
                float(table.occlusion[parent]),
                motion=None if step is None else step.motion(candidate),
                direction=self.direction,
            )
            grown.append(
                Pathway(
                    first_row + slot,
                    float(chosen.scores[slot]),
                    self.strategy.memory.extend(pathway.history, entry),
                    slot,
                    None if step is None else step.child(candidate),
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
            result = self.backend.prompt(features, prompt, node, self._options())
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
        self.beams[obj] = Beam(frame, (Pathway(node, 0.0, history, 0, state),))

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
