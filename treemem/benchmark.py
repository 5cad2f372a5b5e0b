"""Benchmarks as a library: sweeps of strategy sets over a dataset, scored, compared for speed.

`treemem bench` is a thin command over this module; bench scripts and notebooks call it too.

Every (strategy, setting) pair is a run; every run tracks every video. A dataset folder holds
one folder per video with `frames/` (the images) and `gt/` (palette PNGs, one per annotated
frame, named like the frames); `treemem bench --make-synthetic DIR` writes the synthetic suite
in this layout (plus what the synthetic backend reads). Each object is prompted with its
first ground-truth mask, as in the semi-supervised protocol.

Output, under `--out`:

    runs/<run>/run.json                 what the run is (checked when resuming)
    runs/<run>/pred/<video>/<frame>.png predictions (palette PNGs)
    runs/<run>/results/<video>.json     scores and timing; written last and atomically, so
                                        its presence marks the video finished
    results.csv, results.json, results.md   the comparison table

By default the runs of one video are tracked in one pass (`treemem.pipeline.sweep`): one
image-encoder pass per frame for all of them, one batched proposal and commit, each run's
masks and tree exactly those of running it alone. Its result files then say so (`sweep`: the
runs of the pass) and their `seconds` / `fps` are the whole pass's; `--separate` tracks every
run on its own (each run's own speed).

A rerun skips finished videos (a pass reruns only its unfinished runs). With `--ray` (or
`--ray-address`) each video is one Ray task, so a lost worker loses only its video; without
them Ray is never imported.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treemem.evaluation import (
    VideoMasks,
    atomic_writer,
    object_from_record,
    object_record,
    score_video,
    write_json,
)
from treemem.io.masks import object_ids, read_mask, write_palette_png
from treemem.metrics import ObjectScores, Summary, VideoScores, summarize
from treemem.pipeline.frames import FrameResult, FrameStream, ObjectMask
from treemem.pipeline.inputs import (
    BACKENDS,
    MODEL_BACKENDS,
    BackendName,
    ModelCache,
    ModelSpec,
    OpenedVideo,
    check_model_options,
    open_backend,
)
from treemem.pipeline.runner import choose_strategy, search_frames, search_sweep
from treemem.pipeline.sinks import FrameSink, PaletteFolderSink, output_errors, progress_bar
from treemem.pipeline.sweep import SweepStream
from treemem.protocols import (
    PROTOCOLS,
    Dataset,
    Protocol,
    UnannotatedError,
    detect,
    get_protocol,
)
from treemem.registry import ALIASES, REGISTRY, load_strategy
from treemem.types import ConfigError, InputError, Prompt, TreememError

BASELINE = "greedy"


# --- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One strategy set with the overrides the user set for it (strings, as typed)."""

    strategy: str
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return "-".join([self.strategy, *(f"{k}={v}" for k, v in self.overrides)])


def parse_sweep(values: Sequence[str]) -> list[tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    """`--set` values as (keys, options): `P=1,2` -> (("P",), [("1",), ("2",)]);
    `w_low/w_high=1/1,0.9/1.1` sweeps the two keys together."""
    groups = []
    for text in values:
        key_text, sep, value_text = text.partition("=")
        keys = tuple(k.strip() for k in key_text.split("/"))
        if not sep or not all(keys) or not value_text.strip():
            raise ConfigError(f"--set needs KEY=V1,V2,... (or K1/K2=A1/A2,B1/B2), got {text!r}")
        options = []
        for option in value_text.split(","):
            parts = tuple(part.strip() for part in option.split("/"))
            if len(parts) != len(keys) or not all(parts):
                raise ConfigError(
                    f"--set {text!r}: {option!r} needs {len(keys)} values joined by /"
                )
            options.append(parts)
        groups.append((keys, options))
    return groups


def expand_runs(strategies: Sequence[str], sweep: Sequence[str]) -> list[RunSpec]:
    """Every strategy crossed with every combination of the `--set` options it accepts.

    A key applies to the strategies that have it (so `--set P=1,2,3` sweeps sam2long and runs
    greedy once); a key no strategy has is an error. Every run is checked by building it.
    """
    groups = parse_sweep(sweep)
    known = {name: _parameter_names(name) for name in strategies}
    for keys, options in groups:
        if not any(set(keys) <= known[name] for name in strategies):
            # let the registry explain (it suggests the closest parameter name)
            REGISTRY.create(strategies[0], dict(zip(keys, options[0], strict=True)))
            raise ConfigError(f"no strategy has all of {', '.join(keys)}")
    runs: list[RunSpec] = []
    for name in dict.fromkeys(strategies):
        mine = [(keys, options) for keys, options in groups if set(keys) <= known[name]]
        for combination in itertools.product(*(options for _, options in mine)):
            overrides = tuple(
                (key, value)
                for (keys, _), values in zip(mine, combination, strict=True)
                for key, value in zip(keys, values, strict=True)
            )
            spec = RunSpec(name, overrides)
            load_strategy(spec.strategy, dict(spec.overrides))
            if spec not in runs:
                runs.append(spec)
    return runs


def _parameter_names(strategy: str) -> set[str]:
    names = {p.name for p in REGISTRY.parameters(strategy)}
    return names | {alias for alias, target in ALIASES.items() if target in names}


# --- one video ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    """What every video of a benchmark shares (the model and the scoring protocol)."""

    backend: BackendName = "synthetic"
    checkpoint: str | None = None
    image_size: int | None = None
    device: str | None = None
    dtype: str = "fp32"
    """The sam2 / sam3 backend's precision (`treemem.pipeline.inputs.DTYPES`)."""
    compile: bool = False
    """Run the sam2 model's components through torch.compile."""
    skip_first_last: bool = True
    seed: int = 0
    protocol: str | None = None
    """A benchmark protocol (`treemem.protocols`); None: detected from the layout."""
    split: str | None = None
    config: str | None = None
    """The model config (default: inferred from the checkpoint); SAM 3: "sam3" or a JSON
    file, as `treemem run --config`."""

    def model_spec(self) -> ModelSpec:
        """The run layer's model spec, checked as `treemem run` checks it (a model backend
        without a checkpoint, options the backend lacks)."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r} (known: {', '.join(BACKENDS)})")
        spec = ModelSpec(
            self.checkpoint,
            self.config,
            device=self.device,
            image_size=self.image_size,
            seed=self.seed,
            dtype=self.dtype,
            compile=self.compile,
        )
        if self.backend in MODEL_BACKENDS:
            spec.check(self.backend)
        else:
            check_model_options(self.backend, spec)
        return spec


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker needs to run one video of one run (plain, picklable values)."""

    run: RunSpec
    video_dir: str
    run_dir: str
    settings: BenchSettings = BenchSettings()
    """The model and scoring settings every video of the benchmark shares."""
    protocol: str | None = None
    """A benchmark's protocol (`treemem.protocols`); None: treemem's own layout."""
    dataset: str | None = None
    """With a protocol: the benchmark split folder, and `split` its split name."""
    split: str | None = None

    @property
    def video(self) -> str:
        return Path(self.video_dir).name

    @property
    def result_path(self) -> Path:
        return Path(self.run_dir) / "results" / f"{self.video}.json"

    @property
    def pred_dir(self) -> Path:
        return Path(self.run_dir) / "pred" / self.video


def open_job(job: VideoJob, models: ModelCache | None = None) -> OpenedVideo:
    """A job's video through the run layer's one opener: the synthetic folder itself, or its
    `frames/` folder for SAM 2 and SAM 3. Frame names (the output PNG names) are the frame
    files'.

    `models` keeps loaded models across the videos of one process (a Ray task loads
    its own), so a checkpoint is read once, not once per video.
    """
    video_dir = Path(job.video_dir)
    spec = job.settings.model_spec()
    if job.settings.backend == "synthetic":
        if not (video_dir / "video.json").is_file():
            raise InputError(
                f"{video_dir} is not a saved synthetic video (no video.json); write the suite "
                "with `treemem bench --make-synthetic DIR` or use --backend sam2 or sam3"
            )
        opened = open_backend(video_dir, "synthetic", spec)
        opened.frame_names = sorted(p.stem for p in (video_dir / "frames").glob("*.png"))
        return opened
    return open_backend(video_dir / "frames", job.settings.backend, spec, models=models)


def first_frame_prompts(gt_dir: Path, names: Sequence[str]) -> list[Prompt]:
    """Each ground-truth object prompted with its mask on the first frame it appears in."""
    index = {name: i for i, name in enumerate(names)}
    prompts: list[Prompt] = []
    seen: set[int] = set()
    for path in sorted(gt_dir.glob("*.png")):
        if path.stem not in index:
            raise InputError(f"{path}: no frame named {path.stem} in the video's frames/")
        ids = read_mask(path)
        for obj in object_ids(ids):
            if obj not in seen and obj != 255:
                seen.add(obj)
                prompts.append(Prompt(obj, index[path.stem], mask=ids == obj))
    if not prompts:
        raise InputError(f"{gt_dir}: no object in the ground truth, nothing to track")
    return prompts


def run_video(
    jobs: Sequence[VideoJob],
    on_frame: Callable[[int], None] | None = None,
    models: ModelCache | None = None,
) -> list[dict[str, Any]]:
    """Track one video for every job (runs of the same video), write each run's predictions,
    score them, write each result file last; several jobs run in one pass (`track_runs`)."""
    job = jobs[0]
    if job.protocol is not None:
        return run_protocol_video(jobs, on_frame, models)
    with open_job(job, models) as opened:
        names = opened.frame_names
        if len(names) != opened.num_frames:
            raise InputError(
                f"{job.video_dir}: {len(names)} frame files but {opened.num_frames} frames"
            )
        gt_dir = Path(job.video_dir) / "gt"
        prompts = first_frame_prompts(gt_dir, names)
        sinks = [PaletteFolderSink(one.pred_dir, names) for one in jobs]
        streams, seconds = track_runs(opened, prompts, jobs, sinks, on_frame)
    results = []
    for one, stream, sink in zip(jobs, streams, sinks, strict=True):
        if sink.written != opened.num_frames:
            raise TreememError(
                f"{one.video}: the engine left frame {names[sink.written]} undecided"
            )
        scores = score_video(
            VideoMasks(one.video, gt_dir, per_object=False),
            VideoMasks(one.video, one.pred_dir, per_object=False),
            skip_first_last=one.settings.skip_first_last,
        )
        extra = _pass_record(jobs)
        results.append(
            write_result(one, stream, opened.num_frames, seconds, scores.objects, **extra)
        )
    return results


def track_runs(
    opened: OpenedVideo,
    prompts: Sequence[Prompt],
    jobs: Sequence[VideoJob],
    sinks: Sequence[FrameSink],
    on_frame: Callable[[int], None] | None = None,
) -> tuple[list[FrameStream], float]:
    """Search the video for every job, job i's frames to `sinks[i]`: one job alone, several
    in one sweep (`treemem.pipeline.sweep`: one encoder pass per frame for all of them,
    each job's outputs those of running it alone). Returns each job's stream and the wall
    time of the search (of the whole pass for a sweep)."""
    choices = [choose_strategy(job.run.strategy, dict(job.run.overrides)) for job in jobs]
    if len(jobs) == 1:
        stream = FrameStream(opened.backend, choices[0].strategy, prompts)
        return [stream], search_frames(stream, sinks, on_frame=on_frame)
    sweep = SweepStream(opened.backend, [choice.strategy for choice in choices], prompts)
    seconds = search_sweep(sweep, [[sink] for sink in sinks], on_frame=on_frame)
    return list(sweep.streams), seconds


def _pass_record(jobs: Sequence[VideoJob]) -> dict[str, Any]:
    """What a result file says about the pass it came from: the runs that shared it (their
    `seconds` is the whole pass's), or nothing for a run tracked alone."""
    return {"sweep": [job.run.name for job in jobs]} if len(jobs) > 1 else {}


def write_result(
    job: VideoJob,
    stream: FrameStream,
    num_frames: int,
    seconds: float,
    objects: Sequence[ObjectScores],
    **extra: Any,
) -> dict[str, Any]:
    """A finished video's result file (written last and atomically: it marks the video done)."""
    tracked = num_frames - stream.first_frame
    result = {
        "video": job.video,
        "run": job.run.name,
        **extra,
        "strategy": job.run.strategy,
        "overrides": dict(job.run.overrides),
        "backend": job.settings.backend,
        "frames": num_frames,
        "tracked_frames": tracked,
        "objects": len(stream.objects),
        "seconds": seconds,
        "fps": tracked / seconds if seconds > 0 else None,
        "scores": [object_record(o) for o in objects],
    }
    with output_errors(job.result_path):
        write_json(job.result_path, result)
    return result


def open_protocol_job(
    job: VideoJob, dataset: Dataset, models: ModelCache | None = None
) -> OpenedVideo:
    """A benchmark video for the run layer: its JPEG folder for SAM 2 and SAM 3, or for the
    synthetic backend the saved synthetic video `--make-synthetic --protocol` wrote next to it."""
    spec = job.settings.model_spec()
    if job.settings.backend == "synthetic":
        source = dataset.synthetic_dir / job.video
        if not (source / "video.json").is_file():
            raise InputError(
                f"{source} is missing: the synthetic backend runs on datasets written by "
                "`treemem bench --make-synthetic DIR --protocol NAME`; use --backend sam2 or sam3"
            )
        return open_backend(source, "synthetic", spec)
    return open_backend(Path(job.video_dir), job.settings.backend, spec, models=models)


@dataclass(eq=False)
class PerObjectSink:
    """One folder of binary PNGs per object, `folder/<object folder>/<frame>.png`, each
    object's own (overlapping) mask: the SA-V layout, which its evaluator needs back."""

    folder: Path
    names: Sequence[str]
    object_folders: dict[int, str]
    written: int = 0

    def write(self, result: FrameResult) -> None:
        for obj, found in zip(result.objects, result.masks, strict=True):
            path = self.folder / self.object_folders[obj] / f"{self.names[result.frame]}.png"
            with output_errors(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_palette_png(path, found.mask.astype("uint8"))
        self.written += 1


def _blank_frames(
    sink: FrameSink, objects: Sequence[int], first: int, frame_size: tuple[int, int]
) -> None:
    """Frames before the first prompt, written empty (a submission holds every frame)."""
    empty = ObjectMask.empty(frame_size)
    for frame in range(first):
        sink.write(FrameResult(frame, tuple(objects), tuple(empty for _ in objects)))


def run_protocol_video(
    jobs: Sequence[VideoJob],
    on_frame: Callable[[int], None] | None = None,
    models: ModelCache | None = None,
) -> list[dict[str, Any]]:
    """One benchmark video under its protocol, for every job (runs of this video): prompts
    by the benchmark's rule, every frame tracked and written, the benchmark's frames scored
    with its metric."""
    job = jobs[0]
    protocol = get_protocol(str(job.protocol))
    dataset = protocol.read(Path(str(job.dataset)), job.split)
    video = dataset.video(job.video)
    with open_protocol_job(job, dataset, models) as opened:
        names = list(video.frame_names)
        if len(names) != opened.num_frames:
            raise InputError(
                f"{video.frames_dir}: {len(names)} frame files but the video has "
                f"{opened.num_frames} frames"
            )
        prompts = protocol.prompts(video)
        sinks: list[PerObjectSink | PaletteFolderSink] = []
        objects = sorted({p.obj for p in prompts})
        first = min(p.frame for p in prompts)
        for one in jobs:
            sink: PerObjectSink | PaletteFolderSink
            if video.folder_names:
                sink = PerObjectSink(one.pred_dir, names, dict(video.folder_names))
            else:
                sink = PaletteFolderSink(one.pred_dir, names)
            _blank_frames(sink, objects, first, opened.frame_size)
            sinks.append(sink)
        streams, seconds = track_runs(opened, prompts, jobs, sinks, on_frame)
    results = []
    for one, stream, sink in zip(jobs, streams, sinks, strict=True):
        if sink.written != opened.num_frames:
            raise TreememError(
                f"{one.video}: the engine left frame {names[sink.written]} undecided"
            )
        try:
            scored = protocol.score(video, one.pred_dir).objects
        except UnannotatedError:
            scored = ()  # a test split: the server scores the submission
        results.append(
            write_result(
                one, stream, opened.num_frames, seconds, scored,
                protocol=protocol.name, split=dataset.split, group=video.group,
                scored=bool(scored), **_pass_record(jobs),
            )
        )
    return results


def _run_video_quietly(jobs: Sequence[VideoJob]) -> list[dict[str, Any]]:
    """What a Ray task runs (no terminal to draw on)."""
    return run_video(jobs)


# --- many videos ------------------------------------------------------------------------------


def finished(job: VideoJob) -> dict[str, Any] | None:
    """The stored result of a finished video, or None (missing or unreadable: run it again)."""
    try:
        result: dict[str, Any] = json.loads(job.result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if result.get("run") == job.run.name else None


def run_in_process(
    groups: Sequence[Sequence[VideoJob]],
    done: Callable[[VideoJob, dict[str, Any] | str], None],
) -> None:
    """Videos one after another (each group: runs of one video, tracked in one pass), with a
    progress bar per video that counts the videos too."""
    models = ModelCache()
    for number, jobs in enumerate(groups, 1):
        label = f"[{number}/{len(groups)}] {_label(jobs)}"
        try:
            with progress_bar(_num_frames(jobs[0]), label) as bar:

                def on_frame(done: int, bar: Any = bar) -> None:
                    bar.update(done - bar.n)

                results = run_video(jobs, on_frame, models)
        except TreememError as error:
            for job in jobs:
                done(job, str(error))
            continue
        for job, result in zip(jobs, results, strict=True):
            done(job, result)


def _label(jobs: Sequence[VideoJob]) -> str:
    runs = jobs[0].run.name if len(jobs) == 1 else f"{len(jobs)} runs in one pass"
    return f"{runs} / {jobs[0].video}"


def group_jobs(jobs: Sequence[VideoJob], *, separate: bool = False) -> list[list[VideoJob]]:
    """The jobs as units of work: with `separate` one per job, else one per video holding
    every run of that video (a sweep: one encoder pass per frame for all of them), in the
    order the videos first appear."""
    if separate:
        return [[job] for job in jobs]
    by_video: dict[str, list[VideoJob]] = {}
    for job in jobs:
        by_video.setdefault(job.video_dir, []).append(job)
    return list(by_video.values())


def _num_frames(job: VideoJob) -> int:
    frames = Path(job.video_dir) if job.protocol else Path(job.video_dir) / "frames"
    return sum(1 for p in frames.iterdir() if not p.name.startswith(".")) if frames.is_dir() else 0


def run_on_ray(
    groups: Sequence[Sequence[VideoJob]],
    done: Callable[[VideoJob, dict[str, Any] | str], None],
    *,
    address: str | None,
    workers: int | None,
    gpus_per_video: float,
) -> None:
    """One Ray task per group (one video, its runs in one pass): a local Ray (`address`
    None) or an existing cluster.

    On a cluster every node needs treemem installed and the dataset and --out folders at
    the same paths (a shared filesystem); each task writes its own video's files.
    """
    try:
        ray = importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'treemem[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR")
        else:
            ray.init(address=address, logging_level="ERROR")
    try:
        task = ray.remote(_run_video_quietly).options(
            num_cpus=1, num_gpus=gpus_per_video, max_retries=1
        )
        pending = {task.remote(list(jobs)): jobs for jobs in groups}
        with progress_bar(len(groups), "videos on Ray", unit="videos") as bar:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                jobs = pending.pop(ready[0])
                try:
                    results = ray.get(ready[0])
                except Exception as error:  # a task's error, re-raised by Ray: report it
                    for job in jobs:
                        done(job, _last_line(error))
                else:
                    for job, result in zip(jobs, results, strict=True):
                        done(job, result)
                bar.update(1)
    finally:
        if started_here:
            ray.shutdown()


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# --- the table ------------------------------------------------------------------------------------


LEGACY_COLUMNS = ("J&F", "J", "F")
"""The table of treemem's own layout."""


@dataclass(frozen=True)
class RunResult:
    """One run's scores over the videos it finished, and its speed.

    `scores` is the benchmark's table row (its protocol's `columns`; for treemem's own
    layout J&F, J, F), fractions; `groups` each video's category group (LVOS)."""

    spec: RunSpec
    videos: tuple[VideoScores, ...]
    summary: Summary
    frames: int
    seconds: float
    scores: dict[str, float]
    groups: dict[str, str]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan


def collect(
    spec: RunSpec, results: Iterable[dict[str, Any]], protocol: Protocol | None = None
) -> RunResult:
    stored = sorted(results, key=lambda r: str(r["video"]))
    videos = tuple(
        VideoScores(r["video"], tuple(object_from_record(r["video"], o) for o in r["scores"]))
        for r in stored
    )
    groups = {str(r["video"]): str(r.get("group", "")) for r in stored}
    summary = summarize(o for v in videos for o in v.objects)
    if protocol is None:
        scores = {"J&F": summary.jf, "J": summary.j.mean, "F": summary.f.mean}
    elif videos:
        scores = protocol.summary(videos, groups)
    else:
        scores = dict.fromkeys(protocol.columns, math.nan)
    return RunResult(
        spec,
        videos,
        summary,
        sum(int(r["tracked_frames"]) for r in stored),
        sum(float(r["seconds"]) for r in stored),
        scores,
        groups,
    )


def baseline_fps(runs: Sequence[RunResult]) -> float:
    for run in runs:
        if run.spec.strategy == BASELINE and not run.spec.overrides:
            return run.fps
    for run in runs:
        if run.spec.strategy == BASELINE:
            return run.fps
    return math.nan


def table_rows(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    base = baseline_fps(runs)
    rows = []
    for run in runs:
        rows.append(
            {
                "run": run.spec.name,
                "strategy": run.spec.strategy,
                **{key: value for key, value in run.spec.overrides},
                "videos": len(run.videos),
                "objects": run.summary.objects,
                **run.scores,
                "fps": run.fps,
                "speed_vs_greedy": run.fps / base if base > 0 else math.nan,
            }
        )
    return rows


def _cell(value: float, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{scale * value:.{digits}f}"


def format_runs(
    runs: Sequence[RunResult], markdown: bool = False, columns: Sequence[str] = LEGACY_COLUMNS
) -> str:
    """The comparison table: one row per run, the benchmark's columns in %, then speed."""
    header = ["run", "videos", *columns, "fps", "x greedy"]
    body = [
        [
            row["run"],
            str(row["videos"]),
            *(_cell(row.get(column, math.nan)) for column in columns),
            _cell(row["fps"], 1.0, 1),
            _cell(row["speed_vs_greedy"], 1.0, 2),
        ]
        for row in table_rows(runs)
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in [header, *body]
    )


def write_tables(
    out: Path, runs: Sequence[RunResult], columns: Sequence[str] = LEGACY_COLUMNS,
    extra: dict[str, Any] | None = None,
) -> None:
    import csv

    rows = table_rows(runs)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_writer(out / "results.csv") as stream:
        writer = csv.DictWriter(stream, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _plain(row.get(k, "")) for k in keys})
    write_json(
        out / "results.json",
        {**(extra or {}), "runs": [{k: _plain(v) for k, v in row.items()} for row in rows]},
    )
    with atomic_writer(out / "results.md") as stream:
        stream.write(format_runs(runs, markdown=True, columns=columns) + "\n")


def write_per_video(path: Path, run: RunResult) -> None:
    """One row per (video, object) and one per video (object "all", its objects' means):
    J, F, J&F as fractions, the video's group, and MOSE's F_new when present."""
    import csv

    header = ["video", "group", "object", "frames", "J&F", "J", "F", "F_new"]
    rows: list[list[object]] = []
    for video in run.videos:
        group = run.groups.get(video.video, "")
        entries = []
        for o in video.objects:
            f_new = o.extra.get("F_new")
            entries.append([
                o.obj, len(o.frames), o.jf_mean, o.j_stats.mean, o.f_stats.mean,
                math.nan if f_new is None or f_new.size == 0 else float(f_new.mean()),
            ])
        if entries:
            means = [float(sum(e[i] for e in entries) / len(entries)) for i in range(2, 6)]
            frames = len({name for o in video.objects for name in o.frames})
            rows.append([video.video, group, "all", frames, *means])
        rows += [[video.video, group, *entry] for entry in entries]
    with atomic_writer(path) as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows([_plain(cell) if cell is not None else "" for cell in row] for row in rows)


def write_submission(run_dir: Path, videos: Sequence[str]) -> Path:
    """`run_dir/submission.zip`: `<video>/<frame>.png` for every frame of every finished video,
    the layout the DAVIS, LVOS and MOSE servers unpack."""
    import os
    import tempfile
    import zipfile

    path = run_dir / "submission.zip"
    with output_errors(path):
        descriptor, temporary = tempfile.mkstemp(prefix=".submission.", dir=run_dir)
        os.close(descriptor)
        try:
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
                for video in sorted(videos):
                    for png in sorted((run_dir / "pred" / video).glob("*.png")):
                        archive.write(png, f"{video}/{png.name}")
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return path


def _plain(value: object) -> object:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def make_synthetic(
    folder: Path, count: int, seed: int, protocol: str | None = None
) -> list[Path]:
    """Write the seeded synthetic suite as a `treemem bench` dataset: treemem's own layout,
    or with `protocol` that benchmark's (`treemem.synthetic_layouts`)."""
    if protocol is not None:
        write_layout = importlib.import_module("treemem.synthetic_layouts").write_layout
        names: list[str] = write_layout(folder, protocol, count, seed)
        return [folder / "synthetic" / name for name in names]
    make_suite = importlib.import_module("treemem.backends.synthetic_video").make_suite
    if count < 1:
        raise InputError(f"--count must be >= 1, got {count}")
    folder.mkdir(parents=True, exist_ok=True)
    return [
        video.save(folder / f"video_{i:03d}") for i, video in enumerate(make_suite(seed, count))
    ]


def list_videos(dataset: Path) -> list[Path]:
    if not dataset.is_dir():
        raise InputError(f"dataset folder not found: {dataset}")
    videos = sorted(p for p in dataset.iterdir() if (p / "gt").is_dir())
    if not videos:
        layouts = "; ".join(f"{p.name}: {p.layout}" for p in PROTOCOLS.values())
        raise InputError(
            f"{dataset} holds no video folder with a gt/ folder (write the synthetic suite "
            f"with `treemem bench --make-synthetic DIR`) nor a benchmark layout ({layouts})"
        )
    return videos


def _check_run_dir(run_dir: Path, record: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            stored = None
        if stored != record:
            raise InputError(
                f"{run_dir} holds a run with other settings ({path}); use another --out or "
                "delete that folder"
            )
    else:
        write_json(path, record)




def plan_jobs(
    runs: Sequence[RunSpec],
    videos: Sequence[Path],
    out: Path,
    settings: BenchSettings,
    dataset: Dataset | None = None,
) -> list[VideoJob]:
    """One job per (run, video); each run folder's run.json is written or checked."""
    jobs: list[VideoJob] = []
    for spec in runs:
        run_dir = out / "runs" / spec.name
        record = {
            "strategy": spec.strategy,
            "overrides": dict(spec.overrides),
            "backend": settings.backend,
            "checkpoint": settings.checkpoint,
            "image_size": settings.image_size,
            "dtype": settings.dtype,
            "compile": settings.compile,
            "skip_first_last": settings.skip_first_last,
            "seed": settings.seed,
        }
        if settings.config is not None:  # recorded when given: earlier folders stay resumable
            record["config"] = settings.config
        if dataset is not None:
            record.update(protocol=dataset.protocol, split=dataset.split)
            del record["skip_first_last"]  # the protocol says which frames are scored
        with output_errors(run_dir, "create"):
            _check_run_dir(run_dir, record)
        jobs += [
            VideoJob(
                spec,
                str(video.resolve()),
                str(run_dir.resolve()),
                settings,
                protocol=None if dataset is None else dataset.protocol,
                dataset=None if dataset is None else str(dataset.root.resolve()),
                split=None if dataset is None else dataset.split,
            )
            for video in videos
        ]
    return jobs


@dataclass(frozen=True)
class BenchOutcome:
    """Every run's collected results, and the videos that failed (`run / video: reason`)."""

    runs: tuple[RunResult, ...]
    failures: tuple[str, ...]
    protocol: Protocol | None = None
    split: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return LEGACY_COLUMNS if self.protocol is None else self.protocol.columns


def run_benchmark(
    dataset: Path,
    out: Path,
    strategies: Sequence[str],
    sweep: Sequence[str],
    settings: BenchSettings,
    *,
    ray: bool = False,
    ray_address: str | None = None,
    workers: int | None = None,
    separate: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> BenchOutcome:
    """Run every strategy x sweep setting over every video of `dataset` into `out`, skipping
    videos already finished there; write results.csv/json/md. `log` gets one line per event.

    A video's unfinished runs are tracked in one pass (`group_jobs`; a sweep shares the
    image encoder), and its result files record the pass (`sweep`: the runs, whose `seconds`
    is the pass's); `separate` tracks every run on its own, as each one's own speed needs."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    check_model_options(
        settings.backend, ModelSpec(dtype=settings.dtype, compile=settings.compile)
    )
    runs = expand_runs(strategies, sweep)
    protocol = get_protocol(settings.protocol) if settings.protocol else detect(dataset)
    split: Dataset | None = None
    if protocol is None:
        videos = list_videos(dataset)
    else:
        split = protocol.read(dataset, settings.split)
        if not split.videos:
            raise InputError(f"{dataset}: the {split.split} split lists no video")
        videos = [video.frames_dir for video in split.videos]
    jobs = plan_jobs(runs, videos, out, settings, split)
    results: dict[RunSpec, list[dict[str, Any]]] = {spec: [] for spec in runs}
    failures: list[str] = []
    todo = []
    for job in jobs:
        stored = finished(job)
        if stored is None:
            todo.append(job)
        else:
            results[job.run].append(stored)
    if len(todo) < len(jobs):
        log(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} videos already finished")

    def done(job: VideoJob, outcome: dict[str, Any] | str) -> None:
        if isinstance(outcome, str):
            failures.append(f"{job.run.name} / {job.video}: {outcome}")
            log(f"failed: {failures[-1]}")
            return
        results[job.run].append(outcome)
        if not sys.stderr.isatty():
            scores = summarize(object_from_record(job.video, o) for o in outcome["scores"])
            log(
                f"done: {job.run.name} / {job.video}: J&F {_cell(scores.jf)}, "
                f"{_cell(outcome['fps'] or math.nan, 1.0)} fps"
            )

    uses_cpu = settings.backend == "synthetic" or settings.device == "cpu"
    if todo:
        groups = group_jobs(todo, separate=separate)
        if ray or ray_address:
            run_on_ray(
                groups,
                done,
                address=ray_address,
                workers=workers,
                gpus_per_video=0.0 if uses_cpu else 1.0,
            )
        else:
            run_in_process(groups, done)
    collected = tuple(collect(spec, results[spec], protocol) for spec in runs)
    outcome = BenchOutcome(
        collected, tuple(failures), protocol, None if split is None else split.split
    )
    extra = {} if split is None else {"protocol": split.protocol, "split": split.split}
    write_tables(out, collected, outcome.columns, extra)
    for run in collected:
        run_dir = out / "runs" / run.spec.name
        write_per_video(run_dir / "per-video.csv", run)
        if protocol is not None and protocol.submission and run.videos:
            write_submission(run_dir, [v.video for v in run.videos])
    return outcome
