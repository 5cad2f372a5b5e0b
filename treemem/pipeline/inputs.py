"""Inputs: a video and a model spec become a `Backend`; prompts are checked against it.

This module is the only place a backend is opened, so `track()`, `Predictor`, `treemem run`,
`treemem demo` and `treemem bench` accept the same inputs and refuse bad ones with the same
one-line errors. Heavy modules (torch, sam2, sam3, the synthetic tracker) load only when asked
for.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from treemem.backend import Backend
from treemem.io.masks import mask_prompts, read_mask, validate_mask
from treemem.io.video import open_video
from treemem.types import Closing, ConfigError, InputError, Prompt, ProposalOptions, UInt8Array

BackendName = Literal["sam2", "sam3", "synthetic"]
BACKENDS: tuple[BackendName, ...] = ("sam2", "sam3", "synthetic")
MODEL_BACKENDS = ("sam2", "sam3")
"""The backends that load a checkpoint (`ModelSpec`) and read video frames."""
BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    "sam2": frozenset({"boxes", "presence_threshold", "mask_stats", "promotion"}),
    "sam3": frozenset({"boxes", "presence_threshold"}),
    "synthetic": frozenset({"boxes", "presence_threshold", "mask_stats", "promotion"}),
}
"""The `ProposalOptions` fields each backend implements, so `treemem strategies` can say which
sets run where without importing a model (the conformance suite checks each backend against
its entry)."""
DTYPES = ("fp32", "bf16", "fp16")
"""The precisions the sam2 and sam3 backends run at: fp32 (no autocast), or torch autocast to
bfloat16 / float16 around the model's work, as sam2's own tools run it."""

VideoInput = str | os.PathLike[str] | npt.NDArray[np.uint8] | Any
"""A video: an mp4 path, a folder of JPEG/PNG frames, a saved synthetic video folder, a
`treemem.backends.synthetic_video.SyntheticVideo`, or (sam2 backend) a (T, H, W, 3) uint8
RGB array."""


@dataclass(frozen=True)
class ModelSpec:
    """Which SAM 2 or SAM 3 model to run and where (what `--checkpoint`, `--config`, ... give);
    its fields are the `ModelOptions` keywords of the Python API, which say what each means."""

    checkpoint: str | os.PathLike[str] | None = None
    config: str | None = None
    device: str | None = None
    offload: bool = False
    image_size: int | None = None
    model: Any = field(default=None, compare=False, repr=False)
    seed: int = 0
    dtype: str = "fp32"
    compile: bool = False

    def check(self, backend: str = "sam2") -> None:
        """What can be checked before the video and the model are opened."""
        check_model_options(backend, self)
        if backend == "sam3" and self.image_size is not None:
            raise ConfigError(
                "--image-size applies to sam2; a SAM 3 model's input size comes from its config"
            )
        if self.model is not None:
            return
        if self.checkpoint is None:
            example = "sam3.pt from the SAM 3 release" if backend == "sam3" else (
                "sam2.1_hiera_tiny.pt from the SAM 2 release")
            raise InputError(
                f"the {backend} backend needs a checkpoint (--checkpoint PATH or "
                f"checkpoint=PATH, e.g. {example}), or use the synthetic backend"
            )
        if not Path(self.checkpoint).is_file():
            raise InputError(
                f"checkpoint not found: {self.checkpoint}; give the path of a .pt file"
            )
        if self.image_size is not None and self.image_size <= 0:
            raise InputError(f"image size must be > 0, got {self.image_size}")

    def info(self, name: str) -> dict[str, Any]:
        """What run.json records about the backend."""
        if name == "synthetic":
            return {"name": "synthetic", "seed": self.seed}
        return {
            "name": name,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "config": self.config,
            "device": self.device,
            "offload": self.offload,
            "image_size": self.image_size,
            "dtype": self.dtype,
            "compile": self.compile,
        }


class ModelOptions(TypedDict, total=False):
    """The model keywords of `treemem.track`, `treemem.sweep`, `treemem.stream` and
    `treemem.Predictor` (the fields of `ModelSpec`, which gives their defaults; `treemem run`'s
    model flags are the same options)."""

    checkpoint: str | os.PathLike[str] | None
    """The sam2 or sam3 backend's checkpoint (.pt; SAM 3: `sam3.pt`), as `treemem run
    --checkpoint`."""
    config: str | None
    """The model config (default: inferred from the checkpoint); SAM 3: "sam3" or a JSON file
    of `treemem.backends.sam3.Sam3Config` fields."""
    device: str | None
    """"cpu", "cuda", "cuda:1", ... (default: cuda when present)."""
    offload: bool
    """Keep frames and memories in host memory (long videos)."""
    image_size: int | None
    """The sam2 model's input resolution (default: the config's; a SAM 3 config sets its
    own)."""
    model: Any
    """A model already built (`treemem.backends.sam2.load_model` or
    `treemem.backends.sam3.load_model`), used instead of loading `checkpoint`."""
    seed: int
    """The synthetic backend's noise seed."""
    dtype: str
    """The sam2 / sam3 backend's precision, one of `DTYPES`: "fp32" (default, no autocast),
    "bf16" or "fp16" (torch autocast around the model, as sam2's tools run it; the masks are
    close to fp32's, not equal)."""
    compile: bool
    """Run the sam2 model's components through `torch.compile`, as sam2's VOS-optimised
    predictor does (slow first frames; masks close to, not equal to, the eager model's)."""


def model_spec(options: ModelOptions) -> ModelSpec:
    """The `ModelSpec` of the API's model keywords; a keyword that is not one (a caller
    without a type checker) is a one-line error naming the options, not a TypeError."""
    known = [f.name for f in fields(ModelSpec)]
    for name in options:
        if name not in known:
            hint = get_close_matches(name, known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown model option {name!r}{suggestion} (the options: {', '.join(known)})"
            )
    return ModelSpec(**options)


class ModelCache:
    """Loaded models by backend and spec, so a checkpoint is read once per process, not per
    video."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str | None, str | None, int | None, bool], Any] = {}

    def get(self, spec: ModelSpec, backend: str = "sam2") -> Any:
        if spec.model is not None:
            return spec.model
        spec.check(backend)
        key = (backend, str(spec.checkpoint), spec.config, spec.device, spec.image_size,
               spec.compile)
        if key not in self._models:
            if backend == "sam3":
                self._models[key] = import_backend("sam3").load_model(
                    Path(str(spec.checkpoint)), config=spec.config, device=spec.device
                )
            else:
                self._models[key] = import_backend("sam2").load_model(
                    Path(str(spec.checkpoint)),
                    config=spec.config,
                    device=spec.device,
                    image_size=spec.image_size,
                )
        return self._models[key]


@dataclass(eq=False)
class OpenedVideo(Closing):
    """A video opened for one search: its size, what to call its frames, what run.json says
    about it, and the backend over it.

    The backend (and with it the model) is made on first use of `backend`, so prompts can be
    checked against the video before a large checkpoint is read. A context manager: leaving
    it closes the video file.
    """

    num_frames: int
    frame_size: tuple[int, int]
    frame_names: list[str]
    video_info: dict[str, Any]
    backend_info: dict[str, Any]
    make_backend: Callable[[], Backend] = field(repr=False)
    _backend: Backend | None = field(default=None, repr=False)
    _closers: ExitStack = field(default_factory=ExitStack, repr=False)

    @classmethod
    def of(cls, backend: Backend, video_info: dict[str, Any], backend_info: dict[str, Any]
           ) -> OpenedVideo:
        """An already made backend (it knows its video's length and size)."""
        return cls(backend.num_frames, backend.frame_size, _numbered(backend.num_frames),
                   video_info, backend_info, lambda: backend, backend)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self.make_backend()
        return self._backend

    def close(self) -> None:
        self._closers.close()


def open_backend(
    video: VideoInput | None,
    backend: BackendName | Backend | None = None,
    model: ModelSpec | None = None,
    *,
    models: ModelCache | None = None,
) -> OpenedVideo:
    """The one backend opener.

    `backend` None picks "synthetic" for a synthetic video and "sam2" otherwise ("sam3" is
    opened by name); a `Backend` instance reads its own frames (`video` must then be None).
    """
    spec = model if model is not None else ModelSpec()
    check_model_options(backend, spec)
    if backend is not None and not isinstance(backend, str):
        if video is not None:
            raise InputError(
                "a Backend instance reads its own frames; pass video=None with it"
            )
        return OpenedVideo.of(backend, {}, {"name": type(backend).__name__})
    if backend is None:
        backend = "synthetic" if is_synthetic(video) else "sam2"
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown backend {backend!r}; use 'sam2', 'sam3', 'synthetic' or a Backend"
        )
    if video is None:
        raise InputError(f"backend {backend!r} needs a video")
    if backend == "synthetic":
        return _open_synthetic(video, spec)
    return _open_model(video, backend, spec, models if models is not None else ModelCache())


def runs_on(options: ProposalOptions) -> tuple[str, ...]:
    """The backends that implement every option in `options` (a strategy set's `options()`)."""
    needed = set(options.requested())
    return tuple(name for name in BACKENDS if needed <= BACKEND_OPTIONS[name])


def check_model_options(backend: str | Backend | None, spec: ModelSpec) -> None:
    """The precision and compilation `spec` asks for, checked against the backend: only sam2
    and sam3 opened by name run bf16 / fp16, only sam2 compiles (a synthetic video opened with
    `backend` None is refused when it is opened)."""
    _check_dtype(backend, spec.dtype)
    if not spec.compile:
        return
    if backend == "synthetic":
        raise ConfigError(_NO_COMPILE)
    if backend == "sam3":
        raise ConfigError("compile applies to the sam2 backend; the sam3 backend runs eager")
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(
            "compile applies to the sam2 backend opened by name; a Backend instance runs as it "
            "was made (Sam2Backend(..., compile=True))"
        )


def _check_dtype(backend: str | Backend | None, dtype: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")
    if dtype == "fp32":
        return
    if backend == "synthetic":
        raise ConfigError(_NO_DTYPE.format(dtype=dtype))
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(
            f"dtype {dtype!r} applies to the sam2 and sam3 backends opened by name; a Backend "
            "instance runs at the precision it was made with"
        )


_NO_DTYPE = (
    "the synthetic backend has no dtype (got {dtype!r}); bf16 and fp16 apply to sam2 and sam3"
)
_NO_COMPILE = "the synthetic backend has no model to compile; --compile applies to sam2"


def _numbered(count: int) -> list[str]:
    return [f"{index:05d}" for index in range(count)]


def _synthetic_video_class() -> type[Any]:
    cls: type[Any] = importlib.import_module("treemem.backends.synthetic_video").SyntheticVideo
    return cls


def is_synthetic(video: object) -> bool:
    """A `SyntheticVideo`, or a folder `SyntheticVideo.save` wrote."""
    if isinstance(video, (str, os.PathLike)):
        return (Path(video) / "video.json").is_file()
    return video is not None and isinstance(video, _synthetic_video_class())


def _open_synthetic(video: VideoInput, spec: ModelSpec) -> OpenedVideo:
    if spec.dtype != "fp32":
        raise ConfigError(_NO_DTYPE.format(dtype=spec.dtype))
    if spec.compile:
        raise ConfigError(_NO_COMPILE)
    synthetic = importlib.import_module("treemem.backends.synthetic")
    path: str | None = None
    if isinstance(video, (str, os.PathLike)):
        folder = Path(video)
        if not (folder / "video.json").is_file():
            raise InputError(
                f"{folder} is not a saved synthetic video (no video.json); the synthetic "
                "backend reads the folders `treemem demo` and `treemem bench --make-synthetic` "
                "write"
            )
        video, path = _synthetic_video_class().load(folder), str(folder)
    if not isinstance(video, _synthetic_video_class()):
        raise InputError(
            "the synthetic backend tracks a SyntheticVideo or a folder SyntheticVideo.save wrote, "
            f"got {type(video).__name__}"
        )
    backend: Backend = synthetic.SyntheticBackend(video, seed=spec.seed)
    frames, height, width = video.frames.shape[:3]
    info = {"path": path, "frames": int(frames), "size": [int(height), int(width)], "fps": None}
    return OpenedVideo.of(backend, info, spec.info("synthetic"))


@dataclass(frozen=True)
class _FrameArray:
    """Frames held in memory, (T, H, W, 3) uint8, read like a video file."""

    frames: UInt8Array

    def read(self, index: int) -> UInt8Array:
        return np.array(self.frames[index])


def _open_model(
    video: VideoInput, name: str, spec: ModelSpec, models: ModelCache
) -> OpenedVideo:
    """A SAM 2 or SAM 3 backend over a video file, a frame folder or an array."""
    module = import_backend(name)
    spec.check(name)
    closers = ExitStack()
    read: Callable[[int], UInt8Array]
    if isinstance(video, (str, os.PathLike)):
        source = closers.enter_context(open_video(Path(video)))
        read, num_frames, frame_size = source.read, source.num_frames, source.frame_size
        names = getattr(source, "frame_names", None) or _numbered(num_frames)
        info = {"path": str(video), "frames": num_frames, "size": list(frame_size),
                "fps": source.fps}
    else:
        frames = getattr(video, "frames", video)
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3:
            raise InputError(
                f"the {name} backend reads an mp4, a frame folder, a SyntheticVideo or a "
                f"(T, H, W, 3) uint8 array, got {type(video).__name__}"
            )
        read = _FrameArray(frames.astype(np.uint8, copy=False)).read
        num_frames = int(frames.shape[0])
        frame_size = (int(frames.shape[1]), int(frames.shape[2]))
        names = _numbered(num_frames)
        info = {"path": None, "frames": num_frames, "size": list(frame_size), "fps": None}

    def make_backend() -> Backend:
        return _model_backend(module, name, models, spec, read, num_frames, frame_size)

    return OpenedVideo(num_frames, frame_size, names, info, spec.info(name), make_backend,
                       _closers=closers)


def live_backend(
    backend: BackendName | Backend | None,
    model: ModelSpec | None = None,
    *,
    models: ModelCache | None = None,
) -> Callable[[tuple[int, int], Callable[[int], UInt8Array]], Backend]:
    """The backend opener of a live source: (frame size, frame reader) -> a backend, made
    when the first frame arrives (a stream's size is known only then).

    sam2 (the default) reads the pushed frames, knows no length and never reads ahead; a
    `Backend` instance (e.g. a `SyntheticBackend` over the video being pushed) reads its own
    frames, the pushed ones only fix the frame indices. The synthetic backend by name has no
    video to simulate a tracker over: give it as an instance."""
    spec = model if model is not None else ModelSpec()
    check_model_options(backend, spec)
    if backend is not None and not isinstance(backend, str):
        instance = backend
        return lambda size, read: instance
    if backend == "synthetic":
        raise InputError(
            "the synthetic backend simulates a tracker over a SyntheticVideo's scene; for a "
            "stream pass backend=SyntheticBackend(video) and push that video's frames"
        )
    if backend == "sam3":
        raise ConfigError("live sources run on the sam2 backend; sam3 tracks videos and frame "
                          "folders")
    if backend not in (None, "sam2"):
        raise ConfigError(f"unknown backend {backend!r}; use 'sam2', 'synthetic' or a Backend")
    spec.check()
    module = import_backend("sam2")
    cache = models if models is not None else ModelCache()

    def make(size: tuple[int, int], read: Callable[[int], UInt8Array]) -> Backend:
        return _model_backend(module, "sam2", cache, spec, read, None, size)

    return make


def _model_backend(
    module: Any,
    name: str,
    models: ModelCache,
    spec: ModelSpec,
    read: Callable[[int], UInt8Array],
    num_frames: int | None,
    frame_size: tuple[int, int],
) -> Backend:
    """The one place a `Sam2Backend` (a video, or a live source) or a `Sam3Backend` (a
    video) is made from a spec."""
    backend: Backend
    if name == "sam3":
        backend = module.Sam3Backend(
            models.get(spec, name), read, num_frames, frame_size, offload=spec.offload,
            autocast=module.autocast_dtype(spec.dtype),
        )
        return backend
    backend = module.Sam2Backend(
        models.get(spec), read, num_frames, frame_size, offload=spec.offload,
        autocast=module.autocast_dtype(spec.dtype), compile=spec.compile,
    )
    return backend


def import_backend(name: str) -> Any:
    """`treemem.backends.NAME` (sam2, sam3), or an `InputError` naming the missing extra.

    sam3 imports torchvision (through timm): a torchvision built for another torch fails with
    a RuntimeError about its operators, said here as one line too."""
    try:
        return importlib.import_module(f"treemem.backends.{name}")
    except ImportError as error:
        if (error.name or "").startswith("treemem"):
            raise
        raise InputError(
            f"the {name} backend needs `pip install 'treemem[{name}]'` (missing: {error.name})"
        ) from None
    except RuntimeError as error:
        if "torchvision" not in str(error):
            raise
        raise InputError(
            f"the {name} backend needs a torchvision built for this torch ({error}); install "
            f"the pair together: pip install 'treemem[{name}]'"
        ) from None


# --- prompts --------------------------------------------------------------------------------


PromptInput = Prompt | Sequence[Prompt] | str | os.PathLike[str] | npt.NDArray[np.integer[Any]]
"""Prompts: `Prompt` records, or a mask of object ids on `prompt_frame` as an (H, W) integer
array or a PNG path (palette PNG, or grayscale 0/1 or 0/255 for one object)."""


def as_prompts(
    prompts: PromptInput,
    frame_size: tuple[int, int],
    num_frames: int | None,
    frame: int = 0,
    *,
    max_objects: int | None = None,
) -> list[Prompt]:
    """Normalise prompts to `Prompt` records, each checked against the video (`num_frames`
    None: a live source of unknown length)."""
    if isinstance(prompts, Prompt):
        found = [prompts]
    elif isinstance(prompts, (str, os.PathLike, np.ndarray)):
        check_frame(frame, num_frames, "the prompt frame")
        if isinstance(prompts, np.ndarray):
            ids = _id_array(prompts)
            name = "the prompt mask"
        else:
            ids, name = read_mask(Path(prompts)), f"mask {prompts}"
        validate_mask(ids, frame_size, max_objects=max_objects, name=name)
        return mask_prompts(ids, frame)
    else:
        found = list(prompts)
        if not all(isinstance(p, Prompt) for p in found):
            raise InputError("prompts must be Prompt records, a mask array or a mask PNG path")
    for prompt in found:
        check_prompt(prompt, frame_size, num_frames)
    return found


def _id_array(mask: npt.NDArray[Any]) -> UInt8Array:
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        raise InputError(f"a prompt mask needs integer object ids, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise InputError("a prompt mask's object ids must be in 0..255")
    return mask.astype(np.uint8)


def check_frame(frame: int, num_frames: int | None, what: str = "frame") -> None:
    """`num_frames` None: a live source, whose frames are any index >= 0."""
    if num_frames is None:
        if frame < 0:
            raise InputError(f"{what} {frame}, but frames count from 0")
        return
    if not 0 <= frame < num_frames:
        raise InputError(f"{what} {frame} is outside the video (frames 0..{num_frames - 1})")


def check_prompt(prompt: Prompt, frame_size: tuple[int, int], num_frames: int | None) -> None:
    """One prompt against the video (`num_frames` None: a live source of unknown length):
    its frame, object id, mask size, box and points."""
    check_frame(prompt.frame, num_frames, f"the prompt for object {prompt.obj} is on frame")
    if not 0 < prompt.obj <= 255:
        raise InputError(f"object ids must be in 1..255 (palette PNG ids), got {prompt.obj}")
    if prompt.mask is not None and prompt.mask.shape != frame_size:
        raise InputError(
            f"the mask for object {prompt.obj} is {prompt.mask.shape}, the video is "
            f"{frame_size} (height, width)"
        )
    if prompt.box is not None:
        check_box(prompt.box, frame_size)
    if prompt.points:
        check_points(prompt.points, prompt.labels, frame_size)
    if prompt.mask is None and prompt.box is None and not prompt.points:
        raise InputError(f"the prompt for object {prompt.obj} has no mask, box or points")


def check_box(
    box: Sequence[float], frame_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A box (x0, y0, x1, y1) in pixels inside the frame, with x0 < x1 and y0 < y1."""
    height, width = frame_size
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(
            f"box {[x0, y0, x1, y1]} is not a box inside the {width}x{height} frame; give "
            f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}"
        )
    return (x0, y0, x1, y1)


def check_points(
    points: Sequence[Sequence[float]], labels: Sequence[int], frame_size: tuple[int, int]
) -> None:
    """Points (x, y) in pixels inside the frame, each with a label 1 (object) or 0."""
    height, width = frame_size
    if len(labels) != len(points):
        raise InputError(f"{len(points)} points but {len(labels)} labels")
    if any(label not in (0, 1) for label in labels):
        raise InputError("point labels must be 1 (object) or 0 (background)")
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"point ({x:g}, {y:g}) is outside the {width}x{height} frame; give 0 <= x < "
                f"{width} and 0 <= y < {height}"
            )
