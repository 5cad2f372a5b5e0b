"""The benchmarks' own protocols: DAVIS 2017, SA-V, LVOS and MOSE as one frozen record each.

A `Protocol` says how to read a benchmark's folder layout and meta files (`read`), which
objects are prompted where (`prompts`), which frames of which objects are scored and with
which J and F (`score`), the table the benchmark prints (`columns`, `summary`) and whether
results go to an evaluation server as a zip of palette PNGs (`submission`). `treemem bench
DATASET --protocol NAME` runs one; without `--protocol`, `detect` picks it from the layout.

Every definition here follows the benchmark's official evaluation code (the docs pages under
docs/benchmarks/ name it); tests/fixtures/official/ holds the official numbers on generated
datasets and tests/test_protocols.py checks that these functions reproduce them.

| protocol | tracked frames | scored frames | objects | J, F |
| --- | --- | --- | --- | --- |
| davis | all, from frame 0 | annotated frames but the first and last | ids of frame 0 | DAVIS |
| sav | all (24 fps) | annotated (6 fps) but the first and last | each object folder | DAVIS |
| lvos | all | every 5th frame of each object's range but its first and last | meta | DAVIS |
| mose | all | every frame but the first and the last | meta | MOSE |
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from treemem.evaluation import VideoMasks, score_video
from treemem.io.masks import read_mask
from treemem.metrics import (
    ObjectScores,
    VideoScores,
    boundary_accuracy,
    mose_boundary_accuracy,
    mose_region_similarity,
    region_similarity,
    summarize,
)
from treemem.types import InputError, Prompt

VOID = 255
"""The label DAVIS, LVOS and MOSE use for pixels that belong to no object."""

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
LVOS_STEP = 5
"""LVOS annotates every 5th frame (6 fps of 30)."""


class UnannotatedError(InputError):
    """A split whose annotations are withheld (a test split scored by a server): the
    predictions and the submission are written, nothing is scored."""


# --- what a protocol reads --------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectSpan:
    """An object as LVOS's meta file lists it: annotated every 5th frame from `start`,
    `frame_nums` annotated frames, the last one at `end`."""

    obj: int
    start: int
    end: int
    frame_nums: int


@dataclass(frozen=True)
class BenchVideo:
    """One video of a benchmark split: its frames, its annotations and what the meta file says.

    frame_names: the stems of every frame file, in order (what the predictions are named);
    group: LVOS's "seen" or "unseen" category group ("" elsewhere); spans: LVOS's objects;
    meta_objects / length / size: MOSE's meta file (empty / None when there is none).
    """

    name: str
    frames_dir: Path
    frame_names: tuple[str, ...]
    annotations: VideoMasks
    group: str = ""
    spans: tuple[ObjectSpan, ...] = ()
    meta_objects: tuple[int, ...] = ()
    length: int | None = None
    folder_names: Mapping[int, str] = field(default_factory=dict)
    """Per-object layouts (SA-V): tracked object id -> the annotation folder's name."""

    def frame_index(self, annotation: str) -> int:
        """The frame an annotation file (`00005.png`) belongs to."""
        stem = Path(annotation).stem
        try:
            return self.frame_names.index(stem)
        except ValueError:
            raise InputError(
                f"{self.annotations.path / annotation}: no frame {stem} in {self.frames_dir}"
            ) from None


@dataclass(frozen=True)
class Dataset:
    """A benchmark split as read from disk."""

    protocol: str
    root: Path
    split: str
    videos: tuple[BenchVideo, ...]

    @property
    def synthetic_dir(self) -> Path:
        """Where `treemem bench --make-synthetic --protocol` keeps what the synthetic
        backend reads (one saved synthetic video per video)."""
        return self.root / "synthetic"

    def video(self, name: str) -> BenchVideo:
        for video in self.videos:
            if video.name == name:
                return video
        raise InputError(f"{self.root}: no video {name!r} in the {self.split} split")


@dataclass(frozen=True)
class Protocol:
    """How one benchmark is run and scored (see the module docstring)."""

    name: str
    title: str
    layout: str
    """The folders `detect` looks for, in words (for messages)."""
    looks_like: Callable[[Path], bool]
    read: Callable[[Path, str | None], Dataset]
    prompts: Callable[[BenchVideo], list[Prompt]]
    score: Callable[[BenchVideo, Path], VideoScores]
    """Scores one video's predictions, the folder `pred/<video>` (palette PNGs, or for a
    per-object annotation layout one folder per object as the annotations have)."""
    columns: tuple[str, ...]
    summary: Callable[[Sequence[VideoScores], Mapping[str, str]], dict[str, float]]
    """The benchmark's table row (fractions) from every video's scores and its group."""
    submission: bool
    """Whether the benchmark is scored by a server that takes a zip of palette PNGs."""


# --- layouts ------------------------------------------------------------------------------------


def _frame_stems(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        raise InputError(f"frame folder not found: {folder}")
    stems = [
        p.stem
        for p in folder.iterdir()
        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
    ]
    if not stems:
        raise InputError(f"{folder} holds no JPEG or PNG frames")
    return tuple(sorted(stems, key=lambda s: (int(s) if s.isdigit() else math.inf, s)))


def _subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}")
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise InputError(f"{path}: expected a JSON object with a \"videos\" mapping")
    return data


def _annotations(folder: Path, name: str) -> VideoMasks:
    if not folder.is_dir():
        raise InputError(f"annotation folder not found: {folder}")
    pngs = [p for p in folder.iterdir() if p.suffix.lower() == ".png"]
    return VideoMasks(name, folder, per_object=not pngs)


def _davis_folders(root: Path) -> tuple[Path, Path]:
    for resolution in ("480p", "Full-Resolution"):
        images, masks = root / "JPEGImages" / resolution, root / "Annotations" / resolution
        if images.is_dir() and masks.is_dir():
            return images, masks
    raise InputError(
        f"{root} is not a DAVIS 2017 folder: expected JPEGImages/480p and Annotations/480p"
    )


def read_davis(root: Path, split: str | None) -> Dataset:
    """DAVIS 2017: `JPEGImages/480p/<video>/*.jpg`, `Annotations/480p/<video>/*.png`,
    `ImageSets/2017/<split>.txt` (default split: val)."""
    split = split or "val"
    images, masks = _davis_folders(root)
    listing = root / "ImageSets" / "2017" / f"{split}.txt"
    if not listing.is_file():
        raise InputError(f"no video list for split {split!r}: {listing} is missing")
    videos = tuple(
        BenchVideo(
            name, images / name, _frame_stems(images / name), _annotations(masks / name, name)
        )
        for name in _read_list(listing)
    )
    return Dataset("davis", root, split, videos)


def read_sav(root: Path, split: str | None) -> Dataset:
    """SA-V val/test: `JPEGImages_24fps/<video>/*.jpg`, `Annotations_6fps/<video>/<obj>/*.png`
    (or palette PNGs per frame), the video list `sav_<split>.txt` when present."""
    images, masks = root / "JPEGImages_24fps", root / "Annotations_6fps"
    if not images.is_dir() or not masks.is_dir():
        raise InputError(
            f"{root} is not an SA-V split: expected JPEGImages_24fps and Annotations_6fps"
        )
    lists = sorted(root.glob("sav_*.txt"))
    if split is None:
        split = lists[0].stem.removeprefix("sav_") if len(lists) == 1 else root.name
    listing = root / f"sav_{split}.txt"
    names = _read_list(listing) if listing.is_file() else _subfolders(masks)
    videos = []
    for name in names:
        annotations = _annotations(masks / name, name)
        folders: dict[int, str] = {}
        if annotations.per_object:
            for child in sorted(p for p in (masks / name).iterdir() if p.is_dir()):
                if not child.name.isdigit():
                    raise InputError(f"{child}: SA-V object folders are numbered (000, 001, ...)")
                folders[int(child.name) + 1] = child.name
        videos.append(
            BenchVideo(name, images / name, _frame_stems(images / name), annotations,
                       folder_names=folders)
        )
    return Dataset("sav", root, split, tuple(videos))


def _lvos_meta(root: Path, split: str | None) -> tuple[str, Path]:
    metas = sorted(root.glob("*_meta.json"))
    if split is None:
        if len(metas) != 1:
            found = ", ".join(p.name for p in metas) or "none"
            raise InputError(f"{root}: need one <split>_meta.json (found {found}); give --split")
        return metas[0].name.removesuffix("_meta.json"), metas[0]
    path = root / f"{split}_meta.json"
    if not path.is_file():
        raise InputError(f"LVOS meta file not found: {path}")
    return split, path


def read_lvos(root: Path, split: str | None) -> Dataset:
    """LVOS v1/v2: `JPEGImages/<video>/*.jpg`, `Annotations/<video>/*.png` (every 5th
    frame), `<split>_meta.json` (each object's frame range) and `unseen_videos.txt` (the
    videos of unseen categories, from the lvos-evaluation repository)."""
    split, meta_path = _lvos_meta(root, split)
    meta = _read_json(meta_path)["videos"]
    unseen_path = root / "unseen_videos.txt"
    if not unseen_path.is_file():
        raise InputError(
            f"{unseen_path} is missing: LVOS reports seen and unseen categories apart; copy "
            "unseen_videos.txt from github.com/LingyiHongfd/lvos-evaluation into the split folder"
        )
    unseen = set(_read_list(unseen_path))
    videos = []
    for name in sorted(meta):
        spans = []
        for key, record in meta[name]["objects"].items():
            frame_range = record["frame_range"]
            span = ObjectSpan(
                int(key), int(frame_range["start"]), int(frame_range["end"]),
                int(frame_range["frame_nums"]),
            )
            if len(range(span.start, span.end, LVOS_STEP)) + 1 != span.frame_nums:
                raise InputError(
                    f"{meta_path}: {name} object {key}: frame_nums {span.frame_nums} does not "
                    f"match frames {span.start}..{span.end} every {LVOS_STEP}"
                )
            spans.append(span)
        images = root / "JPEGImages" / name
        videos.append(
            BenchVideo(
                name, images, _frame_stems(images),
                _annotations(root / "Annotations" / name, name),
                group="unseen" if name in unseen else "seen", spans=tuple(spans),
            )
        )
    return Dataset("lvos", root, split, tuple(videos))


def read_mose(root: Path, split: str | None) -> Dataset:
    """MOSE / MOSEv2: `JPEGImages/<video>/*.jpg`, `Annotations/<video>/*.png`, and when
    present `meta.json` (each video's length, size and object ids, as the toolkit reads)."""
    meta_path = root / "meta.json"
    meta = _read_json(meta_path)["videos"] if meta_path.is_file() else {}
    names = sorted(meta) or _subfolders(root / "Annotations")
    videos = []
    for name in names:
        record = meta.get(name, {})
        images = root / "JPEGImages" / name
        videos.append(
            BenchVideo(
                name, images, _frame_stems(images),
                _annotations(root / "Annotations" / name, name),
                meta_objects=tuple(int(k) for k in record.get("objects", ())),
                length=int(record["length"]) if "length" in record else None,
            )
        )
    return Dataset("mose", root, split or root.name, tuple(videos))


# --- prompting rules --------------------------------------------------------------------------


def _ids(path: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return read_mask(path)


def first_frame_prompts(video: BenchVideo) -> list[Prompt]:
    """DAVIS: every object of the first annotation, prompted with its mask there."""
    frames = video.annotations.frames()
    if not frames:
        raise InputError(f"{video.annotations.path}: no annotation")
    ids = _ids(video.annotations.path / frames[0])
    index = video.frame_index(frames[0])
    prompts = [
        Prompt(int(obj), index, mask=ids == obj) for obj in np.unique(ids) if obj not in (0, VOID)
    ]
    if not prompts:
        raise InputError(f"{video.annotations.path / frames[0]}: no object to track")
    return prompts


def first_appearance_prompts(video: BenchVideo) -> list[Prompt]:
    """SA-V, MOSE: each object prompted on the first annotated frame it is on (sam2's
    `tools/vos_inference.py --track_object_appearing_later_in_video`; the same as its
    default, frame 0 only, for objects on frame 0, as MOSE's are)."""
    prompts: list[Prompt] = []
    seen: set[int] = set()
    offset = 1 if video.annotations.per_object else 0
    for frame in video.annotations.frames():
        found = video.annotations.read(frame)
        if found is None:
            continue
        for obj, mask in sorted(found[0].items()):
            if obj + offset not in seen and obj != VOID and mask.any():
                seen.add(obj + offset)
                prompts.append(Prompt(obj + offset, video.frame_index(frame), mask=mask))
    if not prompts:
        raise InputError(f"{video.annotations.path}: no object in the annotations to track")
    return prompts


def lvos_prompts(video: BenchVideo) -> list[Prompt]:
    """LVOS: each object of the meta file prompted on the first frame of its range."""
    prompts = []
    for span in video.spans:
        path = video.annotations.path / f"{span.start:08d}.png"
        mask = _ids(path) == span.obj
        if not mask.any():
            raise InputError(f"{path}: object {span.obj} is not on the first frame of its range")
        prompts.append(Prompt(span.obj, video.frame_index(path.name), mask=mask))
    if not prompts:
        raise InputError(f"{video.name}: the meta file lists no object")
    return prompts


# --- scoring ------------------------------------------------------------------------------------


def _prediction(pred_dir: Path, frame: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    path = pred_dir / frame
    if not path.is_file():
        raise InputError(f"prediction missing: {path}")
    ids = read_mask(path)
    if ids.shape != shape:
        raise InputError(
            f"{path} is {ids.shape[1]}x{ids.shape[0]} but the annotation is "
            f"{shape[1]}x{shape[0]}; predict at the annotation's resolution"
        )
    return ids


def _need_annotations(video: BenchVideo, count: int) -> None:
    """A video annotated on fewer than 3 frames has nothing to score (a test split)."""
    if count < 3:
        raise UnannotatedError(
            f"{video.annotations.path}: {count} annotated frames, nothing to score but the "
            "first and last (a split the server scores)"
        )


def score_davis(video: BenchVideo, pred_dir: Path) -> VideoScores:
    """DAVIS 2017 semi-supervised: objects 1..N, N the largest id of the first annotation;
    each scored on every annotated frame but the first and last (empty on both: J = F = 1);
    void (255) counts as background; a prediction holding an id above N is refused."""
    frames = video.annotations.frames()
    _need_annotations(video, len(frames))
    first = _ids(video.annotations.path / frames[0])
    count = int(np.max(np.where(first == VOID, 0, first)))
    evaluated = frames[1:-1]
    j = np.zeros((count, len(evaluated)))
    f = np.zeros((count, len(evaluated)))
    for column, frame in enumerate(evaluated):
        truth = _ids(video.annotations.path / frame)
        predicted = _prediction(pred_dir, frame, truth.shape)
        if int(predicted.max()) > count:
            raise InputError(
                f"{pred_dir / frame} holds object {int(predicted.max())} but {video.name} has "
                f"{count} objects (DAVIS refuses ids above the first frame's)"
            )
        for row in range(count):
            gt_mask, pred_mask = truth == row + 1, predicted == row + 1
            j[row, column] = float(region_similarity(gt_mask, pred_mask))
            f[row, column] = boundary_accuracy(gt_mask, pred_mask)
    return VideoScores(
        video.name,
        tuple(
            ObjectScores(video.name, row + 1, tuple(evaluated), j[row], f[row])
            for row in range(count)
        ),
    )


def score_sav(video: BenchVideo, pred_dir: Path) -> VideoScores:
    """SA-V (sam2's `sav_dataset/sav_evaluator.py`): annotated frames but the first and last;
    an object is scored from the first of them where it is in the annotation or the
    prediction, and reported when it is ever in the annotation. Objects keep their folder
    numbers (000 is object 0)."""
    pred = VideoMasks(video.name, pred_dir, per_object=video.annotations.per_object)
    return score_video(video.annotations, pred, skip_first_last=True)


def lvos_frames(span: ObjectSpan) -> list[int]:
    """The frames LVOS scores for one object: its range every 5th frame, without the first
    (and without the `frame_nums - 1`-th, the last, which the range already excludes)."""
    frames = list(range(span.start, span.end, LVOS_STEP))
    return [frame for index, frame in enumerate(frames) if 0 < index < span.frame_nums - 1]


def score_lvos(video: BenchVideo, pred_dir: Path) -> VideoScores:
    """LVOS (lvos-evaluation, semi-supervised): each object of the meta file on
    `lvos_frames(span)`; void pixels are not set apart (the evaluator passes none)."""
    objects = []
    for span in video.spans:
        names = [f"{frame:08d}.png" for frame in lvos_frames(span)]
        j, f = [], []
        for name in names:
            path = video.annotations.path / name
            if not path.is_file():
                raise UnannotatedError(f"annotation missing: {path} (listed by the meta file)")
            gt_mask = _ids(path) == span.obj
            pred_mask = _prediction(pred_dir, name, gt_mask.shape) == span.obj
            j.append(float(region_similarity(gt_mask, pred_mask)))
            f.append(boundary_accuracy(gt_mask, pred_mask))
        objects.append(
            ObjectScores(video.name, span.obj, tuple(names), np.array(j), np.array(f))
        )
    return VideoScores(video.name, tuple(objects))


def score_mose(video: BenchVideo, pred_dir: Path) -> VideoScores:
    """MOSEv2's toolkit (`tools/score.py`): every annotated frame but the first and last of
    the video, every object of the meta file (else of the first annotation) on all of them;
    J is MOSE's smoothed IoU, `f` DAVIS's F, `extra["F_new"]` the area-adaptive F, and
    `extra["gt_empty"]` (1.0 / 0.0) marks the frames the object is absent from."""
    frames = sorted(video.annotations.frames(), key=lambda n: int(Path(n).stem))
    _need_annotations(video, len(frames))
    if video.length is not None and video.length != len(frames):
        raise InputError(
            f"{video.annotations.path}: {len(frames)} annotations but meta.json says "
            f"{video.length} frames"
        )
    objects = video.meta_objects or tuple(
        int(o) for o in np.unique(_ids(video.annotations.path / frames[0])) if o not in (0, VOID)
    )
    evaluated = frames[1:-1]
    shape = (len(objects), len(evaluated))
    j, f, f_new, empty = np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for column, frame in enumerate(evaluated):
        truth = _ids(video.annotations.path / frame)
        predicted = _prediction(pred_dir, frame, truth.shape)
        for row, obj in enumerate(objects):
            gt_mask, pred_mask = truth == obj, predicted == obj
            j[row, column] = mose_region_similarity(gt_mask, pred_mask)
            f[row, column], f_new[row, column] = mose_boundary_accuracy(gt_mask, pred_mask)
            empty[row, column] = float(not gt_mask.any())
    return VideoScores(
        video.name,
        tuple(
            ObjectScores(
                video.name, obj, tuple(evaluated), j[row], f[row],
                extra={"F_new": f_new[row], "gt_empty": empty[row]},
            )
            for row, obj in enumerate(objects)
        ),
    )


# --- tables -----------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def davis_summary(videos: Sequence[VideoScores], groups: Mapping[str, str]) -> dict[str, float]:
    """J&F, then J and F with DAVIS's recall and decay, averaged over all objects."""
    summary = summarize(o for v in videos for o in v.objects)
    return {
        "J&F": summary.jf,
        "J": summary.j.mean,
        "J-Recall": summary.j.recall,
        "J-Decay": summary.j.decay,
        "F": summary.f.mean,
        "F-Recall": summary.f.recall,
        "F-Decay": summary.f.decay,
    }


def sav_summary(videos: Sequence[VideoScores], groups: Mapping[str, str]) -> dict[str, float]:
    """J&F, J, F: each object's mean over its frames, averaged over all objects."""
    summary = summarize(o for v in videos for o in v.objects)
    return {"J&F": summary.jf, "J": summary.j.mean, "F": summary.f.mean}


def lvos_variation(scores: ObjectScores) -> float:
    """LVOS's V: the standard deviation of per-frame J&F, its variance rounded to 4 places
    first as the evaluator does."""
    jf = (scores.j + scores.f) / 2
    if jf.size == 0:
        return math.nan
    variance = float(np.nansum((np.nanmean(jf) - jf) ** 2) / jf.size)
    return math.sqrt(round(variance, 4))


def lvos_summary(videos: Sequence[VideoScores], groups: Mapping[str, str]) -> dict[str, float]:
    """LVOS: J and F averaged over the objects of seen and of unseen videos apart;
    J = (J_s + J_u) / 2, F likewise, J&F = (J_s + F_s + J_u + F_u) / 4; V the same way."""
    by_group: dict[str, list[ObjectScores]] = {"seen": [], "unseen": []}
    for video in videos:
        by_group[groups.get(video.video, "seen") or "seen"].extend(video.objects)
    row: dict[str, float] = {}
    for group, key in (("seen", "s"), ("unseen", "u")):
        objects = by_group[group]
        row[f"J_{key}"] = _mean([o.j_stats.mean for o in objects])
        row[f"F_{key}"] = _mean([o.f_stats.mean for o in objects])
        row[f"V_{key}"] = _mean([lvos_variation(o) for o in objects])
    return {
        "J&F": (row["J_s"] + row["F_s"] + row["J_u"] + row["F_u"]) / 4,
        "J": (row["J_s"] + row["J_u"]) / 2,
        "F": (row["F_s"] + row["F_u"]) / 2,
        "J_s": row["J_s"],
        "F_s": row["F_s"],
        "J_u": row["J_u"],
        "F_u": row["F_u"],
        "V": (row["V_s"] + row["V_u"]) / 2,
    }


@dataclass(frozen=True)
class MoseObject:
    """One object's MOSEv2 numbers: means over the scored frames, and over the frames of its
    disappearance and reappearance segments (None without such a segment)."""

    j: float
    f_new: float
    f: float
    disappear: tuple[float, float] | None
    reappear: tuple[float, float] | None


def mose_object(scores: ObjectScores) -> MoseObject:
    """MOSEv2's per-object merge: a disappearance segment runs from a frame where the object
    leaves the annotation (not counting the first scored frame) to its reappearance; a
    reappearance segment from there to the next disappearance; each averaged, then the
    segments averaged (J and F_new)."""
    if scores.j.size == 0:
        return MoseObject(0.0, 0.0, 0.0, None, None)
    j, f_new = scores.j, scores.extra["F_new"]
    empty = scores.extra["gt_empty"] > 0.5
    disappear = [int(i) for i in np.flatnonzero(~empty[:-1] & empty[1:]) + 1]
    if empty[0]:
        disappear.insert(0, 0)
    reappear = [int(i) for i in np.flatnonzero(empty[:-1] & ~empty[1:]) + 1]
    gone = []
    for index, start in enumerate(disappear):
        end = reappear[index] if index < len(reappear) else empty.size
        if start > 0:
            gone.append((float(j[start:end].mean()), float(f_new[start:end].mean())))
    back = []
    for index, start in enumerate(reappear):
        end = disappear[index + 1] if index + 1 < len(disappear) else empty.size
        back.append((float(j[start:end].mean()), float(f_new[start:end].mean())))

    def average(segments: list[tuple[float, float]]) -> tuple[float, float] | None:
        if not segments:
            return None
        return _mean([s[0] for s in segments]), _mean([s[1] for s in segments])

    return MoseObject(
        float(j.mean()), float(f_new.mean()), float(scores.f.mean()), average(gone), average(back)
    )


def mose_summary(videos: Sequence[VideoScores], groups: Mapping[str, str]) -> dict[str, float]:
    """MOSEv2: J&F_new = (J + F_new) / 2 (the ranking number), the disappearance and
    reappearance J&F_new, and the classic F and J&F; all averaged over objects."""
    objects = [mose_object(o) for v in videos for o in v.objects]
    j = _mean([o.j for o in objects])
    f_new = _mean([o.f_new for o in objects])
    f = _mean([o.f for o in objects])
    gone = [o.disappear for o in objects if o.disappear is not None]
    back = [o.reappear for o in objects if o.reappear is not None]
    return {
        "J&F_new": (j + f_new) / 2,
        "J": j,
        "F_new": f_new,
        "J&F_dis": (_mean([s[0] for s in gone]) + _mean([s[1] for s in gone])) / 2,
        "J&F_rep": (_mean([s[0] for s in back]) + _mean([s[1] for s in back])) / 2,
        "F": f,
        "J&F": (j + f) / 2,
    }


# --- the four records ---------------------------------------------------------------------------


def _is_davis(root: Path) -> bool:
    images = root / "JPEGImages"
    return (root / "ImageSets").is_dir() and any(
        (images / resolution).is_dir() for resolution in ("480p", "Full-Resolution")
    )


def _is_sav(root: Path) -> bool:
    return (root / "JPEGImages_24fps").is_dir() and (root / "Annotations_6fps").is_dir()


def _plain_layout(root: Path) -> bool:
    folders = (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()
    return folders and not _is_davis(root)


def _is_lvos(root: Path) -> bool:
    return _plain_layout(root) and any(root.glob("*_meta.json"))


def _is_mose(root: Path) -> bool:
    return _plain_layout(root) and (root / "meta.json").is_file()


DAVIS = Protocol(
    "davis", "DAVIS 2017 (semi-supervised)",
    "JPEGImages/480p, Annotations/480p and ImageSets/2017",
    _is_davis, read_davis, first_frame_prompts, score_davis,
    ("J&F", "J", "J-Recall", "J-Decay", "F", "F-Recall", "F-Decay"), davis_summary,
    submission=True,
)
SAV = Protocol(
    "sav", "SA-V (val / test)", "JPEGImages_24fps and Annotations_6fps",
    _is_sav, read_sav, first_appearance_prompts, score_sav,
    ("J&F", "J", "F"), sav_summary, submission=False,
)
LVOS = Protocol(
    "lvos", "LVOS (v1 / v2)", "JPEGImages, Annotations and <split>_meta.json",
    _is_lvos, read_lvos, lvos_prompts, score_lvos,
    ("J&F", "J", "F", "J_s", "F_s", "J_u", "F_u", "V"), lvos_summary, submission=True,
)
MOSE = Protocol(
    "mose", "MOSE / MOSEv2", "JPEGImages, Annotations and meta.json",
    _is_mose, read_mose, first_appearance_prompts, score_mose,
    ("J&F_new", "J", "F_new", "J&F_dis", "J&F_rep", "F", "J&F"), mose_summary,
    submission=True,
)
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (DAVIS, SAV, LVOS, MOSE)}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise InputError(
            f"unknown protocol {name!r} (known: {', '.join(PROTOCOLS)})"
        ) from None


def detect(root: Path) -> Protocol | None:
    """The protocol whose layout `root` has; None for none of them (treemem's own layout);
    an `InputError` when the layout fits several or is a plain JPEGImages + Annotations
    folder without the meta file that would tell LVOS from MOSE."""
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    found = [p for p in PROTOCOLS.values() if p.looks_like(root)]
    if len(found) > 1:
        names = " or ".join(f"--protocol {p.name}" for p in found)
        raise InputError(f"{root} looks like several benchmarks; give {names}")
    if found:
        return found[0]
    if _plain_layout(root):
        raise InputError(
            f"{root} has JPEGImages/ and Annotations/ but neither <split>_meta.json (LVOS) nor "
            "meta.json (MOSE); give --protocol lvos or --protocol mose"
        )
    return None


# --- scoring a split ---------------------------------------------------------------------------


def score_split(protocol: Protocol, dataset: Dataset, pred_root: Path) -> list[VideoScores]:
    """Every video of `dataset` scored from `pred_root/<video>` (what `treemem eval
    --protocol` runs); a missing prediction folder is an error naming the videos."""
    missing = [v.name for v in dataset.videos if not (pred_root / v.name).is_dir()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise InputError(f"{pred_root} has no predictions for {len(missing)} videos: {shown}")
    return [protocol.score(video, pred_root / video.name) for video in dataset.videos]


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def format_split(protocol: Protocol, dataset: Dataset, videos: Sequence[VideoScores]) -> str:
    """One line per video (its objects' mean J, F, J&F, and its group), then the benchmark's
    table row."""
    groups = {v.name: v.group for v in dataset.videos}
    width = max([len("video"), *(len(v.video) for v in videos)])
    lines = [f"{protocol.title}, {dataset.split} split"]
    header = f"{'group':>6}  {'objects':>7}  {'J&F':>5}  {'J':>5}  {'F':>5}"
    lines.append(f"{'video':<{width}}  {header}")
    for video in videos:
        j = _mean([o.j_stats.mean for o in video.objects])
        f = _mean([o.f_stats.mean for o in video.objects])
        lines.append(
            f"{video.video:<{width}}  {groups.get(video.video, ''):>6}  {len(video.objects):>7}  "
            f"{_percent((j + f) / 2):>5}  {_percent(j):>5}  {_percent(f):>5}"
        )
    row = protocol.summary(videos, groups)
    lines.append("")
    lines.append("  ".join(f"{column} {_percent(row[column])}" for column in protocol.columns))
    return "\n".join(lines)


__all__ = [
    "DAVIS",
    "LVOS",
    "MOSE",
    "PROTOCOLS",
    "SAV",
    "BenchVideo",
    "Dataset",
    "MoseObject",
    "ObjectSpan",
    "Protocol",
    "UnannotatedError",
    "detect",
    "format_split",
    "get_protocol",
    "lvos_frames",
    "mose_object",
    "score_split",
]
