"""Batch-scoring throughput: the compiled forest vs LightGBM's own predict, same model, same rows.

Trains the default model on the 160k-inspection benchmark province (``bench_training.py``'s,
generated if missing), then scores a population snapshot (default: the 1M-enterprise
benchmark province's, from ``bench_pipeline.py``, tiled to ``--rows``) with both paths,
alternating them ``--repeats`` times in the same process, and reports median rows/s, the ratio,
the largest difference in raw score and in calibrated probability, and tier flips under every
scheme. ``--trees 500`` adds a model with exactly 500 trees (no early stopping), the shape the
issue quotes for stock LightGBM (~95k rows/s).

    .venv/bin/python benchmarks/bench_scoring.py --rows 1000000 --trees 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.pipeline import run_synthetic
from features.workspace import Workspace
from training.compiled_forest import CompiledForest
from training.config import load_config
from training.risk_model import RiskModel
from training.train import train

OUT = Path(__file__).parent / ".out"


def population(path: Path | None, rows: int) -> pd.DataFrame:
    if path is None:
        found = sorted((OUT / "n1000000").glob("snapshot_*.parquet"))
        if not found:
            ws = Workspace(OUT / "scoring_1000000")
            found = [run_synthetic(ws, enterprises=1_000_000).snapshot.path]
        path = found[-1]
    frame = pd.read_parquet(path)
    reps = -(-rows // len(frame))
    return pd.concat([frame] * reps, ignore_index=True).head(rows)


def tier_flips(model: RiskModel, frame: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> int:
    ta, tb = model.tiers(frame, a), model.tiers(frame, b)
    cols = [c for c in ta.columns if c.startswith("tier_")]
    return int((ta[cols] != tb[cols]).any(axis=1).sum())


def compare(name: str, model: RiskModel, frame: pd.DataFrame, X: np.ndarray, repeats: int) -> dict:
    threads = os.cpu_count() or 1
    forest = CompiledForest.from_booster(model.booster)
    forest.raw_score(X[:1000], threads=threads)  # compile (cached by numba on disk)
    stock_t, ours_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stock = model.booster.predict(X, raw_score=True, num_threads=threads)
        stock_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = forest.raw_score(X, threads=threads)
        ours_t.append(time.perf_counter() - t0)
    p_stock, p_ours = model.calibrator(stock), model.calibrator(ours)
    return {
        "model": name,
        "trees": model.booster.num_trees(),
        "leaves ≤": max(t["num_leaves"] for t in model.booster.dump_model()["tree_info"]),
        "rows": len(X),
        "LightGBM rows/s": len(X) / statistics.median(stock_t),
        "compiled rows/s": len(X) / statistics.median(ours_t),
        "ratio": statistics.median(stock_t) / statistics.median(ours_t),
        "max |Δ raw|": float(np.abs(stock - ours).max()),
        "max |Δ p|": float(np.abs(p_stock - p_ours).max()),
        "tier flips": tier_flips(model, frame, p_stock, p_ours),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trees", type=int, default=0, help="also a model with exactly N trees")
    parser.add_argument("--snapshot", type=Path, default=None)
    args = parser.parse_args()

    ws = Workspace(OUT / "train_172000")
    run = run_synthetic(ws, enterprises=172_000, seed=7)
    config = load_config()
    model = train(ws.validated, config, run.snapshot.path, register=False).model
    frame = population(args.snapshot, args.rows)
    t0 = time.perf_counter()
    X = model.encoder.matrix(frame)
    encode_s = time.perf_counter() - t0
    rows = [compare("default (early stopping)", model, frame, X, args.repeats)]
    if args.trees:
        params = {**model.booster.params}
        params.pop("num_iterations", None)
        params.pop("early_stopping_round", None)
        from training.labels import build_examples

        ex, _ = build_examples(ws.validated, config.splits)
        train_rows = ex[ex["period"] == "train"]
        booster = lgb.train(
            params,
            lgb.Dataset(
                model.encoder.matrix(train_rows),
                label=train_rows["label"],
                categorical_feature=model.encoder.categorical_indices,
            ),
            num_boost_round=args.trees,
        )
        fixed = RiskModel(booster, model.encoder, model.calibrator, model.policy, model.rules)
        rows.append(compare(f"fixed {args.trees} trees", fixed, frame, X, args.repeats))
    print(f"threads {os.cpu_count()}, encoding {len(X):,} rows: {encode_s:.1f} s\n")
    table = pd.DataFrame(rows)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for r in table.itertuples(index=False):
        cells = [
            f"{v:,.0f}"
            if isinstance(v, float) and v > 100
            else f"{v:.3g}"
            if isinstance(v, float)
            else f"{v:,}"
            if isinstance(v, int)
            else str(v)
            for v in r
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
