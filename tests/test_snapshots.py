"""Resume without replaying (issue 14, item 5): `treemem run` killed with SIGKILL at frame 900 of
1,000 resumes from its last snapshot, recomputing at most `--snapshot-every` frames, to the
uninterrupted run's files byte for byte; for greedy, sam2long and samurai, on the synthetic
backend and on a random-weight SAM 2 tiny model (10 frames at 64 px: SAM 2 on this CPU is too
slow for 1,000: `bench/snapshots.py --kill-at` runs that size). A two-way run (`--direction
both`) resumes from a snapshot of either of its searches. A kill inside the snapshot write
leaves the previous snapshot in use. The kills are deterministic: tests/kill_driver.py makes the
process SIGKILL itself when the engine asks for a given frame, or inside a given snapshot write."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import treemem.pipeline.inputs as inputs
from treemem.backends.synthetic_video import make_video
from treemem.cli import main
from treemem.pipeline.sinks import run_files
from treemem.pipeline.snapshots import read_snapshot
from treemem.resume import PARTIAL, SNAPSHOT

pytest.importorskip("PIL.Image")

DRIVER = Path(__file__).with_name("kill_driver.py")
FRAMES, KILL, EVERY = 1000, 900, 64
STRATEGIES = ("greedy", "sam2long", "samurai")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,000-frame two-object synthetic video (two objects: frames wait for the slower one,
    so snapshots hold masks of frames decided for one object only)."""
    folder = tmp_path_factory.mktemp("synthetic") / "video"
    make_video(11, num_frames=FRAMES, height=48, width=64, num_objects=2).save(folder)
    return folder


def run_args(video: Path, out: Path, strategy: str, *extra: str) -> list[str]:
    return ["run", str(video), "--backend", "synthetic", "--mask", str(video / "gt" / "00000.png"),
            "--strategy", strategy, "--out", str(out), "--no-progress", *extra]



def kill(args: list[str], *, frame: int = -1, snapshot_write: int = 0, threads: int = 0) -> None:
    """`treemem run ARGS` in a subprocess that SIGKILLs itself (see tests/kill_driver.py)."""
    command = [sys.executable, str(DRIVER), str(frame), str(snapshot_write), str(threads), "--"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.fixture
def count_encodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], int]]:
    """Run `treemem run ARGS` in-process; returns how many frames the backend encoded."""
    open_backend = inputs.open_backend

    def run(args: list[str]) -> int:
        encoded = [0]

        def counting(*a: Any, **k: Any) -> Any:
            opened = open_backend(*a, **k)
            backend, encode = opened.backend, opened.backend.encode

            def encode_and_count(frame: int) -> object:
                encoded[0] += 1
                return encode(frame)

            backend.encode = encode_and_count
            return opened

        monkeypatch.setattr(inputs, "open_backend", counting)
        try:
            assert main(args) == 0
        finally:
            monkeypatch.setattr(inputs, "open_backend", open_backend)
        return encoded[0]

    yield run


Reference = Callable[[Callable[[Path], list[str]], tuple[str, str]], dict[str, bytes]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The uninterrupted run's files (default snapshot interval), made once per key."""
    made: dict[tuple[str, str], dict[str, bytes]] = {}

    def files(args: Callable[[Path], list[str]], key: tuple[str, str]) -> dict[str, bytes]:
        if key not in made:
            out = tmp_path_factory.mktemp("reference") / "-".join(key)
            assert main(args(out)) == 0
            assert not (out / PARTIAL).exists() and not (out / SNAPSHOT).exists()
            made[key] = run_files(out)
        return made[key]

    return files


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_run_killed_at_frame_900_recomputes_at_most_n_frames(
    strategy: str, video: Path, tmp_path: Path, reference: Reference,
    count_encodes: Callable[[list[str]], int],
) -> None:
    expected = reference(lambda out: run_args(video, out, strategy), ("synthetic", strategy))
    out = tmp_path / "run"
    args = run_args(video, out, strategy, "--snapshot-every", str(EVERY))
    kill(args, frame=KILL)
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None
    assert snapshot.frame == (KILL // EVERY) * EVERY - 1  # 895: the last before the kill
    encoded = count_encodes([*args, "--resume"])
    assert encoded == FRAMES - (snapshot.frame + 1)  # from the snapshot on, no prompt encode
    recomputed = encoded - (FRAMES - KILL)  # frames the killed run had searched already
    assert 0 <= recomputed <= EVERY
    assert run_files(out) == expected


def test_a_backward_run_resumes_from_its_snapshot(
    video: Path, tmp_path: Path, reference: Reference,
    count_encodes: Callable[[list[str]], int],
) -> None:
    """Tracking backward from a prompt on the last frame: the snapshot's frames and writer
    position run downwards, and the resume goes on downwards from the frame after it."""
    last = str(video / "gt" / f"{FRAMES - 1:05d}.png")

    def args(out: Path, *extra: str) -> list[str]:
        found = run_args(video, out, "sam2long", "--direction", "backward", *extra)
        found[found.index("--mask") + 1] = last
        return [*found, "--mask-frame", str(FRAMES - 1)]

    expected = reference(args, ("synthetic", "sam2long-backward"))
    out = tmp_path / "run"
    kill(args(out, "--snapshot-every", str(EVERY)), frame=FRAMES - 1 - KILL)
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None and snapshot.frame == FRAMES - (KILL // EVERY) * EVERY  # 104
    encoded = count_encodes([*args(out, "--snapshot-every", str(EVERY)), "--resume"])
    assert encoded == snapshot.frame  # frames 103 down to 0
    assert 0 <= encoded - (FRAMES - KILL) <= EVERY
    assert run_files(out) == expected


@pytest.mark.parametrize(("kill_at", "snapshot_at", "search", "uncomputed"), [
    (900, 847, "forward", 503),   # frames 900..999 forward, 2 prompts and 401 frames backward
    (300, 361, "backward", 301),  # frames 300..0 backward
])
def test_a_two_way_run_resumes_from_its_snapshot(
    video: Path, tmp_path: Path, reference: Reference,
    count_encodes: Callable[[list[str]], int],
    kill_at: int, snapshot_at: int, search: str, uncomputed: int,
) -> None:
    """`--direction both` from the prompts on frame 400: forward 400..999, then backward
    400..0. Killed in the forward search (frame 900 is tracked forward only) or in the
    backward one (frame 300: backward only), the resume goes on from that search's last
    snapshot (every 64 frames counted over both searches)."""
    middle = str(video / "gt" / "00400.png")

    def args(out: Path, *extra: str) -> list[str]:
        found = run_args(video, out, "sam2long", "--direction", "both", *extra)
        found[found.index("--mask") + 1] = middle
        return [*found, "--mask-frame", "400"]

    expected = reference(args, ("synthetic", "sam2long-both"))
    out = tmp_path / "run"
    kill(args(out, "--snapshot-every", str(EVERY)), frame=kill_at)
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None
    assert (snapshot.frame, snapshot.stream.direction) == (snapshot_at, search)
    encoded = count_encodes([*args(out, "--snapshot-every", str(EVERY)), "--resume"])
    if search == "forward":
        assert encoded == (FRAMES - 1 - snapshot_at) + 2 + 401
    else:
        assert encoded == snapshot_at  # frames snapshot_at - 1 down to 0
    assert 0 <= encoded - uncomputed <= EVERY
    assert run_files(out) == expected


def test_a_kill_inside_the_snapshot_write_leaves_the_previous_snapshot(
    video: Path, tmp_path: Path, reference: Reference,
    count_encodes: Callable[[list[str]], int],
) -> None:
    expected = reference(lambda out: run_args(video, out, "sam2long"), ("synthetic", "sam2long"))
    out = tmp_path / "run"
    args = run_args(video, out, "sam2long", "--snapshot-every", str(EVERY))
    kill(args, snapshot_write=3)
    (torn,) = out.glob(f".{SNAPSHOT}.*.tmp")  # the third snapshot, cut short, never renamed
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None and snapshot.frame == 2 * EVERY - 1  # the second one, whole
    assert torn.stat().st_size < (out / SNAPSHOT).stat().st_size
    assert count_encodes([*args, "--resume"]) == FRAMES - 2 * EVERY
    assert not list(out.glob(".*.tmp"))
    assert run_files(out) == expected


def test_an_unusable_snapshot_means_searching_from_the_first_frame(
    video: Path, tmp_path: Path, reference: Reference,
    count_encodes: Callable[[list[str]], int], caplog: pytest.LogCaptureFixture,
) -> None:
    """A snapshot that is not one (a disk error; atomic writes never leave one) is not used:
    the resume warns and replays, and the output is still the uninterrupted run's."""
    expected = reference(lambda out: run_args(video, out, "greedy"), ("synthetic", "greedy"))
    out = tmp_path / "run"
    args = run_args(video, out, "greedy", "--snapshot-every", str(EVERY))
    kill(args, frame=KILL)
    (out / SNAPSHOT).write_bytes(b"\x80\x05not a snapshot")
    with caplog.at_level(logging.WARNING, logger="treemem.snapshots"):
        assert count_encodes([*args, "--resume"]) >= FRAMES
    assert any("searching again from the first frame" in r.getMessage() for r in caplog.records)
    assert run_files(out) == expected


def test_snapshots_refuse_other_settings_and_can_be_turned_off(
    video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    count_encodes: Callable[[list[str]], int],
) -> None:
    out = tmp_path / "run"
    args = run_args(video, out, "sam2long", "--snapshot-every", "300")
    kill(args, frame=KILL)
    assert read_snapshot(out / SNAPSHOT) is not None
    capsys.readouterr()
    assert main([*args, "--resume", "--set", "P=2"]) == 2
    err = capsys.readouterr().err
    assert "parameters.pathways: 3 -> 2" in err and err.count("\n") == 1, err
    assert main([*run_args(video, tmp_path / "other", "greedy"), "--snapshot-every", "-1"]) == 2
    assert "--snapshot-every must be >= 0" in capsys.readouterr().err

    off = tmp_path / "off"
    kill(run_args(video, off, "greedy", "--snapshot-every", "0"), frame=KILL)
    assert (off / PARTIAL).is_file() and not (off / SNAPSHOT).exists()
    assert count_encodes([*run_args(video, off, "greedy"), "--resume"]) >= FRAMES


@pytest.mark.parametrize(("stop_at", "search"), [
    ((250, 1), "forward"),   # frames 60..179 wait for the backward search
    ((120, 2), "backward"),  # frame 120's second encode: merging the waiting frames
    ((30, 1), "backward"),   # before every prompt: backward frames only
])
def test_a_two_way_run_with_waiting_frames_resumes_from_its_snapshot(
    tmp_path: Path, stop_at: tuple[int, int], search: str
) -> None:
    """Objects first prompted on different frames (60 and 180): the forward frames before
    180 wait for the backward search, so a snapshot holds them. A run stopped at a frame's
    n-th encode (a KeyboardInterrupt from the backend, which leaves the folder resumable)
    resumes from its snapshot to the uninterrupted run's files."""
    from treemem.backends.synthetic import SyntheticBackend
    from treemem.pipeline.inputs import open_backend
    from treemem.pipeline.runner import choose_strategy, run_to_folder
    from treemem.types import Prompt

    clip = make_video(6, num_frames=300, height=40, width=48, num_objects=2)
    prompts = [Prompt(1, 60, mask=clip.object_mask(1, 60)),
               Prompt(2, 180, mask=clip.object_mask(2, 180))]
    frame, nth = stop_at

    def run(out: Path, encodes: list[int], *, stop: bool = False, resume: bool = False) -> None:
        """Run into `out`, counting the backend's encodes in `encodes`."""
        backend = SyntheticBackend(clip, seed=1)
        encode, seen = backend.encode, [0]

        def encode_or_stop(at: int) -> object:
            encodes.append(at)
            seen[0] += at == frame
            if stop and at == frame and seen[0] == nth:
                raise KeyboardInterrupt
            return encode(at)

        backend.encode = encode_or_stop  # type: ignore[method-assign]
        with open_backend(None, backend) as opened:
            run_to_folder(opened, prompts, choose_strategy("sam2long"), out, progress=False,
                          direction="both", snapshot_every=37, resume=resume)

    whole: list[int] = []
    run(tmp_path / "whole", whole)
    out, before, after = tmp_path / "run", [], []
    with pytest.raises(KeyboardInterrupt):
        run(out, before, stop=True)
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None and snapshot.stream.direction == search
    if search == "forward" or snapshot.frame > 60:  # frames 60.. not reached backward yet
        assert snapshot.stream.waiting
    run(out, after, resume=True)
    uncomputed = len(whole) - (len(before) - 1)  # the stopped encode did not happen
    # at most 37 frames again, and the backward prompts when the snapshot is of the forward search
    assert 0 <= len(after) - uncomputed <= 37 + len(prompts)
    assert run_files(out) == run_files(tmp_path / "whole")


# --- the engine's own snapshot / restore ----------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("max_lag", [None, 3])
def test_a_restored_engine_goes_on_exactly_as_the_uninterrupted_one(
    strategy: str, max_lag: int | None, tmp_path: Path
) -> None:
    """`Engine.snapshot` after frame 20, restored into a fresh engine over a fresh backend
    that imported the memories and stepped on: the same decisions and tree rows from then on,
    through a re-prompt of object 1 on frame 30 (which needs the restored prompt results and
    conditioning) and, with max_lag, forced decisions."""
    from treemem import Engine, TreeRecord, load_strategy
    from treemem.backends.synthetic import SyntheticBackend
    from treemem.types import Prompt

    clip = make_video(4, num_frames=48, height=40, width=48, num_objects=2)
    prompts = [*clip.first_frame_prompts(), Prompt(1, 30, mask=clip.object_mask(1, 30))]
    strategy_set = load_strategy(strategy)
    taken: dict[str, Any] = {}
    engine = Engine(strategy_set, SyntheticBackend(clip, seed=2), max_lag=max_lag)

    def snapshot_at_20(frame: int) -> None:
        if frame == 20:
            taken["state"] = engine.snapshot()
            taken["memories"] = engine.backend.export_memories()  # type: ignore[attr-defined]
            taken["decisions"] = len(decisions)
            engine.record.save_jsonl(tmp_path / "tree.jsonl")

    decisions: list[Any] = []
    for decision in engine.run(prompts, range(48), progress=snapshot_at_20):
        decisions.append(decision)
    backend = SyntheticBackend(clip, seed=2)
    backend.import_memories(taken["memories"])
    record = TreeRecord.load_jsonl(tmp_path / "tree.jsonl")
    restored = Engine(strategy_set, backend, record=record, max_lag=max_lag)
    restored.restore(taken["state"])
    resumed = [d for frame in range(21, 48) for d in restored.step(frame)]
    assert [*resumed, *restored.finish()] == decisions[taken["decisions"]:]
    restored.record.save_jsonl(tmp_path / "restored.jsonl")
    engine.record.save_jsonl(tmp_path / "whole.jsonl")
    assert (tmp_path / "restored.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert restored.rejected == engine.rejected


def test_restore_refuses_a_used_engine_and_another_record() -> None:
    from treemem import Engine, TreememError, TreeRecord, load_strategy
    from treemem.backends.synthetic import SyntheticBackend

    clip = make_video(4, num_frames=8, height=40, width=48, num_objects=1)
    engine = Engine(load_strategy("greedy"), SyntheticBackend(clip))
    states: list[Any] = []

    def take(frame: int) -> None:
        states.append(engine.snapshot())

    list(engine.run(clip.first_frame_prompts(), range(8), progress=take))
    with pytest.raises(TreememError, match="fresh engine"):
        engine.restore(states[0])
    other = Engine(load_strategy("greedy"), SyntheticBackend(clip), record=TreeRecord())
    with pytest.raises(TreememError, match="rows"):
        other.restore(states[0])


# --- SAM 2 with random weights -------------------------------------------------------------------

SAM2_FRAMES, SAM2_KILL, SAM2_EVERY = 10, 8, 3


@pytest.fixture(scope="module")
def sam2_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-frame one-object synthetic video as a frame folder, and a random-weight SAM 2.1
    tiny checkpoint at image size 64 (2 torch threads, in this process and the killed one)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from treemem.backends.sam2 import build_random_model

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("sam2")
    make_video(5, num_frames=SAM2_FRAMES, height=48, width=64, num_objects=1).save(root / "video")
    checkpoint = root / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": build_random_model(image_size=64).state_dict()}, checkpoint)
    return root / "video", checkpoint


def sam2_args(inputs_: tuple[Path, Path], out: Path, strategy: str, *extra: str) -> list[str]:
    video, checkpoint = inputs_
    return ["run", str(video / "frames"), "--backend", "sam2", "--checkpoint", str(checkpoint),
            "--image-size", "64", "--device", "cpu", "--mask", str(video / "gt" / "00000.png"),
            "--strategy", strategy, "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sam2_killed_run_resumes_from_its_snapshot(
    strategy: str, sam2_inputs: tuple[Path, Path], tmp_path: Path,
    reference: Reference, count_encodes: Callable[[list[str]], int],
) -> None:
    expected = reference(lambda out: sam2_args(sam2_inputs, out, strategy), ("sam2", strategy))
    out = tmp_path / "run"
    args = sam2_args(sam2_inputs, out, strategy, "--snapshot-every", str(SAM2_EVERY))
    kill(args, frame=SAM2_KILL, threads=2)
    snapshot = read_snapshot(out / SNAPSHOT)
    assert snapshot is not None
    assert snapshot.frame == (SAM2_KILL // SAM2_EVERY) * SAM2_EVERY - 1  # 5
    encoded = count_encodes([*args, "--resume"])
    assert encoded == SAM2_FRAMES - (snapshot.frame + 1)
    assert 0 <= encoded - (SAM2_FRAMES - SAM2_KILL) <= SAM2_EVERY
    assert run_files(out) == expected
