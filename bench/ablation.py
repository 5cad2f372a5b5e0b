"""The SAM2Long ablations on the synthetic suite: `python bench/ablation.py [--out DIR]`.

One knob at a time around the `sam2long` defaults, as the paper's ablation tables do:
P in 1..4, delta_iou in {0, 0.3, 0.7, 0.9}, delta_conf in {0.5, 2, 5},
[w_low, w_high] in {[1, 1], [0.95, 1.05], [0.9, 1.1]}, plus `greedy` as the baseline. Every
run goes through `treemem bench` (same code, same files: the sweep resumes if interrupted).
Prints one table per knob and saves a plot with one panel per knob.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from treemem.cli import main as treemem

SWEEPS = {
    "P": ["P=1,2,3,4"],
    "delta_iou": ["delta_iou=0,0.3,0.7,0.9"],
    "delta_conf": ["delta_conf=0.5,2,5"],
    "[w_low, w_high]": ["w_low/w_high=1/1,0.95/1.05,0.9/1.1"],
}


def run_sweeps(suite: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Run every sweep (plus greedy) through `treemem bench`; rows by run name."""
    for sweep in SWEEPS.values():
        args = ["bench", str(suite), "--strategy", "sam2long", "--out", str(out)]
        for value in sweep:
            args += ["--set", value]
        if treemem(args) != 0:
            raise SystemExit("treemem bench failed")
    if treemem(["bench", str(suite), "--strategy", "greedy", "--out", str(out)]) != 0:
        raise SystemExit("treemem bench failed")
    # results.json holds the last call's runs; every run's per-video files are under runs/
    return {row["run"]: row for row in _all_rows(out)}


def _all_rows(out: Path) -> list[dict[str, Any]]:
    from treemem.benchmark import RunSpec, collect, table_rows

    runs = []
    for run_dir in sorted((out / "runs").iterdir()):
        spec_record = json.loads((run_dir / "run.json").read_text())
        spec = RunSpec(spec_record["strategy"], tuple(spec_record["overrides"].items()))
        results = [json.loads(p.read_text()) for p in sorted((run_dir / "results").glob("*.json"))]
        runs.append(collect(spec, results))
    return table_rows(runs)


def knob_rows(rows: dict[str, dict[str, Any]], knob: str) -> list[tuple[str, dict[str, Any]]]:
    keys = ("w_low", "w_high") if knob.startswith("[") else (knob,)
    chosen = []
    for row in rows.values():
        if row["strategy"] == "sam2long" and all(k in row for k in keys):
            others = [k for k in ("P", "delta_iou", "delta_conf", "w_low", "w_high") if k in row]
            if set(others) == set(keys):
                label = "/".join(str(row[k]) for k in keys)
                chosen.append((label, row))
    return sorted(chosen, key=lambda item: [float(v) for v in item[0].split("/")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/ablation"))
    parser.add_argument("--count", type=int, default=12, help="synthetic videos")
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/ablation.png"))
    args = parser.parse_args()

    suite = args.out / "suite"
    if not suite.is_dir():
        treemem(["bench", "--make-synthetic", str(suite), "--count", str(args.count)])
    rows = run_sweeps(suite, args.out)
    greedy = rows["greedy"]
    print(
        f"\ngreedy: J&F {100 * greedy['J&F']:.1f}, {greedy['fps']:.0f} fps "
        f"({greedy['videos']} videos)"
    )
    panels = []
    for knob in SWEEPS:
        print(f"\n| {knob} | J&F | J | F | speed vs greedy |\n|---|---|---|---|---|")
        series = knob_rows(rows, knob)
        for label, row in series:
            print(
                f"| {label} | {100 * row['J&F']:.1f} | {100 * row['J']:.1f} | "
                f"{100 * row['F']:.1f} | {row['speed_vs_greedy']:.2f}x |"
            )
        panels.append((knob, series))

    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 3.4), layout="constrained")
    for axes, (knob, series) in zip(figure.subplots(1, len(panels)), panels, strict=True):
        labels = [label for label, _ in series]
        axes.plot(labels, [100 * row["J&F"] for _, row in series], marker="o", label="sam2long")
        axes.axhline(100 * greedy["J&F"], color="gray", linestyle="--", label="greedy")
        axes.set_xlabel(knob)
        axes.set_ylabel("J&F (%)")
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize="small")
    figure.suptitle(f"SAM2Long ablations on the synthetic suite ({greedy['videos']} videos)")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.plot, dpi=110)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
