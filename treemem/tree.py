"""The pathway tree, recorded as flat columns while the search runs.

One row per candidate per frame: kept candidates once per slot they fill (the clone start
fills every slot from one candidate), pruned ones with slot -1. A kept row is a tree node and
its row number is the node id the engine and backend use. JSON lines carry exactly
`object, frame, slot, parent, candidate, score, iou, occlusion, kept, rule, direction`;
`parent` is the slot at the previous frame in tracking order (frame - 1 forward, frame + 1
backward; -1 for a first prompt), which is enough to rebuild every edge. `rule` is one value
per object and frame, repeated on its rows: which rule chose that frame's survivors
(`treemem.types.SurvivorRule`); "" where it was not recorded (files written before treemem
recorded it have no `rule` key and load with ""). `direction` is the search the row belongs
to, "forward" or "backward" (a two-way run records both searches in one tree; files written
before it was recorded have no `direction` key and load as "forward").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from treemem.types import (
    DIRECTIONS,
    BoolArray,
    Direction,
    FloatArray,
    IntArray,
    SurvivorRule,
    TreememError,
    frame_step,
)

if TYPE_CHECKING:
    import networkx as nx

FIELDS = (
    "object", "frame", "slot", "parent", "candidate", "score", "iou", "occlusion", "kept", "rule",
    "direction",
)
_INT_FIELDS = ("object", "frame", "slot", "parent", "candidate")

RecordKeep = Literal["all", "open"]
"""What a `TreeRecord` holds in memory: "all" every row; "open" the open tail only (see
`TreeRecord`)."""
RECORD_KEEPS: tuple[str, ...] = get_args(RecordKeep)
_DROP_AT_LEAST = 4096
"""An "open" record drops rows in batches of at least this many (and at least half of what it
holds), so dropping costs O(1) per row, not a copy of the tail per frame."""

RecordedRule = SurvivorRule | Literal[""]
"""A row's survivor rule; "" where none was recorded (older files, hand-built rows)."""
RULES: tuple[str, ...] = ("", *get_args(SurvivorRule))
StrArray = npt.NDArray[np.str_]


@dataclass(frozen=True)
class TreeColumns:
    """The whole record as arrays of equal length (one entry per row); `rule` holds each
    row's frame's survivor rule and `direction` its search's direction (see the module
    docstring)."""

    object: IntArray
    frame: IntArray
    slot: IntArray
    parent: IntArray
    candidate: IntArray
    score: FloatArray
    iou: FloatArray
    occlusion: FloatArray
    kept: BoolArray
    rule: StrArray
    direction: StrArray

    def __len__(self) -> int:
        return int(self.frame.shape[0])


class TreeRecord:
    """Append-only record of every candidate the search saw.

    `append` costs a list append per frame and object: a block keeps its object, frame and
    rule as one value each, and the columns are built (and cached) only when read.
    `parent_row` (the parent's node id) is kept alongside for fast trace-back.

    `keep` says what stays in memory. "all" (the default) holds every row: the record
    `treemem.track` returns, which `best_path`, `to_networkx` and `save_jsonl` read whole.
    "open" holds the open tail only, so a long run's memory stays flat: after each frame the
    engine says which rows are behind it (`forget_before`: rows of frames every object has
    decided, which no pathway still searching can trace back through), and those are dropped
    in batches. Row numbers stay global (`len` counts every row appended, `first_row` is the
    first one held, node ids never move), so what is written is the same either way. A record
    that is streamed to a file (`hold_until_written`: a run folder's tree.jsonl) drops a row
    only once `write_new_rows` has written it. One row can be dropped while it is still to be
    used: a prompt recorded ahead of its frame (a file run stores every prompt first); its
    `link` is then not kept, which only trace-back reads.
    """

    def __init__(self, *, keep: RecordKeep = "all") -> None:
        if keep not in RECORD_KEEPS:
            raise ValueError(f"keep must be one of {RECORD_KEEPS}, got {keep!r}")
        self.keep: RecordKeep = keep
        self._first = 0
        """The number of the first row held (rows before it were dropped)."""
        self._behind = 0
        """Rows before this one may be dropped (`forget_before`, capped at the rows written
        when the record is streamed to a file)."""
        self._until_written = False
        self._pending: list[tuple[Any, ...]] = []
        """Blocks appended since the columns were last built: (object, frame, rule, direction,
        then the per-row arrays slot, parent, candidate, score, iou, occlusion, kept)."""
        self._parent_rows: list[IntArray] = []
        self._rows = 0
        self._written = 0
        self._cache: TreeColumns | None = None
        self._parent_row_cache: IntArray | None = None
        self._links: dict[int, int] = {}

    def __len__(self) -> int:
        return self._rows

    def append(
        self,
        *,
        obj: int,
        frame: int,
        slot: IntArray,
        parent: IntArray,
        candidate: IntArray,
        score: FloatArray,
        iou: FloatArray,
        occlusion: FloatArray,
        kept: BoolArray,
        parent_row: IntArray,
        rule: RecordedRule = "",
        direction: Direction = "forward",
    ) -> int:
        """Append one block of rows (one object's at one frame, chosen by `rule`, in a search
        tracking in `direction`); returns the row id of its first row."""
        first = self._rows
        block = (obj, frame, rule, direction, slot, parent, candidate, score, iou, occlusion,
                 kept)
        self._pending.append(block)
        self._parent_rows.append(parent_row)
        self._rows += int(slot.shape[0])
        self._parent_row_cache = None
        return first

    def link(self, row: int, parent_row: int) -> None:
        """Attach a prompt row recorded ahead of time to the node it continues (nothing when
        an "open" record has dropped the row)."""
        if row < self._first:
            return
        self._links[row] = parent_row
        self._parent_row_cache = None

    # --- what stays in memory -----------------------------------------------------------------

    @property
    def first_row(self) -> int:
        """The number of the first row held: 0 unless an "open" record dropped rows."""
        return self._first

    @property
    def held(self) -> int:
        """How many rows are in memory (`len(self) - first_row`)."""
        return self._rows - self._first

    def hold_until_written(self) -> None:
        """This record is streamed to a file with `write_new_rows`: drop no row before it is
        written. Call it before rows are dropped (before the first frame is searched)."""
        if self._first > self._written:
            raise TreememError(
                f"rows {self._written}..{self._first - 1} were dropped before they were "
                "written: hold the record until written before the search starts"
            )
        self._until_written = True
        self._behind = min(self._behind, self._written)

    def forget_before(self, row: int) -> None:
        """Rows before `row` are behind the open tail (what the engine says after each
        frame): an "open" record drops them (once written, when held until written); an "all"
        record keeps them. Rows go in batches (`_DROP_AT_LEAST`)."""
        if self.keep == "all":
            return
        bound = min(row, self._written) if self._until_written else row
        self._behind = max(self._behind, min(bound, self._rows))
        behind = self._behind - self._first
        if behind < max(_DROP_AT_LEAST, self.held // 2):
            return
        columns, parents = self.columns(), self.parent_rows()
        self._cache = TreeColumns(**{f: getattr(columns, f)[behind:].copy() for f in FIELDS})
        self._parent_row_cache = parents[behind:].copy()
        self._parent_rows = [self._parent_row_cache]
        self._first = self._behind
        self._links = {r: p for r, p in self._links.items() if r >= self._first}

    @classmethod
    def continuing(cls, rows: int) -> TreeRecord:
        """An "open" record that goes on after `rows` rows already written elsewhere (a run
        resumed from a snapshot appends to its tree.jsonl): it holds none of them, and its
        next row is number `rows`."""
        record = cls(keep="open")
        record._rows = record._written = record._first = record._behind = rows
        return record

    def _check_whole(self, what: str) -> None:
        if self._first:
            raise TreememError(
                f"{what} needs the whole tree record, and this one holds rows {self._first} on "
                "only (it keeps the open tail of a stream): read the run's tree.jsonl instead"
            )

    def columns(self) -> TreeColumns:
        """The rows held (every row unless an "open" record dropped some: row `first_row` is
        entry 0)."""
        if self._pending or self._cache is None:
            fresh = _merge(self._pending)
            self._cache = fresh if self._cache is None else _concatenate(self._cache, fresh)
            self._pending = []
        return self._cache

    def parent_rows(self) -> IntArray:
        """(rows held,) the node id of each row's parent, -1 for roots."""
        if self._parent_row_cache is None:
            rows = np.concatenate(self._parent_rows) if self._parent_rows else np.zeros(0, np.int64)
            for row, parent in self._links.items():
                rows[row - self._first] = parent
            self._parent_row_cache = rows
            self._parent_rows = [rows]
        return self._parent_row_cache

    def trace_back(self, node: int) -> list[int]:
        """Node ids from `node` back to its root, newest first; in a record that dropped rows,
        back to its oldest ancestor still held."""
        if not self._first <= node < self._rows:
            raise TreememError(f"row {node} is not held (rows {self._first}..{self._rows - 1} are)")
        parents = self.parent_rows()
        path = [node]
        while (parent := int(parents[path[-1] - self._first])) >= self._first:
            path.append(parent)
        return path

    def best_path(self, obj: int) -> dict[int, int]:
        """Frame -> node of `obj`'s final answer: in each direction searched, slot 0 of its
        last frame in tracking order, traced back. A two-way tree answers with the forward
        search from the object's first prompt on and the backward search before it (the
        frames a two-way run writes from each)."""
        self._check_whole("best_path")
        cols = self.columns()
        mask = (cols.object == obj) & cols.kept & (cols.slot == 0)
        if not mask.any():
            raise TreememError(f"the tree has no kept node for object {obj}")
        path: dict[int, int] = {}
        for direction in reversed(DIRECTIONS):  # forward last: it wins the frames both cover
            rows = np.flatnonzero(mask & (cols.direction == direction))
            if rows.size:
                sign = frame_step(direction)
                last = int(rows[np.argmax(cols.frame[rows] * sign)])
                path.update({int(cols.frame[n]): n for n in self.trace_back(last)})
        return path

    # --- JSON lines -------------------------------------------------------------------------

    def _rows_as_json(self, start: int) -> Iterator[str]:
        """Rows `start` on (row numbers), which must be held."""
        if start < self._first:
            raise TreememError(
                f"rows {start}..{self._first - 1} were dropped before they were written (an "
                "\"open\" record streamed to a file must be held until written)"
            )
        cols = self.columns()
        start -= self._first
        ints = [getattr(cols, f)[start:].tolist() for f in _INT_FIELDS]
        floats = [
            cols.score[start:].tolist(),
            cols.iou[start:].tolist(),
            cols.occlusion[start:].tolist(),
        ]
        kept = cols.kept[start:].tolist()
        rule = cols.rule[start:].tolist()
        direction = cols.direction[start:].tolist()
        for i in range(len(kept)):
            values: list[Any] = [c[i] for c in ints] + [c[i] for c in floats]
            values += [kept[i], rule[i], direction[i]]
            yield json.dumps(dict(zip(FIELDS, values, strict=True)), allow_nan=True)

    def write_new_rows(self, stream: IO[str]) -> int:
        """Write the rows not yet written to `stream` (one JSON object per line)."""
        count = 0
        for line in self._rows_as_json(self._written):
            stream.write(line + "\n")
            count += 1
        self._written += count
        return count

    def save_jsonl(self, path: Path) -> None:
        self._check_whole("save_jsonl")
        with open(path, "w", encoding="utf-8") as stream:
            for line in self._rows_as_json(0):
                stream.write(line + "\n")

    @classmethod
    def load_jsonl(cls, path: Path) -> TreeRecord:
        """Read a tree.jsonl; rows without `rule` or `direction` (older files) read rule ""
        and direction "forward"."""
        rows = []
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    rule = row.get("rule", "")
                    direction = row.get("direction", "forward")
                    rows.append((*(row[f] for f in FIELDS[:-2]), rule, direction))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                    raise TreememError(
                        f"{path}:{number}: not a tree record row ({error})"
                    ) from None
                if rule not in RULES:
                    raise TreememError(f"{path}:{number}: unknown survivor rule {rule!r}")
                if direction not in DIRECTIONS:
                    raise TreememError(f"{path}:{number}: unknown direction {direction!r}")
        return cls.from_rows(rows)

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]]) -> TreeRecord:
        """A record from row tuples in FIELDS order; tuples may stop before `rule` (rule "")
        or before `direction` ("forward")."""
        record = cls()
        if not rows:
            return record
        values = list(zip(*(row[:9] for row in rows), strict=True))
        ints = [np.asarray(v, dtype=np.int64) for v in values[:5]]
        floats = [np.asarray(v, dtype=np.float64) for v in values[5:8]]
        columns = TreeColumns(
            object=ints[0],
            frame=ints[1],
            slot=ints[2],
            parent=ints[3],
            candidate=ints[4],
            score=floats[0],
            iou=floats[1],
            occlusion=floats[2],
            kept=np.asarray(values[8], dtype=bool),
            rule=np.asarray([row[9] if len(row) > 9 else "" for row in rows], dtype=np.str_),
            direction=np.asarray(
                [row[10] if len(row) > 10 else "forward" for row in rows], dtype=np.str_
            ),
        )
        obj, frame, slot, parent = ints[:4]
        keys = list(zip(obj.tolist(), columns.direction.tolist(), frame.tolist(), strict=True))
        node_at = {
            (*key, int(s)): i
            for i, (key, s, k) in enumerate(zip(keys, slot, columns.kept, strict=True))
            if k
        }
        parent_row = np.array(
            [
                node_at.get((o, d, f - frame_step(d), int(p)), -1) if p >= 0 else -1
                for (o, d, f), p in zip(keys, parent, strict=True)
            ],
            dtype=np.int64,
        )
        record._cache = columns
        record._parent_rows = [parent_row]
        record._rows = len(rows)
        record._written = len(rows)
        return record

    def to_networkx(self) -> nx.DiGraph:
        """A DiGraph with one node per row (id = row number, the fields as attributes) and
        an edge from each row's parent node."""
        import networkx as nx

        self._check_whole("to_networkx")
        cols = self.columns()
        graph = nx.DiGraph()
        data = {f: getattr(cols, f).tolist() for f in FIELDS}
        graph.add_nodes_from((i, {f: data[f][i] for f in FIELDS}) for i in range(len(cols)))
        parents = self.parent_rows().tolist()
        graph.add_edges_from((p, i) for i, p in enumerate(parents) if p >= 0)
        return graph


def _merge(blocks: list[tuple[Any, ...]]) -> TreeColumns:
    """Columns of appended blocks: each block's object, frame and rule repeated on its rows."""
    sizes = [int(block[4].shape[0]) for block in blocks]
    keys = [np.repeat(np.array([b[i] for b in blocks]), sizes) for i in range(4)]
    if blocks:
        rows = [np.concatenate(parts) for parts in zip(*(b[4:] for b in blocks), strict=True)]
    else:
        rows = [np.zeros(0, np.int64)] * 3 + [np.zeros(0)] * 3 + [np.zeros(0, bool)]
    return TreeColumns(
        object=keys[0].astype(np.int64),
        frame=keys[1].astype(np.int64),
        slot=rows[0].astype(np.int64),
        parent=rows[1].astype(np.int64),
        candidate=rows[2].astype(np.int64),
        score=rows[3].astype(np.float64),
        iou=rows[4].astype(np.float64),
        occlusion=rows[5].astype(np.float64),
        kept=rows[6].astype(bool),
        rule=keys[2].astype(np.str_),
        direction=keys[3].astype(np.str_),
    )


def _concatenate(first: TreeColumns, second: TreeColumns) -> TreeColumns:
    merged = {f: np.concatenate([getattr(first, f), getattr(second, f)]) for f in FIELDS}
    return TreeColumns(**merged)
