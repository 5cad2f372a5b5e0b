"""Whole-process time of `treemem run --strategy greedy` against sam2's predictor, as users run it.

Each side is a fresh Python process doing what its user does, timed from outside (wall and CPU
time of the child, like `/usr/bin/time`): sam2's side is `tools/vos_inference.py`'s flow for one
video (build the predictor from a checkpoint, `init_state` on a JPEG folder, `add_new_mask` on
frame 0, `propagate_in_video`, one palette PNG per frame); treemem's side is
`treemem run --strategy greedy FOLDER --mask M.png --checkpoint CKPT` with the same config and
image size (with `--tree P ...` also `treemem run --strategy sam2long --set P=P`). `--dtype
bf16` runs sam2's side under `torch.autocast(device, torch.bfloat16)` as its tools do and
treemem's with `--dtype bf16`. Same frames (a real mp4 from ../shared/data/videos written as
JPEGs), same mask, same random-weight checkpoint (seeded; weights do not change the time). The
sides run alternately, `--runs` times each; the medians and their ratio are printed, and
whether greedy's masks equal sam2's.

    python bench/whole_process.py --image-size 512 --frames 48 --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VIDEOS = HERE.parent.parent / "shared" / "data" / "videos"


def as_sam2(
    folder: str, mask_png: str, checkpoint: str, config: str, size: int, dtype: str, out: str
) -> None:
    """sam2's side, in its own process: vos_inference.py's flow for one single-object video."""
    from contextlib import nullcontext

    import numpy as np
    import torch
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        config, checkpoint, device="cpu", hydra_overrides_extra=[f"++model.image_size={size}"]
    )
    mask = np.array(Image.open(mask_png)) > 0
    autocast = (
        nullcontext()
        if dtype == "fp32"
        else torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    )
    with torch.inference_mode(), autocast:
        state = predictor.init_state(video_path=folder)
        height, width = state["video_height"], state["video_width"]
        predictor.add_new_mask(state, frame_idx=0, obj_id=1, mask=mask)
        names = sorted(p.stem for p in Path(folder).glob("*.jpg"))
        os.makedirs(out, exist_ok=True)
        for frame, _ids, logits in predictor.propagate_in_video(state):
            ids = (logits[0, 0] > 0.0).cpu().numpy().astype(np.uint8).reshape(height, width)
            picture = Image.fromarray(ids)
            picture.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
            picture.save(Path(out) / f"{names[frame]}.png")


def prepare(
    root: Path, video: Path, frames: int, size: int, config: str
) -> tuple[Path, Path, Path]:
    """JPEG frames, a one-object mask on frame 0 and a random-weight checkpoint file."""
    import av
    import numpy as np
    import torch
    from PIL import Image

    from treemem.backends.sam2 import build_random_model

    folder = root / "frames"
    folder.mkdir()
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == frames:
                break
            frame.to_image().save(folder / f"{index:05d}.jpg", quality=95)
    first = np.array(Image.open(folder / "00000.jpg"))
    mask = np.zeros(first.shape[:2], np.uint8)
    height, width = mask.shape
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 1
    mask_png = root / "mask.png"
    Image.fromarray(mask * 255).save(mask_png)
    checkpoint = root / "random.pt"
    model = build_random_model(config, seed=0, image_size=size)
    torch.save({"model": model.state_dict()}, checkpoint)
    return folder, mask_png, checkpoint


def timed(command: list[str], threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def same_masks(first: Path, second: Path) -> tuple[int, int]:
    """(frames whose object pixels agree, frames compared)."""
    import numpy as np
    from PIL import Image

    names = sorted(p.name for p in first.glob("*.png"))
    agree = sum(
        np.array_equal(np.array(Image.open(first / n)) > 0, np.array(Image.open(second / n)) > 0)
        for n in names
    )
    return agree, len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--video", type=Path, default=VIDEOS / "01_dog.mp4")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--tree", type=int, nargs="*", default=[], metavar="P",
                        help="also time sam2long with these pathway counts")
    parser.add_argument("--treemem", action="append", default=[], metavar="NAME=COMMAND",
                        help="time this treemem executable too, under NAME (e.g. another "
                        "checkout's install, to compare before/after a change)")
    parser.add_argument("--as-sam2", nargs=7, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_sam2:
        folder, mask_png, checkpoint, config, size, dtype, out = args.as_sam2
        as_sam2(folder, mask_png, checkpoint, config, int(size), dtype, out)
        return
    treemem_command = shutil.which("treemem") or str(Path(sys.executable).parent / "treemem")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder, mask_png, checkpoint = prepare(
            root, args.video, args.frames, args.image_size, args.config
        )
        def treemem_run(
            strategy: str, *settings: str, command: str = treemem_command
        ) -> Callable[[Path], list[str]]:
            return lambda out: [
                command, "run", str(folder), "--mask", str(mask_png), "--strategy",
                strategy, *settings, "--checkpoint", str(checkpoint), "--config", args.config,
                "--image-size", str(args.image_size), "--device", "cpu", "--dtype", args.dtype,
                "--no-progress", "--out", str(out), "--overwrite",
            ]

        sides: dict[str, Callable[[Path], list[str]]] = {
            "sam2 predictor": lambda out: [
                sys.executable, __file__, "--as-sam2", str(folder), str(mask_png),
                str(checkpoint), args.config, str(args.image_size), args.dtype, str(out),
            ],
            "treemem greedy": treemem_run("greedy"),
        }
        for other in args.treemem:
            name, _, command = other.partition("=")
            sides[f"{name} greedy"] = treemem_run("greedy", command=command)
        for pathways in args.tree:
            sides[f"sam2long P={pathways}"] = treemem_run("sam2long", "--set", f"P={pathways}")
        walls: dict[str, list[float]] = {name: [] for name in sides}
        cpus: dict[str, list[float]] = {name: [] for name in sides}
        for run in range(args.runs):
            for name, command in sides.items():
                out = root / name.replace(" ", "_").replace("=", "")
                wall, cpu = timed(command(out), args.threads)
                walls[name].append(wall)
                cpus[name].append(cpu)
                print(f"run {run + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
        agree, total = same_masks(root / "sam2_predictor", root / "treemem_greedy" / "masks")
    print(f"\n{args.config} at {args.image_size} px, {args.frames} frames, {args.dtype}, "
          f"{args.threads} threads, median of {args.runs}:")
    base_wall = statistics.median(walls["sam2 predictor"])
    base_cpu = statistics.median(cpus["sam2 predictor"])
    for name in sides:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"  {name:16s} {wall:7.2f} s wall ({wall / base_wall:.3f}x)  "
              f"{cpu:7.2f} s CPU ({cpu / base_cpu:.3f}x)")
    print(f"  greedy's masks identical to sam2's on {agree} of {total} frames")


if __name__ == "__main__":
    main()
