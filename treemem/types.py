"""Frozen records that cross the engine / strategy / backend boundaries.

The engine never inspects masks or features: it passes node ids and these small records.
Arrays are numpy; shapes are given in each docstring (N = pathway rows in one call, K =
candidates per pathway).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
UInt8Array = npt.NDArray[np.uint8]


class TreememError(Exception):
    """Base of every error treemem raises on purpose; the CLI prints it as one line, exit 2."""


class InputError(TreememError):
    """The user's input (video, mask, prompt, option) cannot be used as given."""


class ConfigError(TreememError):
    """A strategy set, parameter or backend configuration is invalid."""


class OutputError(TreememError):
    """An output file or folder cannot be created or written (the message names the path and
    the cause: a parent that is a file, no permission, a full or read-only disk)."""


class MemoryContractError(TreememError):
    """A memory-selection strategy asked for memory the engine had already released."""


Direction = Literal["forward", "backward"]
"""The order one search visits frames in: ascending ("forward"), or descending from its start
frame ("backward", sam2's `propagate_in_video(reverse=True)`)."""
DIRECTIONS: tuple[Direction, ...] = ("forward", "backward")


def frame_step(direction: Direction) -> int:
    """+1 forward, -1 backward: the frame that follows frame t in tracking order is t + step."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    return 1 if direction == "forward" else -1


ClosingT = TypeVar("ClosingT", bound="Closing")


class Closing:
    """Base of objects that hold something until `close()`: `with` closes them on leaving,
    error or not (video readers, the progress bar, a predictor's state)."""

    def close(self) -> None:
        """Release what the object holds; subclasses override it."""

    def __enter__(self: ClosingT) -> ClosingT:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class MemoryEntry:
    """One committed frame of a pathway, as memory selection sees it.

    `iou` is the predicted IoU of the kept candidate and `occlusion` the occlusion logit stored
    with it (the parent's, which is what the memory encoder used). Prompt frames carry
    `conditioning=True`. `motion` is the kept candidate's motion score when a pathway model
    scored one (SAMURAI's stable phase), else None. `direction` is the order of the search
    that stored it: memory selection reads temporal order through `elapsed`, never by
    comparing frame numbers, so one strategy serves forward and backward tracking.
    """

    node: int
    frame: int
    iou: float
    occlusion: float
    conditioning: bool = False
    motion: float | None = None
    direction: Direction = "forward"

    def elapsed(self, frame: int) -> int:
        """Signed frames from this entry to `frame` in tracking order (sam2's signed temporal
        distance): `frame - self.frame` forward, `self.frame - frame` backward. Positive iff
        the entry lies on the side already tracked when `frame` is reached; a prompt frame on
        the side not tracked yet is negative."""
        return (frame - self.frame) * frame_step(self.direction)


@dataclass(frozen=True)
class MemoryRef:
    """One memory entry a pathway reads, with its temporal position and key weight.

    Spatial position 0 means "conditioning frame" (SAM 2's t_pos 0); 1.. are distances (frame
    gap or rank). Pointer positions are signed frame distances or ranks, normalised by the
    backend exactly as SAM 2 does.
    """

    node: int
    position: int
    weight: float = 1.0


@dataclass(frozen=True)
class MemoryPlan:
    """What one pathway reads at one frame: spatial memories and object pointers, in order."""

    spatial: tuple[MemoryRef, ...]
    pointers: tuple[MemoryRef, ...]

    def nodes(self) -> frozenset[int]:
        return frozenset(ref.node for ref in self.spatial + self.pointers)


@dataclass(frozen=True)
class MemoryHistory:
    """The part of a pathway's ancestry that its memory selection may still read.

    `conditioning` holds the prompt frames; `recent` holds what the strategy chose to keep of
    the non-conditioning ancestry, oldest first. Everything not referenced here is released
    by the engine, which is what bounds live memory in video length.
    """

    conditioning: tuple[MemoryEntry, ...]
    recent: tuple[MemoryEntry, ...] = ()

    def nodes(self) -> frozenset[int]:
        return frozenset(entry.node for entry in self.conditioning + self.recent)

    @property
    def direction(self) -> Direction:
        """The tracking order of the search this history belongs to, read off its entries
        (every entry of one history carries the same); "forward" for an empty history."""
        for entry in self.conditioning + self.recent:
            return entry.direction
        return "forward"


@dataclass(frozen=True)
class PathwayQuery:
    """One row of a batched `propose` call: an object's pathway and the memory it reads."""

    obj: int
    plan: MemoryPlan


@dataclass(frozen=True)
class ProposalOptions:
    """What a strategy set asks of `prompt` and `propose` beyond the candidates themselves,
    passed always.

    boxes: also return each candidate's box (`Proposals.boxes`). presence_threshold: a row
    whose occlusion logit is <= this gets empty masks and the no-object pointer (SAM 2's rule
    at 0), and so does a prompt the model decodes (clicks, a box).

    Every default is what a backend that has never heard of the option does anyway, so a new
    option (a field with such a default) leaves every existing backend correct: it keeps
    working until a strategy set asks for something it cannot do, and then `check` makes it
    say so (the options' version of Optuna's `before_trial` hook, which does nothing unless a
    sampler overrides it).
    """

    boxes: bool = False
    presence_threshold: float = 0.0

    def requested(self) -> tuple[str, ...]:
        """Names of the options set away from their defaults, in field order."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != f.default)

    def check(self, backend: str, supported: Collection[str]) -> None:
        """Raise ConfigError naming the first requested option not in `supported`.

        A backend calls this first thing in `propose` with the options it implements, so an
        option added after it was written fails loudly instead of being ignored."""
        for name in self.requested():
            if name not in supported:
                raise ConfigError(
                    f"backend {backend} does not support the proposal option {name}="
                    f"{getattr(self, name)!r}: use a backend that does, or a strategy set "
                    "that does not ask for it"
                )


@dataclass(frozen=True)
class Proposals:
    """The backend's answer for N pathway rows: K candidates each.

    iou: (N, K) predicted IoU of each candidate; occlusion: (N,) occlusion logit of each row
    (o > 0: object present). Candidate masks stay on the backend, addressed by (row, k).
    boxes: (N, K, 4) each candidate mask's box (x1, y1, x2, y2), max inclusive, [0, 0, 0, 0]
    for an empty mask; only when `propose` was asked for boxes, else None.
    batch: the backend's own, opaque record of this call (its candidate masks and what it
    needs to encode their memories); the engine only hands it back to `commit`, inside these
    proposals. A stand-in backend whose `commit` needs nothing may leave it None.
    """

    iou: Float32Array
    occlusion: Float32Array
    boxes: Float32Array | None = None
    batch: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.iou.ndim != 2 or self.occlusion.shape != (self.iou.shape[0],):
            raise ValueError(
                f"proposals need iou (N, K) and occlusion (N,), got {self.iou.shape} and "
                f"{self.occlusion.shape}"
            )
        if self.boxes is not None and self.boxes.shape != (*self.iou.shape, 4):
            raise ValueError(
                f"proposals need boxes (N, K, 4) = {(*self.iou.shape, 4)}, got {self.boxes.shape}"
            )


@dataclass(frozen=True)
class Commit:
    """Keep candidate `candidate` of proposal row `row` as tree node `node`.

    Only what the backend needs: the (row, candidate) addresses a mask of the proposals the
    commit is made from, and `node` is the fresh id later memory plans read it by. (The
    pathway's parent node is the engine's bookkeeping; identical children are recognised by
    the backend from the row's memory plan.)
    """

    node: int
    row: int
    candidate: int


PromptKind = Literal["mask", "box", "points"]


@dataclass(frozen=True)
class Prompt:
    """A user prompt for one object on one frame.

    mask: (H, W) bool at video resolution; box: (x0, y0, x1, y1) in pixels; points: (M, 2)
    xy pixels with labels (M,) 1 = positive, 0 = negative.
    """

    obj: int
    frame: int
    mask: BoolArray | None = None
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()

    @property
    def kind(self) -> PromptKind:
        if self.mask is not None:
            return "mask"
        if self.box is not None:
            return "box"
        return "points"


@dataclass(frozen=True)
class PromptResult:
    """What a backend reports for a prompted (conditioning) frame of one object.

    `box` (x1, y1, x2, y2) is set only when the prompt frame itself chose among candidates
    (a single click: SAM 2's multimask output), so a pathway model can start there.
    """

    iou: float
    occlusion: float
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class FrameDecision:
    """Frame `frame` of object `obj` is final: its mask is node `node`'s mask.

    `forced` is True when the online `max_lag` rule decided before the pathways agreed.
    """

    obj: int
    frame: int
    node: int
    forced: bool = False


@dataclass(frozen=True)
class RunSummary:
    """Counts a run reports at the end (also what the CLI prints)."""

    frames: int
    objects: int
    decisions: tuple[FrameDecision, ...] = field(default=(), repr=False)
    lags: tuple[int, ...] = field(default=(), repr=False)


SurvivorRule = Literal["prompt", "start", "pruning", "diversity"]
"""Which rule chose an object's survivors at a frame, as the tree record stores it: the
user's prompt, the start rule (first frame after a prompt), or the pruning rule on a tracked
frame, which reports "diversity" when it kept distinct hypotheses on an uncertain frame."""
