"""The protocols against the benchmarks' official evaluators.

tests/fixtures/official/<protocol>.json holds what the official code computed on the datasets
tests/protocol_data.py generates (each fixture's "note" names the code and commit;
scripts/official_fixtures.py reproduces them). Here treemem scores the same datasets and must
agree to 1e-6 on raw values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PIL.Image")

import protocol_data

from treemem.metrics import (
    Disk,
    ObjectScores,
    VideoScores,
    boundary_accuracy,
    boundary_accuracy_with,
    mose_boundary_accuracy,
)
from treemem.protocols import (
    PROTOCOLS,
    Dataset,
    detect,
    get_protocol,
    lvos_variation,
    mose_object,
)
from treemem.types import InputError

FIXTURES = Path(__file__).parent / "fixtures" / "official"
TOLERANCE = 1e-6


def official(name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    assert "commit" in record["note"]
    return record


def score(name: str, root: Path) -> tuple[Dataset, list[VideoScores]]:
    protocol = get_protocol(name)
    dataset = protocol.read(root, None)
    return dataset, [protocol.score(v, root / "pred" / v.name) for v in dataset.videos]


def close(found: float | None, expected: float | None) -> bool:
    if expected is None or found is None:
        return found is expected
    return math.isclose(found, expected, rel_tol=0, abs_tol=TOLERANCE)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        name: write(tmp_path_factory.mktemp(name))
        for name, write in protocol_data.WRITERS.items()
    }


def test_layouts_are_detected(data: dict[str, Path], tmp_path: Path) -> None:
    for name, root in data.items():
        found = detect(root)
        assert found is not None and found.name == name
    plain = tmp_path / "plain"
    (plain / "JPEGImages").mkdir(parents=True)
    (plain / "Annotations").mkdir()
    with pytest.raises(InputError, match="--protocol lvos or --protocol mose"):
        detect(plain)
    assert detect(tmp_path / "plain" / "JPEGImages") is None
    with pytest.raises(InputError, match="unknown protocol"):
        get_protocol("ytvos")


def test_davis_equals_davis2017_evaluation(data: dict[str, Path]) -> None:
    expected = official("davis")
    _, videos = score("davis", data["davis"])
    objects = {f"{v.video}_{o.obj}": o for v in videos for o in v.objects}
    assert set(objects) == set(expected["objects"])
    for key, numbers in expected["objects"].items():
        found = objects[key]
        stats = {"J": found.j_stats, "F": found.f_stats}
        for metric in ("J", "F"):
            assert close(stats[metric].mean, numbers[metric]), key
            assert close(stats[metric].recall, numbers[f"{metric}-Recall"]), key
            assert close(stats[metric].decay, numbers[f"{metric}-Decay"]), key
    row = PROTOCOLS["davis"].summary(videos, {})
    for column, value in expected["summary"].items():
        key = column.replace("-Mean", "")
        assert close(row[key], value), column


def test_davis_scores_an_id_missing_from_frame_0_as_an_empty_object(
    data: dict[str, Path],
) -> None:
    _, videos = score("davis", data["davis"])
    bike = next(v for v in videos if v.video == "bike")
    assert [o.obj for o in bike.objects] == [1, 2, 3]
    assert bike.objects[1].j.tolist() == [1.0] * len(bike.objects[1].frames)


def test_sav_equals_sav_evaluator(data: dict[str, Path]) -> None:
    expected = official("sav")
    _, videos = score("sav", data["sav"])
    objects = {f"{v.video}_{o.obj:03d}": o for v in videos for o in v.objects}
    assert set(objects) == set(expected["objects"])
    for key, numbers in expected["objects"].items():
        assert close(objects[key].j_stats.mean, numbers["J"]), key
        assert close(objects[key].f_stats.mean, numbers["F"]), key
    row = PROTOCOLS["sav"].summary(videos, {})
    for column, value in expected["summary"].items():
        assert close(row[column], value), column


def test_lvos_equals_lvos_evaluation(data: dict[str, Path]) -> None:
    expected = official("lvos")
    dataset, videos = score("lvos", data["lvos"])
    objects = {
        f"{v.video}_{index + 1}": o for v in videos for index, o in enumerate(v.objects)
    }
    assert set(objects) == set(expected["objects"])
    for key, numbers in expected["objects"].items():
        assert close(objects[key].j_stats.mean, numbers["J"]), key
        assert close(objects[key].f_stats.mean, numbers["F"]), key
        assert close(lvos_variation(objects[key]), numbers["V"]), key
    groups = {v.name: v.group for v in dataset.videos}
    assert sorted(groups.values()) == ["seen", "seen", "unseen"]
    row = PROTOCOLS["lvos"].summary(videos, groups)
    for column, value in expected["summary"].items():
        assert close(row[column], value), column


def test_mose_equals_the_mosev2_toolkit(data: dict[str, Path]) -> None:
    expected = official("mose")
    _, videos = score("mose", data["mose"])
    objects = {f"{v.video}_{o.obj}": o for v in videos for o in v.objects}
    assert set(objects) == set(expected["objects"])
    for key, numbers in expected["objects"].items():
        merged = mose_object(objects[key])
        assert close(merged.j, numbers["J"]), key
        assert close(merged.f_new, numbers["F_new"]), key
        assert close(merged.f, numbers["F"]), key
        gone = merged.disappear or (None, None)
        back = merged.reappear or (None, None)
        assert close(gone[0], numbers["dis_J"]) and close(gone[1], numbers["dis_F_new"]), key
        assert close(back[0], numbers["rep_J"]) and close(back[1], numbers["rep_F_new"]), key
    row = PROTOCOLS["mose"].summary(videos, {})
    printed = expected["summary_printed"]  # the toolkit prints percentages to 0.01
    names = {"J&F_new": "J&F_new", "J": "J", "F_new": "F_new", "F": "F", "J&F": "J&F",
             "disappear_J&F_new": "J&F_dis", "reappear_J&F_new": "J&F_rep"}
    for column, value in printed.items():
        assert round(100 * row[names[column]], 2) == pytest.approx(100 * value, abs=1e-9), column


def test_mose_covers_both_boundary_branches(data: dict[str, Path]) -> None:
    _, videos = score("mose", data["mose"])
    adaptive = [
        not np.array_equal(o.f, o.extra["F_new"]) for v in videos for o in v.objects
    ]
    assert any(adaptive)  # small objects: a smaller radius for F_new
    big = next(o for v in videos for o in v.objects if v.video == "a1b2c3d4" and o.obj == 3)
    assert np.array_equal(big.f, big.extra["F_new"])  # large: the unrounded diagonal disk


def test_skimage_disk_off_centre() -> None:
    # skimage.morphology.disk(1.5): grid -1.5, -0.5, 0.5, 1.5, anchored by OpenCV at 2
    element = Disk.skimage(1.5)
    assert element.dy.tolist() == [-1, 0]
    assert element.lo.tolist() == [-1, -1] and element.hi.tolist() == [0, 0]
    integral, disk = Disk.skimage(3.0), Disk.of(3)
    assert integral.lo.tolist() == disk.lo.tolist() == [0, -2, -2, -3, -2, -2, 0]


def test_kernel_matcher_equals_the_disk_one() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        gt = rng.uniform(size=(30, 40)) < 0.3
        pred = rng.uniform(size=(30, 40)) < 0.3
        assert boundary_accuracy_with(gt, pred, Disk.of(1)) == boundary_accuracy(gt, pred)
        standard, _ = mose_boundary_accuracy(gt, pred)
        assert 0.0 <= standard <= 1.0


def test_extra_per_frame_values_survive_the_result_files() -> None:
    from treemem.evaluation import object_from_record, object_record

    scores = ObjectScores(
        "v", 1, ("a", "b"), np.array([0.5, 1.0]), np.array([0.25, 1.0]),
        extra={"F_new": np.array([0.75, 1.0])},
    )
    back = object_from_record("v", object_record(scores))
    assert back.extra["F_new"].tolist() == [0.75, 1.0]


# --- treemem bench --protocol, end to end with the synthetic backend --------------------------


def bench(
    tmp_path: Path, protocol: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[Path, Path, str]:
    from treemem.cli import main

    data, out = tmp_path / f"{protocol}-data", tmp_path / f"{protocol}-out"
    made = ["bench", "--make-synthetic", str(data), "--protocol", protocol, "--count", "2"]
    assert main(made) == 0
    assert main(["bench", str(data), "--strategy", "greedy", "--out", str(out), *extra]) == 0
    return data, out, capsys.readouterr().out


def rescored(protocol: str, data: Path, out: Path, pred_root: Path | None = None) -> dict[str, Any]:
    """The protocol's table recomputed from the predictions bench wrote."""
    found = get_protocol(protocol)
    dataset = found.read(data, None)
    root = pred_root or out / "runs" / "greedy" / "pred"
    videos = [found.score(v, root / v.name) for v in dataset.videos]
    return found.summary(videos, {v.name: v.group for v in dataset.videos})


def stored_row(out: Path) -> dict[str, Any]:
    row: dict[str, Any] = json.loads((out / "results.json").read_text())["runs"][0]
    return row


def test_bench_lvos_prints_seen_and_unseen_and_writes_per_video_csvs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    data, out, printed = bench(tmp_path, "lvos", capsys)  # detected from the layout
    assert "LVOS (v1 / v2), valid split" in printed
    header = next(line for line in printed.splitlines() if line.startswith("run ")).split()
    assert header[:4] == ["run", "videos", "J&F", "J"]
    assert {"J_s", "F_s", "J_u", "F_u"} <= set(header)
    row = stored_row(out)
    assert row["J&F"] == pytest.approx((row["J_s"] + row["F_s"] + row["J_u"] + row["F_u"]) / 4,
                                       abs=2e-6)
    for column, value in rescored("lvos", data, out).items():
        assert row[column] == pytest.approx(value, abs=1e-6), column
    with (out / "runs" / "greedy" / "per-video.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {r["group"] for r in rows} == {"seen", "unseen"}
    assert {r["object"] for r in rows} == {"all", "1", "2"}
    meta = json.loads((data / "valid_meta.json").read_text())["videos"]
    late = meta["video_000"]["objects"]["2"]["frame_range"]
    assert int(late["start"]) > 0  # the second object is prompted when it appears
    stored = json.loads((out / "runs" / "greedy" / "results" / "video_000.json").read_text())
    assert stored["group"] == "seen" and stored["protocol"] == "lvos"


def test_bench_mose_writes_the_zip_the_toolkit_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    data, out, printed = bench(tmp_path, "mose", capsys, "--protocol", "mose")
    assert "J&F_new" in printed and "J&F_dis" in printed
    with zipfile.ZipFile(out / "runs" / "greedy" / "submission.zip") as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    # MOSEv2's score.py reads <pred>/<video>/<frame>.png, the frames of each video's
    # annotation folder by position: the zip must hold exactly those, videos at its root
    meta = json.loads((data / "meta.json").read_text())["videos"]
    expected = {
        f"{video}/{png.name}"
        for video in meta
        for png in (data / "Annotations" / video).glob("*.png")
    }
    assert names == expected
    assert len(expected) == sum(record["length"] for record in meta.values())
    row = stored_row(out)
    for column, value in rescored("mose", data, out, tmp_path / "unzipped").items():
        assert row[column] == pytest.approx(value, abs=1e-6), column


def test_bench_sav_tracks_every_frame_and_scores_the_annotated_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out, printed = bench(tmp_path, "sav", capsys)
    assert "SA-V" in printed
    pred = out / "runs" / "greedy" / "pred" / "video_000"
    assert sorted(p.name for p in pred.iterdir()) == ["000", "001"]
    frames = len(list((data / "JPEGImages_24fps" / "video_000").glob("*.jpg")))
    annotated = len(list((data / "Annotations_6fps" / "video_000" / "000").glob("*.png")))
    assert len(list((pred / "000").glob("*.png"))) == frames > annotated
    assert not (out / "runs" / "greedy" / "submission.zip").exists()
    row = stored_row(out)
    for column, value in rescored("sav", data, out).items():
        assert row[column] == pytest.approx(value, abs=1e-6), column


def test_bench_davis_and_its_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    from treemem.cli import main

    data, out, printed = bench(tmp_path, "davis", capsys)
    assert "J-Recall" in printed and "F-Decay" in printed
    with zipfile.ZipFile(out / "runs" / "greedy" / "submission.zip") as archive:
        assert len(archive.namelist()) == 2 * len(
            list((data / "JPEGImages" / "480p" / "video_000").glob("*.jpg"))
        )
    row = stored_row(out)
    for column, value in rescored("davis", data, out).items():
        assert row[column] == pytest.approx(value, abs=1e-6), column
    args = ["bench", str(data), "--out", str(out), "--protocol", "davis", "--all-frames"]
    assert main(args) == 2
    assert "--all-frames does not apply" in capsys.readouterr().err
    plain = tmp_path / "plain"
    (plain / "JPEGImages").mkdir(parents=True)
    (plain / "Annotations").mkdir()
    assert main(["bench", str(plain), "--out", str(tmp_path / "o")]) == 2
    assert "--protocol lvos or --protocol mose" in capsys.readouterr().err


def test_bench_on_a_test_split_writes_the_submission_and_scores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    from treemem.cli import main

    data, out = tmp_path / "lvos-test", tmp_path / "out"
    main(["bench", "--make-synthetic", str(data), "--protocol", "lvos", "--count", "1"])
    meta = json.loads((data / "valid_meta.json").read_text())["videos"]
    objects = meta["video_000"]["objects"].values()
    starts = {f"{int(o['frame_range']['start']):08d}.png" for o in objects}
    for png in (data / "Annotations" / "video_000").glob("*.png"):
        if png.name not in starts:
            png.unlink()  # a test split: only each object's first mask
    assert main(["bench", str(data), "--strategy", "greedy", "--out", str(out)]) == 0
    with zipfile.ZipFile(out / "runs" / "greedy" / "submission.zip") as archive:
        assert len(archive.namelist()) == len(list((data / "JPEGImages" / "video_000").iterdir()))
    assert math.isnan(get_protocol("lvos").summary([], {})["J&F"])
    result = json.loads((out / "runs" / "greedy" / "results" / "video_000.json").read_text())
    assert result["scored"] is False and result["scores"] == []


@pytest.mark.parametrize("name", ["davis", "sav", "lvos", "mose"])
def test_eval_protocol_prints_the_official_numbers(
    name: str, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from treemem.cli import main

    root = data[name]
    args = ["eval", str(root / "pred"), str(root), "--protocol", name]
    assert main([*args, "--json", str(tmp_path / "scores.json")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "scores.json").read_text())["protocol_summary"]
    expected = official(name)
    if name == "mose":
        names = {"J&F_new": "J&F_new", "J": "J", "F_new": "F_new", "F": "F", "J&F": "J&F",
                 "disappear_J&F_new": "J&F_dis", "reappear_J&F_new": "J&F_rep"}
        reference = {names[k]: v for k, v in expected["summary_printed"].items()}
        for column, value in reference.items():
            assert round(100 * summary[column], 2) == pytest.approx(100 * value, abs=1e-9)
    else:
        reference = {k.replace("-Mean", ""): v for k, v in expected["summary"].items()}
        for column, value in reference.items():
            assert summary[column] == pytest.approx(value, abs=1e-6), column
    for column in get_protocol(name).columns:  # the printed line, to its precision
        assert f"{column} {100 * reference[column]:.1f}" in printed, column


def test_bench_mose_valid_with_first_frame_masks_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    from treemem.cli import main

    data, out = tmp_path / "mose-valid", tmp_path / "out"
    main(["bench", "--make-synthetic", str(data), "--protocol", "mose", "--count", "1"])
    (data / "meta.json").unlink()  # as released: no meta file, first-frame masks only
    for png in sorted((data / "Annotations" / "video_000").glob("*.png"))[1:]:
        png.unlink()
    args = ["bench", str(data), "--strategy", "greedy", "--out", str(out)]
    assert main(args) == 2
    assert "--protocol lvos or --protocol mose" in capsys.readouterr().err
    assert main([*args, "--protocol", "mose"]) == 0
    with zipfile.ZipFile(out / "runs" / "greedy" / "submission.zip") as archive:
        frames = len(list((data / "JPEGImages" / "video_000").iterdir()))
        assert len(archive.namelist()) == frames
    result = json.loads((out / "runs" / "greedy" / "results" / "video_000.json").read_text())
    assert result["scored"] is False
