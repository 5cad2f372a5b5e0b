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
