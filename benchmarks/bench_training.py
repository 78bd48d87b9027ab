"""Training time at the province's size: 160,000 labelled inspections (Zhejiang trained on 2019's).

Generates (or reuses) a synthetic province large enough to yield ~160k labelled inspections,
validates it, builds the population snapshot, then times separately: labels (point-in-time
features for every inspection), the fit (LightGBM search with early stopping + calibration +
tier resolution on the population), baselines + evaluation, and MLflow tracking. Prints a
markdown table; RESULTS.md keeps the numbers.

    .venv/bin/python benchmarks/bench_training.py --enterprises 172000
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from features.pipeline import run_synthetic
from features.workspace import Workspace
from training.config import load_config
from training.labels import build_examples
from training.train import train

OUT = Path(__file__).parent / ".out"


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=172_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    ws = Workspace(OUT / f"train_{args.enterprises}")
    t0 = time.perf_counter()
    run = run_synthetic(ws, enterprises=args.enterprises, seed=args.seed)
    t_data = time.perf_counter() - t0
    config = load_config()

    t0 = time.perf_counter()
    examples, periods = build_examples(ws.validated, config.splits)
    t_labels = time.perf_counter() - t0
    counts = examples["period"].value_counts()

    t0 = time.perf_counter()
    result = train(
        ws.validated, config, run.snapshot.path, register=False, examples=(examples, periods)
    )
    t_train = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(
            ws.validated, config, run.snapshot.path, mlruns=Path(tmp), examples=(examples, periods)
        )
        t_tracked = time.perf_counter() - t0

    ours = result.comparison.set_index(["view", "model"])
    rows = [
        ("enterprises", f"{args.enterprises:,}"),
        ("labelled inspections (all periods)", f"{len(examples):,}"),
        (
            "  train / valid / test",
            " / ".join(f"{counts.get(p, 0):,}" for p in ("train", "valid", "test")),
        ),
        ("trees (best iteration)", str(result.model.meta["best_iteration"])),
        ("search candidates", str(len(config.lightgbm.search))),
        ("data: generate + validate + snapshot (s)", f"{t_data:.1f}"),
        ("labels: features for every inspection (s)", f"{t_labels:.1f}"),
        (
            "**train: search + calibration + tiers + baselines + evaluation (s)**",
            f"**{t_train:.1f}**",
        ),
        ("same plus MLflow run + registration (s)", f"{t_tracked:.1f}"),
        ("LightGBM AUC, random view", f"{ours.loc[('random', 'lightgbm'), 'roc_auc']:.3f}"),
        ("threads", str(os.cpu_count())),
        ("peak RSS (GiB)", f"{peak_gib():.2f}"),
    ]
    print("| measure | value |\n|---|---:|")
    for measure, value in rows:
        print(f"| {measure} | {value} |")


if __name__ == "__main__":
    main()
