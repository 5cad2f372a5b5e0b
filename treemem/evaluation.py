"""Scoring folders of masks against ground truth, and reporting the scores.

Layouts (the ones DAVIS, SA-V and LVOS ship), for both predictions and ground truth:

- a dataset folder holds one folder per video;
- a video folder holds either one palette PNG per frame (pixel value = object id, DAVIS,
  LVOS) or one folder per object, named by its id, of binary PNGs (SA-V);
- a folder of PNGs given directly is a single video.

Frames are the ground truth's PNG names (sparse annotation, as in SA-V, is fine: a
prediction may hold more frames, which are ignored). By default the first and last annotated
frames of each video are skipped, as the DAVIS semi-supervised and SA-V evaluations do.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treemem.io.masks import read_mask
from treemem.metrics import (
    BOUND_TH,
    ObjectScores,
    Statistics,
    Summary,
    VideoEvaluator,
    VideoScores,
    objects_of,
    summarize,
)
from treemem.types import BoolArray, FloatArray, InputError


@dataclass(frozen=True)
class VideoMasks:
    """One video's mask folder: palette frames, or (per_object) one folder per object id."""

    name: str
    path: Path
    per_object: bool

    def frames(self) -> list[str]:
        """PNG file names of the frames, sorted."""
        if not self.per_object:
            return sorted(p.name for p in _pngs(self.path))
        names = {p.name for folder in self._object_folders().values() for p in _pngs(folder)}
        return sorted(names)

    def read(self, frame: str) -> tuple[dict[int, BoolArray], tuple[int, int]] | None:
        """Object masks on `frame` and the frame's (H, W); None when the file is missing."""
        if not self.per_object:
            path = self.path / frame
            if not path.is_file():
                return None
            ids = read_mask(path)
            return objects_of(ids), (int(ids.shape[0]), int(ids.shape[1]))
        masks: dict[int, BoolArray] = {}
        shape: tuple[int, int] | None = None
        for obj, folder in self._object_folders().items():
            path = folder / frame
            if path.is_file():
                ids = read_mask(path)
                masks[obj] = ids > 0
                shape = (int(ids.shape[0]), int(ids.shape[1]))
        return None if shape is None else (masks, shape)

    def _object_folders(self) -> dict[int, Path]:
        folders: dict[int, Path] = {}
        for child in sorted(self.path.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                if not child.name.isdigit():
                    raise InputError(
                        f"{child}: object folders must be named by their object id (e.g. 001)"
                    )
                folders[int(child.name)] = child
        return folders


def _pngs(folder: Path) -> list[Path]:
    return [
        p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")
    ]


def _video_at(path: Path, name: str) -> VideoMasks | None:
    """The video stored in `path`, or None when it holds neither PNGs nor object folders."""
    if not path.is_dir():
        return None
    if _pngs(path):
        return VideoMasks(name, path, per_object=False)
    subfolders = [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
    if subfolders and all(c.name.isdigit() and _pngs(c) for c in subfolders):
        return VideoMasks(name, path, per_object=True)
    return None


def find_videos(root: Path) -> dict[str, VideoMasks]:
    """Videos under a dataset folder (or the single video a folder of PNGs is), by name."""
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    if _pngs(root):
        return {root.name: VideoMasks(root.name, root, per_object=False)}
    videos = {}
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        video = _video_at(child, child.name)
        if video is not None:
            videos[child.name] = video
    if not videos:
        raise InputError(
            f"{root} holds no video: expected PNG masks, or one folder of PNG masks per video"
        )
    return videos


def score_video(
    gt: VideoMasks,
    pred: VideoMasks,
    *,
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> VideoScores:
    """J and F of every ground-truth object of one video, frame by frame."""
    frames = gt.frames()
    if skip_first_last:
        if len(frames) < 3:
            raise InputError(
                f"video {gt.name} has {len(frames)} annotated frames, none left after skipping "
                "the first and last (use --all-frames)"
            )
        frames = frames[1:-1]
    evaluator = VideoEvaluator(gt.name, bound_th)
    for frame in frames:
        truth = gt.read(frame)
        if truth is None:
            raise InputError(f"{gt.path / frame}: ground truth frame vanished while reading")
        predicted = pred.read(frame)
        if predicted is None:
            raise InputError(f"prediction missing: {pred.path / frame} (ground truth has {frame})")
        if predicted[1] != truth[1]:
            (h, w), (ph, pw) = truth[1], predicted[1]
            raise InputError(
                f"{pred.path / frame} is {pw}x{ph} but the ground truth is {w}x{h}; "
                "predict at the annotation's resolution"
            )
        evaluator.add(frame, truth[0], predicted[0], truth[1])
    return evaluator.result()


def pair_videos(pred_root: Path, gt_root: Path) -> list[tuple[VideoMasks, VideoMasks]]:
    """(ground truth, prediction) per video; every ground-truth video needs a prediction."""
    gt_videos = find_videos(gt_root)
    if _pngs(gt_root):
        pred = _video_at(pred_root, gt_root.name)
        if pred is None:
            raise InputError(f"{pred_root} holds no PNG masks for the single video {gt_root}")
        return [(gt_videos[gt_root.name], pred)]
    pairs = []
    missing = []
    for name, gt in gt_videos.items():
        pred = _video_at(pred_root / name, name)
        if pred is None:
            missing.append(name)
        else:
            pairs.append((gt, pred))
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise InputError(f"{pred_root} has no predictions for {len(missing)} videos: {shown}")
    return pairs


def score_folders(
    pred_root: Path,
    gt_root: Path,
    *,
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> Iterator[VideoScores]:
    """Score every video of `gt_root` against `pred_root`, one video at a time."""
    for gt, pred in pair_videos(pred_root, gt_root):
        yield score_video(gt, pred, skip_first_last=skip_first_last, bound_th=bound_th)


# --- reporting -----------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def video_means(video: VideoScores) -> tuple[float, float]:
    """(J, F) of one video: its objects' means averaged."""
    if not video.objects:
        return math.nan, math.nan
    j = float(np.mean([o.j_stats.mean for o in video.objects]))
    f = float(np.mean([o.f_stats.mean for o in video.objects]))
    return j, f


def format_table(videos: Sequence[VideoScores]) -> str:
    """Per video and per object J&F, J, F (in %), then the dataset means, recall and decay."""
    summary = summarize(o for v in videos for o in v.objects)
    width = max([len("video"), *(len(v.video) for v in videos)])
    lines = [f"{'video':<{width}}  {'object':>6}  {'J&F':>5}  {'J':>5}  {'F':>5}"]
    for video in videos:
        j, f = video_means(video)
        jf = (j + f) / 2
        cells = f"{_percent(jf):>5}  {_percent(j):>5}  {_percent(f):>5}"
        lines.append(f"{video.video:<{width}}  {'all':>6}  {cells}")
        for scores in video.objects:
            js, fs = scores.j_stats.mean, scores.f_stats.mean
            lines.append(
                f"{'':<{width}}  {scores.obj:>6}  {_percent((js + fs) / 2):>5}  "
                f"{_percent(js):>5}  {_percent(fs):>5}"
            )
    lines.append("")
    lines.append(format_summary(summary, videos=len(videos)))
    return "\n".join(lines)


def format_summary(summary: Summary, videos: int) -> str:
    j, f = summary.j, summary.f
    return (
        f"J&F {_percent(summary.jf)}  |  J {_percent(j.mean)} (recall {_percent(j.recall)}, "
        f"decay {_percent(j.decay)})  |  F {_percent(f.mean)} (recall {_percent(f.recall)}, "
        f"decay {_percent(f.decay)})  |  {summary.objects} objects in {videos} videos"
    )


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _stats(stats: Statistics) -> dict[str, float | None]:
    return {
        "mean": _number(stats.mean),
        "recall": _number(stats.recall),
        "decay": _number(stats.decay),
    }


def object_record(scores: ObjectScores) -> dict[str, Any]:
    """One object's scores as JSON-ready values (fractions in [0, 1])."""
    return {
        "object": scores.obj,
        "J&F": _number(scores.jf_mean),
        "J": _stats(scores.j_stats),
        "F": _stats(scores.f_stats),
        "frames": list(scores.frames),
        "J_per_frame": [_number(v) for v in scores.j.tolist()],
        "F_per_frame": [_number(v) for v in scores.f.tolist()],
        **{
            f"{key}_per_frame": [_number(v) for v in values.tolist()]
            for key, values in scores.extra.items()
        },
    }


def object_from_record(video: str, record: Mapping[str, Any]) -> ObjectScores:
    """Inverse of `object_record` (what `treemem bench` reads back from its result files)."""

    def values(key: str) -> FloatArray:
        return np.array([math.nan if v is None else v for v in record[key]], dtype=np.float64)

    return ObjectScores(
        video,
        int(record["object"]),
        tuple(record["frames"]),
        values("J_per_frame"),
        values("F_per_frame"),
        extra={
            key.removesuffix("_per_frame"): values(key)
            for key in record
            if key.endswith("_per_frame") and key not in ("J_per_frame", "F_per_frame")
        },
    )


def summary_record(summary: Summary, videos: int) -> dict[str, Any]:
    return {
        "J&F": _number(summary.jf),
        "J": _stats(summary.j),
        "F": _stats(summary.f),
        "objects": summary.objects,
        "videos": videos,
    }


def scores_record(videos: Sequence[VideoScores], **extra: Any) -> dict[str, Any]:
    """The whole evaluation as one JSON-ready dict."""
    summary = summarize(o for v in videos for o in v.objects)
    return {
        **extra,
        "summary": summary_record(summary, len(videos)),
        "videos": [
            {
                "video": v.video,
                "J&F": _number(sum(video_means(v)) / 2),
                "J": _number(video_means(v)[0]),
                "F": _number(video_means(v)[1]),
                "objects": [object_record(o) for o in v.objects],
            }
            for v in videos
        ],
    }


def write_csv(path: Path, videos: Sequence[VideoScores]) -> None:
    """One row per object plus one per video (object "all") and a global row; fractions."""
    header = [
        "video",
        "object",
        "J&F",
        "J",
        "F",
        "J_recall",
        "J_decay",
        "F_recall",
        "F_decay",
        "frames",
    ]
    rows: list[list[object]] = []
    for video in videos:
        j, f = video_means(video)
        frames = len({name for o in video.objects for name in o.frames})
        rows.append(
            [
                video.video,
                "all",
                _number((j + f) / 2),
                _number(j),
                _number(f),
                "",
                "",
                "",
                "",
                frames,
            ]
        )
        for o in video.objects:
            js, fs = o.j_stats, o.f_stats
            rows.append(
                [
                    video.video,
                    o.obj,
                    _number(o.jf_mean),
                    _number(js.mean),
                    _number(fs.mean),
                    _number(js.recall),
                    _number(js.decay),
                    _number(fs.recall),
                    _number(fs.decay),
                    len(o.frames),
                ]
            )
    summary = summarize(o for v in videos for o in v.objects)
    rows.append(
        [
            "global",
            "all",
            _number(summary.jf),
            _number(summary.j.mean),
            _number(summary.f.mean),
            _number(summary.j.recall),
            _number(summary.j.decay),
            _number(summary.f.recall),
            _number(summary.f.decay),
            "",
        ]
    )
    with atomic_writer(path) as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(["" if cell is None else cell for cell in row] for row in rows)


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    with atomic_writer(path) as stream:
        json.dump(record, stream, indent=1)
        stream.write("\n")


class atomic_writer:  # noqa: N801 (used as a context manager, like open)
    """Open a text file for writing that appears under `path` only once complete."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, self._temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.chmod(self._temporary, 0o644)  # mkstemp's 0600 is meant for secrets, not results
        self._stream = os.fdopen(descriptor, "w", encoding="utf-8", newline="")
        return self._stream

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self._stream.close()
        if kind is None:
            os.replace(self._temporary, self.path)
        else:
            Path(self._temporary).unlink(missing_ok=True)


# --- curves -------------------------------------------------------------------------------------


def frame_axis(frames: Sequence[str]) -> FloatArray:
    """x positions for frame names: their numbers when all stems are numeric, else 0, 1, ..."""
    stems = [Path(name).stem for name in frames]
    if stems and all(stem.isdigit() for stem in stems):
        return np.array([int(stem) for stem in stems], dtype=np.float64)
    return np.arange(len(frames), dtype=np.float64)


def mean_curve(videos: Iterable[VideoScores]) -> tuple[FloatArray, FloatArray]:
    """Per-frame J&F averaged over videos, aligned by frame position (Figure 1b style)."""
    totals: dict[float, float] = {}
    counts: dict[float, int] = {}
    for video in videos:
        frames, curve = video.frame_curve()
        for x, value in zip(frame_axis(frames).tolist(), curve.tolist(), strict=True):
            totals[x] = totals.get(x, 0.0) + value
            counts[x] = counts.get(x, 0) + 1
    xs = np.array(sorted(totals), dtype=np.float64)
    return xs, np.array([totals[x] / counts[x] for x in xs.tolist()], dtype=np.float64)


def plot_curves(
    path: Path,
    curves: Mapping[str, tuple[FloatArray, FloatArray]],
    title: str,
    *,
    legend_limit: int = 12,
) -> None:
    """Per-frame J&F (in %) against frame number, one line per label, saved as an image."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    for label, (xs, ys) in curves.items():
        axes.plot(xs, 100 * ys, label=label, linewidth=1.2)
    axes.set_xlabel("frame")
    axes.set_ylabel("J&F (%)")
    axes.set_ylim(0, 101)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if 0 < len(curves) <= legend_limit:
        axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
