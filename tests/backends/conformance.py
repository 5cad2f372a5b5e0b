"""The backend conformance suite: `treemem.backend.Backend`'s contract as plain checks.

Each check takes a `BackendCase` (how to make a fresh backend, and what to prompt it with),
drives the backend through a few frames by hand, and raises AssertionError naming the rule a
backend broke. The checks use no pytest machinery, so the same functions run in the
parametrised conformance tests (every shipped backend passes every check) and in the test
that shows the suite catches defects (deliberately broken backends fail them).

A new backend is accepted by adding one `BackendCase` to `CASES` in test_conformance.py and
passing every check in `CHECKS`. The scenario every check builds on: object prompts on frame
0 (nodes 0..), all K candidates of each object committed on frame 1 (the children), and on
frame 2 the branches: each object's prompt-only plan and one plan per child, so one batch
mixes objects, memory layouts and memory contents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from treemem.backend import Backend, MemoryExport
from treemem.geometry import mask_stats
from treemem.types import (
    Commit,
    ConfigError,
    MemoryContractError,
    MemoryPlan,
    MemoryRef,
    PathwayQuery,
    Prompt,
    ProposalOptions,
    Proposals,
)


@dataclass(frozen=True)
class BackendCase:
    """One backend under test.

    make: a fresh backend over a video of at least 4 frames (same arguments every call, so
    two backends from it must agree bit for bit). prompts: mask prompts on frame 0, one per
    object (at least 2 objects). held: how many memories the backend holds now (what
    `release` must bring down; identical children may share one). supported: the
    `ProposalOptions` fields it implements; asking for any other must raise ConfigError.
    batch_atol: how far a row computed in a batch may be from the same row computed alone
    (0: exactly equal; a model whose batched matrix products take other kernels than a
    single row's may need about 1e-4).
    """

    name: str
    make: Callable[[], Backend]
    prompts: tuple[Prompt, ...]
    held: Callable[[Backend], int]
    supported: frozenset[str] = frozenset(
        {"boxes", "presence_threshold", "mask_stats", "promotion"}
    )
    batch_atol: float = 0.0


def _raises(expected: type[Exception], rule: str, call: Callable[[], object]) -> Exception:
    """Run `call`; AssertionError (naming `rule`) unless it raises `expected`."""
    try:
        call()
    except expected as error:
        return error
    raise AssertionError(f"{rule}: expected {expected.__name__}, nothing was raised")


def _options(case: BackendCase, *, boxes: bool = True) -> ProposalOptions:
    return ProposalOptions(boxes=boxes and "boxes" in case.supported)


def prompt_plan(prompt_node: int) -> MemoryPlan:
    """Frame 1's plan: the prompt as conditioning memory and its pointer."""
    return MemoryPlan((MemoryRef(prompt_node, 0),), (MemoryRef(prompt_node, 1),))


def child_plan(prompt_node: int, child: int, gap: int = 1) -> MemoryPlan:
    """A later frame's plan: the prompt, and one committed node `gap` frames back."""
    return MemoryPlan(
        (MemoryRef(prompt_node, 0), MemoryRef(child, gap)),
        (MemoryRef(prompt_node, gap + 1), MemoryRef(child, gap)),
    )


@dataclass
class World:
    """A backend after the prompts (frame 0) and the children (frame 1) are stored."""

    backend: Backend
    objects: list[int]
    prompt_nodes: list[int]
    children: dict[int, list[int]]
    """Each object's frame-1 children, one per candidate (k-th candidate: children[obj][k])."""
    k: int
    next_node: int = 1000
    boxes: bool = False
    """Whether `check_memory_export`'s continuation asks for boxes."""

    def fresh(self, count: int) -> list[int]:
        nodes = list(range(self.next_node, self.next_node + count))
        self.next_node += count
        return nodes

    def branches(self) -> list[PathwayQuery]:
        """Frame 2's queries: per object, its prompt-only plan, then one per child."""
        queries = []
        for obj, prompt_node in zip(self.objects, self.prompt_nodes, strict=True):
            queries.append(PathwayQuery(obj, prompt_plan(prompt_node)))
            queries += [PathwayQuery(obj, child_plan(prompt_node, c)) for c in self.children[obj]]
        return queries

    def commit(
        self, features: object, proposals: Proposals, picks: Sequence[tuple[int, int]]
    ) -> list[int]:
        """Commit (row, candidate) picks as fresh nodes; returns the nodes."""
        nodes = self.fresh(len(picks))
        commits = [Commit(n, row, k) for n, (row, k) in zip(nodes, picks, strict=True)]
        self.backend.commit(features, proposals, commits)
        return nodes


def grow(case: BackendCase) -> World:
    """A fresh backend with the prompts on frame 0 and every candidate committed on frame 1."""
    assert len(case.prompts) >= 2, f"{case.name}: a case needs at least two objects"
    backend = case.make()
    assert backend.num_frames >= 4, f"{case.name}: a case needs a video of at least 4 frames"
    features = backend.encode(0)
    objects = [p.obj for p in case.prompts]
    prompt_nodes = list(range(len(case.prompts)))
    for node, prompt in zip(prompt_nodes, case.prompts, strict=True):
        backend.prompt(features, prompt, node, ProposalOptions())
    features = backend.encode(1)
    queries = [PathwayQuery(o, prompt_plan(p)) for o, p in zip(objects, prompt_nodes, strict=True)]
    proposals = backend.propose(features, queries, _options(case, boxes=False))
    k = proposals.iou.shape[1]
    world = World(backend, objects, prompt_nodes, {}, k)
    for row, obj in enumerate(objects):
        world.children[obj] = world.commit(features, proposals, [(row, c) for c in range(k)])
    return world


def _same(rule: str, a: Proposals, b: Proposals, atol: float = 0.0) -> None:
    """Proposals equal (exactly when atol is 0)."""
    pairs = [("iou", a.iou, b.iou), ("occlusion", a.occlusion, b.occlusion)]
    if a.boxes is not None or b.boxes is not None:
        assert a.boxes is not None and b.boxes is not None, f"{rule}: boxes on one side only"
        pairs.append(("boxes", a.boxes, b.boxes))
    for name, x, y in pairs:
        _close(f"{rule} ({name})", x, y, atol)


def _close(rule: str, x: np.ndarray, y: np.ndarray, atol: float = 0.0) -> None:
    assert x.shape == y.shape, f"{rule}: shapes {x.shape} and {y.shape}"
    if atol == 0.0:
        assert np.array_equal(x, y, equal_nan=True), f"{rule}: not bit for bit equal"
    else:
        np.testing.assert_allclose(x, y, atol=atol, rtol=0.0, err_msg=rule)


def _rows(proposals: Proposals, rows: Sequence[int]) -> Proposals:
    index = np.asarray(rows)
    boxes = None if proposals.boxes is None else proposals.boxes[index]
    return Proposals(proposals.iou[index], proposals.occlusion[index], boxes)


# --- the checks ---------------------------------------------------------------------------------


def check_shapes_and_dtypes(case: BackendCase) -> None:
    """Proposals are (N, K) / (N,) / (N, K, 4) float32, with boxes exactly when asked for;
    mask logits are (H, W) float32 at video resolution, for prompted and committed nodes."""
    world = grow(case)
    backend = world.backend
    features = backend.encode(2)
    queries = world.branches()
    n = len(queries)
    for boxes in (False, True):
        proposals = backend.propose(features, queries, _options(case, boxes=boxes))
        assert proposals.iou.shape == (n, world.k), f"iou is {proposals.iou.shape}, not (N, K)"
        assert proposals.iou.dtype == np.float32, f"iou is {proposals.iou.dtype}"
        assert proposals.occlusion.shape == (n,), f"occlusion is {proposals.occlusion.shape}"
        assert proposals.occlusion.dtype == np.float32, f"occlusion is {proposals.occlusion.dtype}"
        if not (boxes and "boxes" in case.supported):
            assert proposals.boxes is None, "boxes returned without being asked for"
            continue
        assert proposals.boxes is not None, "boxes asked for, none returned"
        assert proposals.boxes.shape == (n, world.k, 4), f"boxes are {proposals.boxes.shape}"
        assert proposals.boxes.dtype == np.float32, f"boxes are {proposals.boxes.dtype}"
        x1, y1, x2, y2 = np.moveaxis(proposals.boxes, -1, 0)
        assert np.all((x1 <= x2) & (y1 <= y2)), "a box has x1 > x2 or y1 > y2"
    committed = world.commit(features, proposals, [(0, 0), (n - 1, world.k - 1)])
    for node in [*world.prompt_nodes, world.children[world.objects[0]][0], *committed]:
        logits = backend.mask_logits(node)
        assert logits.shape == backend.frame_size, (
            f"mask_logits({node}) is {logits.shape}, the video is {backend.frame_size}"
        )
        assert logits.dtype == np.float32, f"mask_logits({node}) is {logits.dtype}"


def _trace(case: BackendCase) -> list[np.ndarray]:
    """Everything a short scenario returns: proposals and every node's mask logits."""
    world = grow(case)
    backend = world.backend
    features = backend.encode(2)
    proposals = backend.propose(features, world.branches(), _options(case))
    assert proposals.boxes is not None or "boxes" not in case.supported
    committed = world.commit(features, proposals, [(r, 0) for r in range(proposals.iou.shape[0])])
    out = [proposals.iou, proposals.occlusion]
    out += [] if proposals.boxes is None else [proposals.boxes]
    nodes = [*world.prompt_nodes, *(c for cs in world.children.values() for c in cs), *committed]
    return out + [backend.mask_logits(node) for node in nodes]


def check_deterministic(case: BackendCase) -> None:
    """Same calls, same answers, bit for bit: on two fresh backends, and twice on one."""
    first, second = _trace(case), _trace(case)
    assert len(first) == len(second), "two identical runs returned different amounts"
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        _close(f"determinism: output {i} of two identical runs", a, b)
    world = grow(case)
    features = world.backend.encode(2)
    queries = world.branches()
    once = world.backend.propose(features, queries, _options(case))
    again = world.backend.propose(features, queries, _options(case))
    _same("determinism: the same proposal twice on one backend", once, again)


def check_rows_independent(case: BackendCase) -> None:
    """A row's proposals do not depend on the batch: each row equals the row proposed alone,
    in any order, and so do the memories committed from them."""
    world = grow(case)
    backend = world.backend
    # A backend that declares its rows batch-invariant (a sweep then batches configurations
    # together, trusting rows to be equal bit for bit) is held to exact equality.
    atol = 0.0 if getattr(backend, "batch_invariant", False) else case.batch_atol
    features = backend.encode(2)
    queries = world.branches()
    options = _options(case)
    together = backend.propose(features, queries, options)
    backwards = backend.propose(features, queries[::-1], options)
    rows = list(range(len(queries)))
    _same("rows: the batch reversed", _rows(backwards, rows[::-1]), together, atol)
    batched = world.commit(features, together, [(r, 0) for r in rows])
    for row, query in enumerate(queries):
        alone = backend.propose(features, [query], options)
        _same(f"rows: row {row} alone", alone, _rows(together, [row]), atol)
        (node,) = world.commit(features, alone, [(0, 0)])
        _close(
            f"rows: the memory committed from row {row} alone",
            backend.mask_logits(node),
            backend.mask_logits(batched[row]),
            atol,
        )


def check_identical_plans(case: BackendCase) -> None:
    """Identical plans in one batch give identical rows and identical children, and a plan
    reading one of those children proposes exactly as one reading the other."""
    world = grow(case)
    backend = world.backend
    obj, other = world.objects[0], world.objects[1]
    same = PathwayQuery(obj, child_plan(world.prompt_nodes[0], world.children[obj][0]))
    different = PathwayQuery(other, prompt_plan(world.prompt_nodes[1]))
    features = backend.encode(2)
    proposals = backend.propose(features, [same, different, same, same], _options(case))
    for row in (2, 3):
        _same(f"identical plans: row {row} against row 0", _rows(proposals, [row]),
              _rows(proposals, [0]))
    first, twin = world.commit(features, proposals, [(0, 0), (2, 0)])
    _close("identical plans: twin children's mask logits",
           backend.mask_logits(first), backend.mask_logits(twin))
    features = backend.encode(3)
    prompt_node = world.prompt_nodes[0]
    reads = [PathwayQuery(obj, child_plan(prompt_node, n)) for n in (first, twin)]
    later = backend.propose(features, reads, _options(case))
    _same("identical plans: plans reading twin children", _rows(later, [0]), _rows(later, [1]))


def check_release(case: BackendCase) -> None:
    """`release` frees exactly what it names: the released node can no longer be read (mask or
    plan), the others read as before, the held count returns to what it was, and releasing a
    node twice is an error."""
    world = grow(case)
    backend = world.backend
    obj = world.objects[0]
    prompt_node = world.prompt_nodes[0]
    features = backend.encode(2)
    held_before = case.held(backend)
    query = PathwayQuery(obj, child_plan(prompt_node, world.children[obj][0]))
    proposals = backend.propose(features, [query, query], _options(case))
    picks = [(0, c) for c in range(world.k)] + [(1, 0)]  # the last one twins the first
    committed = world.commit(features, proposals, picks)
    assert case.held(backend) > held_before, "committing held no more memory"
    before = {node: backend.mask_logits(node) for node in committed}
    gone, kept = committed[0], committed[1:]
    backend.release([gone])
    _raises(MemoryContractError, f"release: mask_logits of released node {gone}",
            lambda: backend.mask_logits(gone))
    reads_gone = [PathwayQuery(obj, child_plan(prompt_node, gone))]
    _raises(MemoryContractError, f"release: a plan reading released node {gone}",
            lambda: backend.propose(backend.encode(3), reads_gone, _options(case)))
    for node in kept:
        _close(f"release: node {node}, not released, reads as before",
               backend.mask_logits(node), before[node])
    backend.release(kept)
    assert case.held(backend) == held_before, (
        f"release: {case.held(backend)} memories held after releasing all {len(committed)} "
        f"new nodes, {held_before} before they were committed"
    )
    _raises(MemoryContractError, f"release: releasing node {gone} twice",
            lambda: backend.release([gone]))
    everything = [*world.prompt_nodes, *(c for cs in world.children.values() for c in cs)]
    backend.release(everything)
    assert case.held(backend) == 0, f"release: {case.held(backend)} held after releasing all"


def check_unknown_node(case: BackendCase) -> None:
    """A node never stored is not readable: mask_logits and plans reading it raise."""
    world = grow(case)
    backend = world.backend
    unknown = 987_654
    _raises(MemoryContractError, "unknown node: mask_logits", lambda: backend.mask_logits(unknown))
    obj, prompt_node = world.objects[0], world.prompt_nodes[0]
    queries = [PathwayQuery(obj, child_plan(prompt_node, unknown))]
    _raises(MemoryContractError, "unknown node: a plan reading it",
            lambda: backend.propose(backend.encode(2), queries, _options(case)))


def check_commit_needs_its_own_proposals(case: BackendCase) -> None:
    """A commit from proposals of another frame, of another backend, or without the backend's
    handle is refused, and stores nothing."""
    world = grow(case)
    backend = world.backend
    obj, prompt_node = world.objects[0], world.prompt_nodes[0]
    query = PathwayQuery(obj, child_plan(prompt_node, world.children[obj][0]))
    stale = backend.propose(backend.encode(2), [query], _options(case))
    features = backend.encode(3)
    (node,) = world.fresh(1)
    attempts: list[tuple[str, Proposals]] = [
        ("proposals of frame 2 committed on frame 3", stale),
        ("proposals without the backend's handle", Proposals(stale.iou, stale.occlusion)),
    ]
    other = grow(case).backend
    attempts.append((
        "proposals of another backend",
        other.propose(other.encode(3), [query], _options(case)),
    ))
    for rule, proposals in attempts:
        _raises(MemoryContractError, f"commit: {rule}",
                lambda p=proposals: backend.commit(features, p, [Commit(node, 0, 0)]))
        _raises(MemoryContractError, f"commit: {rule} stored node {node} all the same",
                lambda: backend.mask_logits(node))


def check_commit_reads_only_its_proposals(case: BackendCase) -> None:
    """Nothing is hidden between calls: committing from earlier proposals after a later
    propose stores the earlier proposals' candidate, not the later one's."""
    world = grow(case)
    backend = world.backend
    first, second = (
        PathwayQuery(obj, prompt_plan(node))
        for obj, node in zip(world.objects[:2], world.prompt_nodes[:2], strict=True)
    )
    features = backend.encode(2)
    early = backend.propose(features, [first], _options(case))
    backend.propose(features, [second], _options(case))
    (from_early,) = world.commit(features, early, [(0, 0)])
    references = []
    for query in (first, second):
        proposals = backend.propose(features, [query], _options(case))
        (node,) = world.commit(features, proposals, [(0, 0)])
        references.append(backend.mask_logits(node))
    assert not np.array_equal(*references), (
        f"{case.name}: the two objects' masks are equal, so the case cannot test this rule"
    )
    _close("commit: a commit from earlier proposals, after another propose",
           backend.mask_logits(from_early), references[0])


def check_options(case: BackendCase) -> None:
    """Each option the backend does not implement is refused with a ConfigError naming it;
    a presence threshold above every occlusion logit empties the masks, not the scores."""
    world = grow(case)
    backend = world.backend
    features = backend.encode(2)
    queries = world.branches()
    for field in dataclasses.fields(ProposalOptions):
        if field.name in case.supported:
            continue
        asked = ProposalOptions(**{field.name: True if field.type == "bool" else -1.0})
        error = _raises(ConfigError, f"options: unsupported {field.name}",
                        lambda asked=asked: backend.propose(features, queries, asked))
        assert field.name in str(error), f"options: the error does not name {field.name}: {error}"
    if "presence_threshold" not in case.supported:
        return
    plain = backend.propose(features, queries, ProposalOptions())
    absent = backend.propose(features, queries, ProposalOptions(presence_threshold=np.inf))
    _same("options: a presence threshold changes masks, not scores", plain, absent)
    nodes = world.commit(features, absent, [(r, 0) for r in range(len(queries))])
    for node in nodes:
        assert not (backend.mask_logits(node) > 0).any(), (
            f"options: node {node}'s mask is not empty under a presence threshold of inf"
        )


def check_mask_stats(case: BackendCase) -> None:
    """Mask statistics come exactly when asked for, with their shapes and dtypes, and equal
    `treemem.geometry.mask_stats` of the masks the candidates commit (`mask_logits > 0`):
    areas, boxes, the largest component outside each other candidate, the united boxes.
    Under a presence threshold of inf every mask, at either resolution, is empty."""
    if "mask_stats" not in case.supported:
        return
    world = grow(case)
    backend = world.backend
    features = backend.encode(2)
    queries = world.branches()
    n, k = len(queries), world.k
    assert backend.propose(features, queries, ProposalOptions()).stats is None, (
        "mask stats: returned without being asked for"
    )
    proposals = backend.propose(features, queries, ProposalOptions(mask_stats=True))
    stats = proposals.stats
    assert stats is not None, "mask stats: asked for, none returned"
    for name, shape in (("area", (n, k)), ("area_lowres", (n, k)), ("outside_area", (n, k, k))):
        array = getattr(stats, name)
        assert array.shape == shape and array.dtype == np.int64, (
            f"mask stats: {name} is {array.shape} {array.dtype}, not {shape} int64"
        )
    for name in ("boxes", "outside_union_boxes"):
        assert getattr(stats, name).dtype == np.float32, f"mask stats: {name} is not float32"
    picks = [(r, c) for r in range(n) for c in range(k)]
    nodes = world.commit(features, proposals, picks)
    masks = np.stack([backend.mask_logits(node) > 0 for node in nodes]).reshape(
        n, k, *backend.frame_size
    )
    expected = mask_stats(masks, stats.area_lowres)
    for field in dataclasses.fields(expected):
        _close(f"mask stats: {field.name} against the masks committed",
               getattr(stats, field.name), getattr(expected, field.name))
    absent = backend.propose(
        features, queries, ProposalOptions(mask_stats=True, presence_threshold=np.inf)
    ).stats
    assert absent is not None
    assert not absent.area.any() and not absent.area_lowres.any(), (
        "mask stats: a mask emptied by the presence threshold has pixels"
    )


def check_promotion(case: BackendCase) -> None:
    """A promoted commit keeps its candidate's mask, is its own memory (not shared with the
    same candidate committed plainly, and read differently), is held and released like any
    other, and reads the same twice."""
    if "promotion" not in case.supported:
        return
    world = grow(case)
    backend = world.backend
    obj, prompt_node = world.objects[0], world.prompt_nodes[0]
    query = PathwayQuery(obj, child_plan(prompt_node, world.children[obj][0]))
    features = backend.encode(2)
    options = ProposalOptions(promotion=True)
    proposals = backend.propose(features, [query], options)
    held = case.held(backend)
    plain, promoted = world.fresh(2)
    backend.commit(features, proposals, [Commit(plain, 0, 0), Commit(promoted, 0, 0, promote=True)])
    assert case.held(backend) == held + 2, (
        f"promotion: {case.held(backend) - held} memories for a plain and a promoted commit, "
        "not 2 (a promoted memory must not be shared with the plain one)"
    )
    _close("promotion: the promoted node's mask is its candidate's",
           backend.mask_logits(promoted), backend.mask_logits(plain))
    later = backend.encode(3)
    reads = [PathwayQuery(obj, child_plan(prompt_node, node, 1)) for node in (plain, promoted)]
    once = backend.propose(later, reads, options)
    _same("promotion: a plan reading a promoted node, twice",
          _rows(backend.propose(later, reads[1:], options), [0]), _rows(once, [1]),
          case.batch_atol)
    assert not np.array_equal(once.iou[0], once.iou[1]), (
        "promotion: a plan reading the promoted node proposes as one reading the plain node"
    )
    backend.release([promoted, plain])
    assert case.held(backend) == held, "promotion: releasing both did not free both"
    _raises(MemoryContractError, "promotion: mask_logits of a released promoted node",
            lambda: backend.mask_logits(promoted))


def check_pointer_span(case: BackendCase) -> None:
    """A plan's pointer span is part of the plan: the same plan normalised over another span
    proposes differently (a backend that ignores it reads positions wrongly), the same span
    twice the same."""
    world = grow(case)
    backend = world.backend
    obj, prompt_node = world.objects[0], world.prompt_nodes[0]
    plan = child_plan(prompt_node, world.children[obj][0])
    spans = [PathwayQuery(obj, dataclasses.replace(plan, pointer_span=s)) for s in (None, 3, 3)]
    proposals = backend.propose(backend.encode(2), spans, _options(case))
    _same("pointer span: one span twice", _rows(proposals, [1]), _rows(proposals, [2]))
    assert not np.array_equal(proposals.iou[0], proposals.iou[1]), (
        "pointer span: a plan over 3 frames proposes as one over the video's length"
    )

def _continue(world: World, backend: Backend, released: int) -> list[np.ndarray]:
    """Frame 2 and 3 of the scenario on `backend`, whose memories are `world`'s (its own, or
    imported): every output, and the mask logits of every node still held."""
    queries = [q for q in world.branches() if released not in q.plan.nodes()]
    out: list[np.ndarray] = []
    nodes = [*world.prompt_nodes, *(c for cs in world.children.values() for c in cs)]
    nodes.remove(released)
    for frame, first_node in ((2, 2000), (3, 3000)):
        features = backend.encode(frame)
        proposals = backend.propose(features, queries, ProposalOptions(boxes=world.boxes))
        out += [proposals.iou, proposals.occlusion]
        out += [] if proposals.boxes is None else [proposals.boxes]
        committed = list(range(first_node, first_node + len(queries)))
        backend.commit(
            features, proposals, [Commit(n, r, 0) for r, n in enumerate(committed)]
        )
        nodes += committed
        queries = [
            PathwayQuery(q.obj, child_plan(world.prompt_nodes[world.objects.index(q.obj)], n))
            for q, n in zip(queries, committed, strict=True)
        ]
    return out + [backend.mask_logits(node) for node in nodes]


def check_memory_export(case: BackendCase) -> None:
    """`MemoryExport` (optional): a fresh backend that imports what another exported answers
    every later call bit for bit as the exporter does; a node released before the export is
    not imported; the export changes nothing held; importing twice, or bytes that are not an
    export, is a MemoryContractError."""
    world = grow(case)
    backend = world.backend
    if not isinstance(backend, MemoryExport):
        raise AssertionError(f"{case.name} does not implement MemoryExport")
    world.boxes = "boxes" in case.supported
    released = world.children[world.objects[0]][-1]
    backend.release([released])
    held = case.held(backend)
    data = backend.export_memories()
    fresh = case.make()
    assert isinstance(fresh, MemoryExport)
    fresh.import_memories(data)
    assert case.held(fresh) == held, (
        f"export: {case.held(fresh)} memories held after the import, {held} exported"
    )
    _raises(MemoryContractError, f"export: released node {released} was imported all the same",
            lambda: fresh.mask_logits(released))
    try:
        imported = _continue(world, fresh, released)
    except MemoryContractError as error:
        raise AssertionError(f"export: the importing backend misses a node ({error})") from None
    original = _continue(world, backend, released)
    assert len(imported) == len(original), "export: the two backends returned different amounts"
    for i, (a, b) in enumerate(zip(original, imported, strict=True)):
        _close(f"export: output {i} after the import, against the exporting backend", b, a)
    _raises(MemoryContractError, "export: importing the same nodes twice",
            lambda: fresh.import_memories(data))
    other = case.make()
    assert isinstance(other, MemoryExport)
    _raises(MemoryContractError, "export: importing bytes that are not an export",
            lambda: other.import_memories(b"not an export"))


EXPORT_CHECKS: tuple[Callable[[BackendCase], None], ...] = (check_memory_export,)
"""Checks of the optional `MemoryExport` half of the contract, for backends that have it."""

CHECKS: tuple[Callable[[BackendCase], None], ...] = (
    check_shapes_and_dtypes,
    check_deterministic,
    check_rows_independent,
    check_identical_plans,
    check_release,
    check_unknown_node,
    check_commit_needs_its_own_proposals,
    check_commit_reads_only_its_proposals,
    check_options,
    check_mask_stats,
    check_promotion,
    check_pointer_span,
)
