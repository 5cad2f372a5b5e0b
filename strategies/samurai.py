"""SAMURAI's motion-aware memory (Yang et al., 2024) as treemem strategies.

Two pieces, both per pathway (so per object, per re-prompt and per branch of a tree):

- `MotionModel`, a `PathwayModel`: DeepSORT's constant-velocity Kalman filter on the object's
  box and SAMURAI's three phases (A start, B warm-up, C stable). In C a candidate's
  likelihood is `w * motion + (1 - w) * IoU`, where motion is the IoU of its box with the
  filter's predicted box; in A and B it is the predicted IoU.
- `MotionAwareFrames`, a `MemorySelection`: spatial memory from frames whose kept IoU, occlusion
  logit and motion score pass thresholds, at rank positions; object pointers as stock SAM 2.1.

The method is stated in ../shared/docs/samurai-spec.md; names below follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from treemem.strategies.memory import _conditioning, _recent_pointers
from treemem.strategy import RecalledMemory
from treemem.types import (
    Float32Array,
    FloatArray,
    MemoryEntry,
    MemoryHistory,
    PromptResult,
    frame_step,
)

Phase = Literal["A", "B", "C"]

STD_POSITION = 1.0 / 20.0
STD_VELOCITY = 1.0 / 160.0
_MOTION = np.eye(8) + np.eye(8, k=4)
_PROJECT = np.eye(4, 8)


# --- boxes ------------------------------------------------------------------------------------


def box_to_xyah(box: FloatArray | Float32Array) -> FloatArray:
    """(x1, y1, x2, y2) -> (x centre, y centre, aspect w / h, height), float64.

    A zero height becomes 1 after the centre is taken, so an empty box measures (0, 0, 0, 1)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    x_centre, y_centre = x1 + width / 2, y1 + height / 2
    if height == 0:
        height = 1.0
    return np.array([x_centre, y_centre, width / height, height], dtype=np.float64)


def xyah_to_box(xyah: FloatArray) -> FloatArray:
    """(x centre, y centre, aspect, height) -> (x1, y1, x2, y2), float64."""
    x_centre, y_centre, aspect, height = (float(v) for v in xyah[:4])
    width = aspect * height
    return np.array(
        [x_centre - width / 2, y_centre - height / 2, x_centre + width / 2, y_centre + height / 2],
        dtype=np.float64,
    )


def box_iou(box: FloatArray | Float32Array, predicted: FloatArray) -> float:
    """Motion score: IoU of a candidate's box with the predicted box.

    Areas without +1; an exactly [0, 0, 0, 0] candidate box, or a zero union, scores 0."""
    a = np.asarray(box, dtype=np.float64)
    if not a.any():
        return 0.0
    b = np.asarray(predicted, dtype=np.float64)
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# --- Kalman filter ----------------------------------------------------------------------------


def _cholesky_solve(matrix: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve matrix @ x = rhs for a symmetric positive definite matrix (Cholesky)."""
    lower = np.linalg.cholesky(matrix)
    n = lower.shape[0]
    y = np.zeros_like(rhs)
    for i in range(n):
        y[i] = (rhs[i] - lower[i, :i] @ y[:i]) / lower[i, i]
    x = np.zeros_like(rhs)
    for i in reversed(range(n)):
        x[i] = (y[i] - lower[i + 1 :, i] @ x[i + 1 :]) / lower[i, i]
    return x


@dataclass(frozen=True)
class KalmanFilter:
    """DeepSORT's constant-velocity filter on (xc, yc, a, h) and their velocities, float64.

    Noise standard deviations scale with the box height: position `STD_POSITION * h`,
    velocity `STD_VELOCITY * h`, aspect fixed (1e-2 / 1e-5; measurement 1e-1)."""

    def initiate(self, measurement: FloatArray) -> tuple[FloatArray, FloatArray]:
        height = float(measurement[3])
        mean = np.concatenate([np.asarray(measurement, np.float64), np.zeros(4)])
        sp, sv = STD_POSITION * height, STD_VELOCITY * height
        std = [2 * sp, 2 * sp, 1e-2, 2 * sp, 10 * sv, 10 * sv, 1e-5, 10 * sv]
        return mean, np.diag(np.square(std))

    def predict(self, mean: FloatArray, covariance: FloatArray) -> tuple[FloatArray, FloatArray]:
        height = float(mean[3])
        sp, sv = STD_POSITION * height, STD_VELOCITY * height
        noise = np.diag(np.square([sp, sp, 1e-2, sp, sv, sv, 1e-5, sv]))
        return _MOTION @ mean, _MOTION @ covariance @ _MOTION.T + noise

    def update(
        self, mean: FloatArray, covariance: FloatArray, measurement: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        height = float(mean[3])
        sp = STD_POSITION * height
        innovation_cov = _PROJECT @ covariance @ _PROJECT.T + np.diag(np.square([sp, sp, 1e-1, sp]))
        gain = _cholesky_solve(innovation_cov, (covariance @ _PROJECT.T).T).T
        new_mean = mean + gain @ (np.asarray(measurement, np.float64) - _PROJECT @ mean)
        return new_mean, covariance - gain @ innovation_cov @ gain.T


# --- the phase machine ------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionState:
    """One pathway's filter: mean (8,), covariance (8, 8) (None before the first start) and
    `stable`, the successful updates so far (SAMURAI's S; 0 means "start again")."""

    mean: FloatArray | None = None
    covariance: FloatArray | None = None
    stable: int = 0


@dataclass(frozen=True)
class MotionStep:
    """`MotionModel.step`'s answer for one parent row (a `PathwayStep`)."""

    phase: Phase
    likelihood: FloatArray
    motion_scores: FloatArray | None
    iou: Float32Array
    boxes: Float32Array
    mean: FloatArray | None
    covariance: FloatArray | None
    stable: int
    model: MotionModel

    def motion(self, candidate: int) -> float | None:
        return None if self.motion_scores is None else float(self.motion_scores[candidate])

    def child(self, candidate: int) -> MotionState:
        """The filter of the pathway that keeps `candidate` (updated with its own box)."""
        kf = self.model.filter
        measurement = box_to_xyah(self.boxes[candidate])
        if self.phase == "A":
            mean, covariance = kf.initiate(measurement)
            return MotionState(mean, covariance, 1)
        assert self.mean is not None and self.covariance is not None
        iou = np.float32(self.iou[candidate])
        tau = np.float32(self.model.stable_ious_threshold)
        if self.phase == "B":
            if iou > tau:
                mean, covariance = kf.update(self.mean, self.covariance, measurement)
                return MotionState(mean, covariance, self.stable + 1)
            return MotionState(self.mean, self.covariance, 0)
        if iou < tau:
            return MotionState(self.mean, self.covariance, 0)
        mean, covariance = kf.update(self.mean, self.covariance, measurement)
        return MotionState(mean, covariance, self.stable)


@dataclass(frozen=True)
class MotionModel:
    """SAMURAI's candidate choice as a `PathwayModel` (phases A / B / C of the spec).

    A (no filter yet, or S = 0): likelihood = IoU; the kept box initiates the filter, S = 1.
    B (0 < S < `stable_frames_threshold`): predict; likelihood = IoU; the kept candidate
    updates the filter iff its IoU > tau (S += 1), else S = 0.
    C (S >= threshold): predict; likelihood = w * motion + (1 - w) * IoU; the kept candidate
    updates iff its IoU >= tau, else S = 0. IoU comparisons are in float32, as the reference
    compares its float32 IoU tensor with tau.
    """

    kf_score_weight: float = 0.25
    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    filter: KalmanFilter = KalmanFilter()

    def start(self, prompt: PromptResult) -> MotionState:
        """A mask or box prompt starts before phase A; a single click already ran A."""
        if prompt.box is None:
            return MotionState()
        mean, covariance = self.filter.initiate(box_to_xyah(np.asarray(prompt.box)))
        return MotionState(mean, covariance, 1)

    def phase(self, state: MotionState) -> Phase:
        if state.mean is None or state.stable == 0:
            return "A"
        return "B" if state.stable < self.stable_frames_threshold else "C"

    def step(
        self, state: object, iou: Float32Array, boxes: Float32Array, occlusion: float
    ) -> MotionStep:
        assert isinstance(state, MotionState)
        phase = self.phase(state)
        mean, covariance = state.mean, state.covariance
        if phase != "A":
            assert mean is not None and covariance is not None
            mean, covariance = self.filter.predict(mean, covariance)
        evidence = iou.astype(np.float64)
        motion_scores = None
        if phase == "C":
            assert mean is not None
            predicted = xyah_to_box(mean)
            motion_scores = np.array([box_iou(box, predicted) for box in boxes], np.float64)
            w = self.kf_score_weight
            evidence = w * motion_scores + (1 - w) * evidence
        return MotionStep(
            phase, evidence, motion_scores, iou, boxes, mean, covariance, state.stable, self
        )


# --- memory selection -------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionAwareFrames:
    """SAMURAI's memory: spatial frames filtered by IoU, occlusion and motion; stock pointers.

    Spatial: the prompt frame(s), then scanning frames t-1 down to f0 + 2 (f0 the latest
    prompt), the valid ones (IoU > `iou_threshold`, occlusion > `occlusion_threshold`,
    motion None or > `motion_threshold`, all strict), plus t-1 if it is not among them; the
    newest `spatial_frames`, positioned by rank (newest 1). Pointers as plain SAM 2.1: the
    prompt frames and the `pointer_frames` most recent frames, by frame gap. No look-back
    limit. A re-prompt starts the memory again, as at a first prompt. Tracking backward the
    rule mirrors (t+1 up to f0 - 2, `MemoryEntry.elapsed` for every "before"); SAMURAI
    itself tracks forward only, so that is treemem's extension.
    """

    iou_threshold: float = 0.5
    occlusion_threshold: float = 0.0
    motion_threshold: float = 0.0
    spatial_frames: int = 6
    pointer_frames: int = 15

    def is_valid(self, entry: MemoryEntry) -> bool:
        return (
            entry.iou > self.iou_threshold
            and entry.occlusion > self.occlusion_threshold
            and (entry.motion is None or entry.motion > self.motion_threshold)
        )

    @staticmethod
    def scan_floor(history: MemoryHistory, frame: int) -> int:
        """The oldest frame the validity scan at `frame` looks at: the latest prompt + 2
        (- 2 tracking backward)."""
        step = frame_step(history.direction)
        prompts = [e.frame for e in history.conditioning if e.elapsed(frame) > 0]
        if not prompts:
            return -(2**62) * step
        return max(prompts, key=lambda f: f * step) + 2 * step

    def _valid(self, entries: tuple[MemoryEntry, ...], floor: int) -> list[MemoryEntry]:
        return [e for e in entries if e.elapsed(floor) <= 0 and self.is_valid(e)]

    def extend(self, history: MemoryHistory, entry: MemoryEntry) -> MemoryHistory:
        entries = (*history.recent, entry)
        floor = self.scan_floor(history, entry.frame + frame_step(entry.direction))
        valid = {e.node for e in self._valid(entries, floor)[-self.spatial_frames :]}
        kept = tuple(
            e for e in entries if e.elapsed(entry.frame) < self.pointer_frames or e.node in valid
        )
        return MemoryHistory(history.conditioning, kept)

    def recall(self, history: MemoryHistory, frame: int) -> RecalledMemory:
        cond_spatial, cond_pointers = _conditioning(history, frame)
        past = tuple(e for e in history.recent if e.elapsed(frame) > 0)
        chosen = self._valid(past, self.scan_floor(history, frame))
        previous = [e for e in past if e.elapsed(frame) == 1]
        if previous and (not chosen or chosen[-1] is not previous[0]):
            chosen.append(previous[0])
        newest = chosen[-self.spatial_frames :] if self.spatial_frames > 0 else []
        spatial = tuple((e, len(newest) - i) for i, e in enumerate(newest))
        pointers = _recent_pointers(history, frame, self.pointer_frames)
        return RecalledMemory(cond_spatial + spatial, cond_pointers + pointers)

    def restart(self, history: MemoryHistory) -> MemoryHistory:
        """A re-prompt restarts SAMURAI (filter at phase A, memory as at a first prompt)."""
        return MemoryHistory(history.conditioning)
