"""Named strategy sets: frozen compositions of strategies with their hyperparameters.

A set is described by a frozen parameter record (what `--set key=value` edits and
`treemem strategies` lists) whose `build()` returns the composed `StrategySet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from treemem.registry import register_strategy
from treemem.strategies.dam4sam import DistractorAwareFrames, DistractorGate
from treemem.strategies.memory import ObjectAwareFrames, RecentFrames
from treemem.strategies.sam3_memory import ScoredFrames
from treemem.strategies.samurai import MotionAwareFrames, MotionModel
from treemem.strategies.scoring import CumulativeLogIou, CurrentIou
from treemem.strategies.selection import CloneStart, TopScores, UncertaintyDiversity
from treemem.strategies.weighting import OcclusionRankWeights, Unweighted
from treemem.strategy import StrategySet
from treemem.types import ConfigError


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_tree(pathways: int, delta_conf: float, eps: float) -> None:
    """The parameters every SAM2Long-style tree set shares (P, its uncertainty rule, its log)."""
    _check(pathways >= 1, f"pathways must be >= 1, got {pathways}")
    _check(delta_conf >= 0.0, f"delta_conf must be >= 0, got {delta_conf}")
    _check(eps > 0.0, f"eps must be > 0, got {eps}")


@register_strategy
@dataclass(frozen=True)
class Sam2Long:
    """SAM2Long (Ding et al., 2024): a memory tree of P pathways, exactly as the reference."""

    name: ClassVar[str] = "sam2long"
    pathways: int = 3
    delta_iou: float = 0.1
    delta_conf: float = 2.0
    w_low: float = 0.95
    w_high: float = 1.05
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_tree(self.pathways, self.delta_conf, self.eps)
        _check(0.0 <= self.delta_iou <= 1.0, f"delta_iou must be in [0, 1], got {self.delta_iou}")
        _check(self.w_low <= self.w_high, f"w_low ({self.w_low}) must be <= w_high ({self.w_high})")
        _check(self.w_low > 0.0, f"w_low must be > 0, got {self.w_low}")

    def build(self) -> StrategySet:
        return StrategySet(
            name=self.name,
            pathways=self.pathways,
            start=CloneStart(),
            scoring=CumulativeLogIou(self.eps),
            pruning=UncertaintyDiversity(self.delta_conf),
            memory=ObjectAwareFrames(self.delta_iou),
            weighting=OcclusionRankWeights(self.w_low, self.w_high),
        )


@register_strategy
@dataclass(frozen=True)
class Greedy:
    """Plain SAM 2: one pathway, argmax IoU, the most recent frames by frame gap."""

    name: ClassVar[str] = "greedy"
    spatial_frames: int = 6
    pointer_frames: int = 15

    def __post_init__(self) -> None:
        _check(self.spatial_frames >= 0, f"spatial_frames must be >= 0, got {self.spatial_frames}")
        _check(self.pointer_frames >= 0, f"pointer_frames must be >= 0, got {self.pointer_frames}")

    def build(self) -> StrategySet:
        return StrategySet(
            name=self.name,
            pathways=1,
            start=CloneStart(),
            scoring=CurrentIou(),
            pruning=TopScores(),
            memory=RecentFrames(self.spatial_frames, self.pointer_frames),
            weighting=Unweighted(),
        )


def _check_samurai(params: Samurai | SamuraiTree) -> None:
    _check(
        0.0 <= params.kf_score_weight <= 1.0,
        f"kf_score_weight must be in [0, 1], got {params.kf_score_weight}",
    )
    _check(
        params.stable_frames_threshold >= 1,
        f"stable_frames_threshold must be >= 1, got {params.stable_frames_threshold}",
    )
    _check(
        0.0 <= params.stable_ious_threshold <= 1.0,
        f"stable_ious_threshold must be in [0, 1], got {params.stable_ious_threshold}",
    )
    _check(
        0.0 <= params.memory_iou_threshold <= 1.0,
        f"memory_iou_threshold must be in [0, 1], got {params.memory_iou_threshold}",
    )


def _samurai_parts(params: Samurai | SamuraiTree) -> tuple[MotionModel, MotionAwareFrames]:
    model = MotionModel(
        params.kf_score_weight, params.stable_frames_threshold, params.stable_ious_threshold
    )
    memory = MotionAwareFrames(
        params.memory_iou_threshold,
        params.memory_occlusion_threshold,
        params.memory_motion_threshold,
    )
    return model, memory


@register_strategy
@dataclass(frozen=True)
class Samurai:
    """SAMURAI (Yang et al., 2024): one pathway, Kalman-filter motion score, filtered memory.

    Defaults are the reference's t / s / b+ configs; use kf_score_weight=0.15 for large (and
    the paper's ablation). presence_threshold is SAMURAI's min_obj_score_logits (SAM 2: 0),
    applied wherever the decoder runs: tracking frames and a click or box prompt's frame.
    """

    name: ClassVar[str] = "samurai"
    kf_score_weight: float = 0.25
    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    presence_threshold: float = -1.0
    memory_iou_threshold: float = 0.5
    memory_occlusion_threshold: float = 0.0
    memory_motion_threshold: float = 0.0

    def __post_init__(self) -> None:
        _check_samurai(self)

    def build(self) -> StrategySet:
        model, memory = _samurai_parts(self)
        return StrategySet(
            name=self.name,
            pathways=1,
            start=CloneStart(),
            scoring=CurrentIou(),
            pruning=TopScores(),
            memory=memory,
            weighting=Unweighted(),
            pathway_model=model,
            presence_threshold=self.presence_threshold,
        )


@register_strategy
@dataclass(frozen=True)
class SamuraiTree:
    """SAMURAI in SAM2Long's memory tree (new): P pathways, each with its own Kalman filter.

    Cumulative score: parent's + ln(s + eps), s SAMURAI's per-step likelihood (motion-weighted
    IoU when stable, else IoU); SAM2Long's uncertainty rule (delta_conf) and diversity key.
    With pathways=1 it makes SAMURAI's choices."""

    name: ClassVar[str] = "samurai-tree"
    pathways: int = 3
    kf_score_weight: float = 0.25
    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    presence_threshold: float = -1.0
    memory_iou_threshold: float = 0.5
    memory_occlusion_threshold: float = 0.0
    memory_motion_threshold: float = 0.0
    delta_conf: float = 2.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_tree(self.pathways, self.delta_conf, self.eps)
        _check_samurai(self)

    def build(self) -> StrategySet:
        model, memory = _samurai_parts(self)
        return StrategySet(
            name=self.name,
            pathways=self.pathways,
            start=CloneStart(),
            scoring=CumulativeLogIou(self.eps),
            pruning=UncertaintyDiversity(self.delta_conf),
            memory=memory,
            weighting=Unweighted(),
            pathway_model=model,
            presence_threshold=self.presence_threshold,
        )


def _check_sam3(params: Sam3Memory | Sam3MemoryTree) -> None:
    _check(params.stride >= 1, f"stride must be >= 1, got {params.stride}")
    _check(params.max_pointers >= 1, f"max_pointers must be >= 1, got {params.max_pointers}")


@register_strategy
@dataclass(frozen=True)
class Sam3Memory:
    """SAM 3's tracker memory selection: one pathway, argmax IoU (SAM 3's own rule on sam3).

    Past frames are read iff their score n(o) * IoU > mf_threshold (backward scan with step
    `stride`, at most max_pointers - 1 of them, plus the previous frame), positioned by rank.
    """

    name: ClassVar[str] = "sam3-memory"
    mf_threshold: float = 0.01
    stride: int = 1
    max_pointers: int = 16

    def __post_init__(self) -> None:
        _check_sam3(self)

    def build(self) -> StrategySet:
        return StrategySet(
            name=self.name,
            pathways=1,
            start=CloneStart(),
            scoring=CurrentIou(),
            pruning=TopScores(),
            memory=ScoredFrames(self.mf_threshold, self.stride, self.max_pointers),
            weighting=Unweighted(),
        )


@register_strategy
@dataclass(frozen=True)
class Sam3MemoryTree:
    """SAM 3's memory selection in SAM2Long's memory tree (new): P pathways, each its own.

    Cumulative log-IoU scores and SAM2Long's uncertainty rule (delta_conf) and diversity key;
    each pathway applies SAM 3's rule to its own history. No attention modulation, as in SAM 3.
    With pathways=1 it makes the choices of `sam3-memory`.
    """

    name: ClassVar[str] = "sam3-memory-tree"
    pathways: int = 3
    mf_threshold: float = 0.01
    stride: int = 1
    max_pointers: int = 16
    delta_conf: float = 2.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_tree(self.pathways, self.delta_conf, self.eps)
        _check_sam3(self)

    def build(self) -> StrategySet:
        return StrategySet(
            name=self.name,
            pathways=self.pathways,
            start=CloneStart(),
            scoring=CumulativeLogIou(self.eps),
            pruning=UncertaintyDiversity(self.delta_conf),
            memory=ScoredFrames(self.mf_threshold, self.stride, self.max_pointers),
            weighting=Unweighted(),
        )


def _check_dam4sam(params: Dam4Sam | Dam4SamTree) -> None:
    _check(
        0.0 <= params.iou_threshold <= 1.0,
        f"iou_threshold must be in [0, 1], got {params.iou_threshold}",
    )
    _check(
        0.0 < params.size_low <= params.size_high,
        f"need 0 < size_low <= size_high, got {params.size_low} and {params.size_high}",
    )
    _check(params.spacing >= 0, f"spacing must be >= 0, got {params.spacing}")
    _check(
        0.0 <= params.box_iou_threshold <= 1.0,
        f"box_iou_threshold must be in [0, 1], got {params.box_iou_threshold}",
    )
    _check(
        1 <= params.max_conditioning < 7,
        f"max_conditioning must be in 1..6 (SAM 2 has 7 memory slots), got "
        f"{params.max_conditioning}",
    )
    _check(params.stride >= 1, f"stride must be >= 1, got {params.stride}")


def _dam4sam_parts(params: Dam4Sam | Dam4SamTree) -> tuple[DistractorGate, DistractorAwareFrames]:
    gate = DistractorGate(
        iou_threshold=params.iou_threshold,
        size_low=params.size_low,
        size_high=params.size_high,
        spacing=params.spacing,
        box_iou_threshold=params.box_iou_threshold,
    )
    return gate, DistractorAwareFrames(params.max_conditioning, stride=params.stride)


@register_strategy
@dataclass(frozen=True)
class Dam4Sam:
    """DAM4SAM (Videnovic et al., CVPR 2025): one pathway, distractor-aware memory.

    Argmax IoU; a distractor-resolving memory of promoted frames (a confident, size-stable
    mask with a candidate reaching outside it) and a stride-5 recent-appearance memory.
    Defaults are the reference's (its sam21pp configs); run it on a SAM 2.1 checkpoint.
    """

    name: ClassVar[str] = "dam4sam"
    iou_threshold: float = 0.8
    size_low: float = 0.8
    size_high: float = 1.2
    spacing: int = 5
    box_iou_threshold: float = 0.7
    max_conditioning: int = 4
    stride: int = 5

    def __post_init__(self) -> None:
        _check_dam4sam(self)

    def build(self) -> StrategySet:
        gate, memory = _dam4sam_parts(self)
        return StrategySet(
            name=self.name,
            pathways=1,
            start=CloneStart(),
            scoring=CurrentIou(),
            pruning=TopScores(),
            memory=memory,
            weighting=Unweighted(),
            promotion=gate,
        )


@register_strategy
@dataclass(frozen=True)
class Dam4SamTree:
    """DAM4SAM in SAM2Long's memory tree (new): P pathways, each its own distractor memory.

    Each pathway has its own promoted frames, area history and last promotion; a pathway's
    alternatives are its own row's other candidates. Cumulative log-IoU scores and
    SAM2Long's uncertainty rule (delta_conf) and diversity key. With pathways=1 it makes
    the choices of `dam4sam`.
    """

    name: ClassVar[str] = "dam4sam-tree"
    pathways: int = 3
    iou_threshold: float = 0.8
    size_low: float = 0.8
    size_high: float = 1.2
    spacing: int = 5
    box_iou_threshold: float = 0.7
    max_conditioning: int = 4
    stride: int = 5
    delta_conf: float = 2.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_tree(self.pathways, self.delta_conf, self.eps)
        _check_dam4sam(self)

    def build(self) -> StrategySet:
        gate, memory = _dam4sam_parts(self)
        return StrategySet(
            name=self.name,
            pathways=self.pathways,
            start=CloneStart(),
            scoring=CumulativeLogIou(self.eps),
            pruning=UncertaintyDiversity(self.delta_conf),
            memory=memory,
            weighting=Unweighted(),
            promotion=gate,
        )
