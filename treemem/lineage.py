"""Which tree nodes are still alive, which frames are decided, which memories can go.

A node is live while it is a surviving pathway or an ancestor of one. Frame i of an object is
decided once every live node at i has the same content (same parent content, same
candidate): then every pathway, whichever wins at the end, gives the same mask there, so
emitting it now is exact. A node's backend resources are released once its mask is no longer
needed (dead, or its frame emitted) and no surviving pathway's memory history refers to it.

"Frames" here are positions in tracking order (the engine passes `frame * step`, so a
backward search's frames ascend too): the lineage itself has no direction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


@dataclass(slots=True)
class _Node:
    obj: int
    frame: int
    parent: int
    content: int
    refs: int = 1  # 1 for being a survivor + one per live child
    history_refs: int = 0
    emitted: bool = False
    pinned: bool = False


@dataclass(slots=True)
class _Frontier:
    """One object's undecided frames, oldest first, each with its nodes."""

    first_frame: int
    frames: deque[list[int]] = field(default_factory=deque)


class Lineage:
    """Liveness, exact decisions and release bookkeeping for all objects of a run."""

    def __init__(self) -> None:
        self._nodes: dict[int, _Node] = {}
        self._frontiers: dict[int, _Frontier] = {}
        self._contents: dict[int, tuple[int, dict[tuple[int, int], int]]] = {}
        self._next_content = 0
        self._releasable: list[int] = []

    def __len__(self) -> int:
        """Nodes currently tracked (live, or still held for memory)."""
        return len(self._nodes)

    def copy(self) -> Lineage:
        """An independent copy, for a snapshot of the search (`Engine.snapshot`): the nodes
        and frontiers are copied, the content tables' keys and values are immutable."""
        other = Lineage()
        other._nodes = {node: replace(state) for node, state in self._nodes.items()}
        other._frontiers = {
            obj: _Frontier(f.first_frame, deque(list(nodes) for nodes in f.frames))
            for obj, f in self._frontiers.items()
        }
        other._contents = {obj: (f, dict(t)) for obj, (f, t) in self._contents.items()}
        other._next_content = self._next_content
        other._releasable = list(self._releasable)
        return other

    def content_of(self, parent: int, candidate: int) -> int:
        """An id shared by all nodes that are the same candidate of the same content.

        One object's step expands the survivors of one frame, and later steps expand only
        nodes made after it (whose content ids are new), so an object needs the table of its
        latest parent frame only: the older ones are dropped, and memory stays flat over a
        stream of any length."""
        state = self._nodes[parent]
        frame, table = self._contents.get(state.obj, (state.frame, {}))
        if frame != state.frame:
            table = {}
        self._contents[state.obj] = (state.frame, table)
        key = (state.content, candidate)
        content = table.get(key)
        if content is None:
            content = table[key] = self.new_content()
        return content

    def new_content(self) -> int:
        """A content id shared with nothing (a prompt's mask)."""
        self._next_content += 1
        return self._next_content - 1

    def add(
        self, node: int, obj: int, frame: int, parent: int, content: int, *, pinned: bool = False
    ) -> None:
        """A new survivor. Pinned nodes (prompts) keep their memory for the whole run."""
        self._nodes[node] = _Node(
            obj, frame, parent if parent in self._nodes else -1, content, pinned=pinned
        )
        if parent in self._nodes:
            self._nodes[parent].refs += 1
        frontier = self._frontiers.setdefault(obj, _Frontier(frame))
        index = frame - frontier.first_frame
        while len(frontier.frames) <= index:
            frontier.frames.append([])
        frontier.frames[index].append(node)

    def retire(self, survivors: Iterable[int]) -> None:
        """These nodes stop being survivors (their step is over); dead branches cascade."""
        for node in survivors:
            self._unref(node)

    def _unref(self, node: int) -> None:
        while node >= 0:
            state = self._nodes.get(node)
            if state is None:
                return
            state.refs -= 1
            if state.refs > 0:
                return
            self._maybe_release(node, state)
            node = state.parent

    def _maybe_release(self, node: int, state: _Node) -> None:
        if state.pinned:
            return
        if (state.refs <= 0 or state.emitted) and state.history_refs <= 0:
            self._releasable.append(node)
            del self._nodes[node]

    def hold(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            state = self._nodes.get(node)
            if state is not None:
                state.history_refs += 1

    def unhold(self, nodes: Iterable[int]) -> None:
        for node in nodes:
            state = self._nodes.get(node)
            if state is not None:
                state.history_refs -= 1
                self._maybe_release(node, state)

    def decided(self, obj: int) -> list[tuple[int, int]]:
        """Pop the frames of `obj` whose live nodes agree: (frame, node) oldest first."""
        frontier = self._frontiers.get(obj)
        out: list[tuple[int, int]] = []
        while frontier is not None and frontier.frames:
            live = [n for n in frontier.frames[0] if self._is_live(n)]
            if len({self._nodes[n].content for n in live}) != 1:
                break
            out.append((frontier.first_frame, live[0]))
            self._emit(frontier)
        return out

    def force(self, obj: int, frame: int) -> None:
        """Mark frames of `obj` up to `frame` as emitted (a forced or final decision)."""
        frontier = self._frontiers.get(obj)
        while frontier is not None and frontier.frames and frontier.first_frame <= frame:
            self._emit(frontier)

    def undecided_since(self, obj: int) -> int | None:
        frontier = self._frontiers.get(obj)
        if frontier is None or not frontier.frames:
            return None
        return frontier.first_frame

    def first_undecided_node(self, obj: int) -> int | None:
        """The lowest node id on `obj`'s oldest undecided frame (None when every frame of it
        is decided): the engine's tree rows of that frame start there."""
        frontier = self._frontiers.get(obj)
        if frontier is None:
            return None
        return next((min(nodes) for nodes in frontier.frames if nodes), None)

    def _emit(self, frontier: _Frontier) -> None:
        for node in frontier.frames.popleft():
            state = self._nodes.get(node)
            if state is not None:
                state.emitted = True
                self._maybe_release(node, state)
        frontier.first_frame += 1

    def _is_live(self, node: int) -> bool:
        state = self._nodes.get(node)
        return state is not None and state.refs > 0

    def frame(self, node: int) -> int:
        return self._nodes[node].frame

    def parent(self, node: int) -> int:
        state = self._nodes.get(node)
        return -1 if state is None else state.parent

    def drain_releasable(self) -> list[int]:
        out, self._releasable = self._releasable, []
        return out
