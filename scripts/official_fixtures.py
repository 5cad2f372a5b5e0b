"""Run the benchmarks' official evaluators on the generated datasets of tests/protocol_data.py
and store their numbers in tests/fixtures/official/<protocol>.json.

Not part of treemem and not run by the tests: it needs the official code, which treemem does
not ship or copy. Set it up once (any folder; the commits are the ones the fixtures name):

    python -m venv /tmp/official-venv
    /tmp/official-venv/bin/pip install numpy pillow opencv-python-headless scikit-image \\
        pandas scipy tqdm
    git clone https://github.com/davisvideochallenge/davis2017-evaluation   # ac7c43f
    git clone https://github.com/facebookresearch/sam2                      # 2b90b9f
    git clone https://github.com/LingyiHongfd/lvos-evaluation               # 25cb02d
    git clone https://github.com/henghuiding/MOSE-api                       # 241977a

    /tmp/official-venv/bin/python scripts/official_fixtures.py --davis DIR --sam2 DIR \\
        --lvos DIR --mose DIR [--only davis,sav,lvos,mose]

With `--bench .venv/bin/treemem` it instead runs a synthetic-backend `treemem bench --protocol`
on each synthetic layout, scores bench's files with the official code (MOSE: the unpacked
submission.zip) and prints both tables.

Each fixture holds raw values (fractions, full precision) per object and for the dataset,
and a note naming the code and commit that produced them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

import protocol_data  # noqa: E402

FIXTURES = HERE / "tests" / "fixtures" / "official"


def _commit(repo: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return found.stdout.strip() or os.environ.get("OFFICIAL_COMMIT_" + repo.name, "unknown")


def _versions() -> str:
    import cv2
    import numpy
    import skimage

    return (
        f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, opencv {cv2.__version__}, "
        f"scikit-image {skimage.__version__}"
    )


def _quiet(function: Any, *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


def davis(repo: Path, root: Path, pred: Path) -> dict[str, Any]:
    sys.path.insert(0, str(repo))
    evaluation = importlib.import_module("davis2017.evaluation")
    result = _quiet(
        evaluation.DAVISEvaluation(str(root), "semi-supervised", "val").evaluate,
        str(pred),
    )
    names = list(result["J"]["M_per_object"])
    objects = {
        name: {
            "J": result["J"]["M"][i], "J-Recall": result["J"]["R"][i],
            "J-Decay": result["J"]["D"][i], "F": result["F"]["M"][i],
            "F-Recall": result["F"]["R"][i], "F-Decay": result["F"]["D"][i],
        }
        for i, name in enumerate(names)
    }
    mean = {key: sum(o[key] for o in objects.values()) / len(objects) for key in objects[names[0]]}
    return {
        "code": "davis2017-evaluation, davis2017.evaluation.DAVISEvaluation(task="
        "'semi-supervised', gt_set='val').evaluate",
        "objects": objects,
        "summary": {"J&F": (mean["J"] + mean["F"]) / 2, **mean},
    }


def sav(repo: Path, root: Path, pred: Path) -> dict[str, Any]:
    sys.path.insert(0, str(repo / "sav_dataset"))
    benchmark = importlib.import_module("utils.sav_benchmark").benchmark
    jf, j, f, per_object = benchmark(
        [str(root / "Annotations_6fps")], [str(pred)], True, 1, verbose=False
    )
    objects = {
        f"{video}_{obj}": {"J": iou[obj] / 100, "F": boundary[obj] / 100}
        for video, (iou, boundary) in per_object[0].items()
        for obj in iou
    }
    return {
        "code": "sam2 sav_dataset/utils/sav_benchmark.benchmark (what sav_evaluator.py runs), "
        "skip_first_and_last=True; values / 100",
        "objects": objects,
        "summary": {"J&F": jf[0] / 100, "J": j[0] / 100, "F": f[0] / 100},
    }


def lvos(repo: Path, root: Path, pred: Path) -> dict[str, Any]:
    sys.path.insert(0, str(repo))
    evaluation = importlib.import_module("lvos.evaluation")
    cwd = os.getcwd()
    os.chdir(root)  # the evaluator reads ./unseen_videos.txt and ./unsupervised_videos.txt
    (root / "unsupervised_videos.txt").write_text("")
    try:
        every, seen, unseen = _quiet(
            evaluation.LVOSEvaluation(str(root), "semi-supervised", "valid").evaluate,
            str(pred),
        )
    finally:
        os.chdir(cwd)
    objects = {
        name: {"J": float(every["J"]["M_per_object"][name]),
               "F": float(every["F"]["M_per_object"][name]),
               "V": float(every["V"]["M_per_object"][name])}
        for name in every["J"]["M_per_object"]
    }

    def mean(values: list[float]) -> float:
        return float(sum(values) / len(values))

    js, fs, ju, fu = (mean(seen["J"]["M"]), mean(seen["F"]["M"]), mean(unseen["J"]["M"]),
                      mean(unseen["F"]["M"]))
    summary = {  # the formulas of evaluation_method.py
        "J&F": (js + fs + ju + fu) / 4, "J": (js + ju) / 2, "F": (fs + fu) / 2,
        "J_s": js, "F_s": fs, "J_u": ju, "F_u": fu,
        "V": (mean(seen["V"]["M"]) + mean(unseen["V"]["M"])) / 2,
    }
    return {
        "code": "lvos-evaluation, lvos.evaluation.LVOSEvaluation(task='semi-supervised', "
        "gt_set='valid').evaluate; summary by evaluation_method.py's formulas",
        "objects": objects,
        "summary": summary,
    }


def mose(repo: Path, root: Path, pred: Path) -> dict[str, Any]:
    tools = repo / "MOSEv2" / "sam2_rcms" / "tools"
    if not tools.is_dir():
        tools = repo / "tools"
    out = root.parent / "mose-out"
    subprocess.run(
        [sys.executable, str(tools / "score.py"), "--meta", str(root / "meta.json"),
         "--ann", str(root / "Annotations"), "--pred", str(pred), "--output", str(out)],
        check=True, capture_output=True, cwd=tools,
    )
    printed = {}
    for line in (out / "scores.txt").read_text().splitlines():
        key, _, value = line.partition(": ")
        if key != "Copy-Paste":
            printed[key] = float(value) / 100
    # raw per-object values: the toolkit's own functions, one chunk per object
    sys.path.insert(0, str(tools))
    score = _quiet(importlib.import_module, "score")
    meta = json.loads((root / "meta.json").read_text())["videos"]
    objects = {}
    for video, record in meta.items():
        for obj in record["objects"]:
            chunk = score.process_video_chunk(
                video, meta, str(pred), str(root / "Annotations"), 1,
                record["length"] - 1, obj, 0,
            )
            merged = score.merge_chunk_results([chunk], video, obj)
            objects[f"{video}_{obj}"] = dict(
                zip(["J", "F_new", "F", "dis_J", "dis_F_new", "rep_J", "rep_F_new"],
                    [None if v is None else float(v) for v in merged], strict=True)
            )
    return {
        "code": "MOSE-api MOSEv2/sam2_rcms/tools/score.py (summary: its scores.txt, rounded to "
        "0.01 %; objects: its process_video_chunk + merge_chunk_results, one chunk each)",
        "objects": objects,
        "summary_printed": printed,
    }


RUNNERS = {"davis": davis, "sav": sav, "lvos": lvos, "mose": mose}


def check_bench(name: str, repo: Path, work: Path, treemem: str) -> None:
    """A synthetic-backend bench run in `name`'s layout, scored again by the official code
    (MOSE: from the unpacked submission.zip); prints each column, bench's and official."""
    import zipfile

    data, out = work / "data", work / "out"
    made = [treemem, "bench", "--make-synthetic", str(data), "--protocol", name, "--count", "3"]
    subprocess.run(made, check=True, capture_output=True)
    subprocess.run([treemem, "bench", str(data), "--protocol", name, "--strategy", "greedy",
                    "--out", str(out)], check=True, capture_output=True)
    row = json.loads((out / "results.json").read_text())["runs"][0]
    pred = out / "runs" / "greedy" / "pred"
    if name == "mose":
        with zipfile.ZipFile(out / "runs" / "greedy" / "submission.zip") as archive:
            archive.extractall(work / "unzipped")
        pred = work / "unzipped"
    record = RUNNERS[name](repo, data, pred)
    names = {"disappear_J&F_new": "J&F_dis", "reappear_J&F_new": "J&F_rep"}
    summary = record.get("summary") or record["summary_printed"]
    worst = 0.0
    for column, value in summary.items():
        column = names.get(column, column).replace("-Mean", "")
        worst = max(worst, abs(row[column] - value))
        print(f"{name} {column}: bench {100 * row[column]:.2f}  official {100 * value:.2f}")
    print(f"{name}: largest difference {worst:.2e} (bench stores 6 decimals"
          f"{'; the MOSE toolkit prints 0.01 %' if name == 'mose' else ''})")
REPOSITORIES = {
    "davis": "github.com/davisvideochallenge/davis2017-evaluation",
    "sav": "github.com/facebookresearch/sam2",
    "lvos": "github.com/LingyiHongfd/lvos-evaluation",
    "mose": "github.com/henghuiding/MOSE-api",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path)
    parser.add_argument("--sam2", type=Path)
    parser.add_argument("--lvos", type=Path)
    parser.add_argument("--mose", type=Path)
    parser.add_argument("--commits", default="", help="name=sha,... when a checkout has no .git")
    parser.add_argument("--only", default="davis,sav,lvos,mose")
    parser.add_argument(
        "--bench",
        metavar="TREEMEM",
        help="instead: run `TREEMEM bench --make-synthetic --protocol` and a greedy bench run, "
        "score bench's files with the official code and compare with bench's table",
    )
    args = parser.parse_args()
    repos = {"davis": args.davis, "sav": args.sam2, "lvos": args.lvos, "mose": args.mose}
    commits = dict(item.split("=") for item in args.commits.split(",") if item)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in args.only.split(","):
        repo = repos[name]
        if repo is None:
            raise SystemExit(f"--{'sam2' if name == 'sav' else name} DIR is needed for {name}")
        with tempfile.TemporaryDirectory() as work:
            if args.bench:
                check_bench(name, repo.resolve(), Path(work), args.bench)
                continue
            root = protocol_data.WRITERS[name](Path(work) / name)
            record = RUNNERS[name](repo.resolve(), root, root / "pred")
        record = {
            "note": f"Produced by the official evaluator {REPOSITORIES[name]} at commit "
            f"{commits.get(name) or _commit(repo)} on the dataset tests/protocol_data.py "
            f"write_{name} generates, with scripts/official_fixtures.py "
            f"({_versions()}).",
            **record,
        }
        path = FIXTURES / f"{name}.json"
        path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
