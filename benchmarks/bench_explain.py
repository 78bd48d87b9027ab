"""SHAP contributions throughput: the fast exact path vs LightGBM's ``pred_contrib``, same model.

Trains the default model on the 172k-enterprise benchmark province exactly as
``bench_scoring.py`` does (seed 7; ``--enterprises`` for another size, e.g. 20000 for a
``riskctl demo``-size province), encodes ``--rows`` population-snapshot rows (default: the
1M-enterprise benchmark province's snapshot, tiled if needed) and explains them with both paths,
alternating them ``--repeats`` times in one process, both on all cores. Stock LightGBM explains
about a thousand rows/s here, so it is timed on the first ``--stock-rows`` rows only; the fast
path is timed on those same rows *and* on all rows. Reports median rows/s, the ratio, the
largest absolute difference from ``pred_contrib`` and from the raw score (additivity), and
enterprises per second with their top-5 reasons up and down (contributions + ``top_k``).
``--trees 500`` adds a model with exactly 500 trees (no early stopping).

    .venv/bin/python benchmarks/bench_explain.py --rows 100000 --stock-rows 5000 --trees 500

The trained model and encoded rows are kept under ``benchmarks/.out/explain/`` and reused on
the next run (``--retrain`` rebuilds them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from training.explain.contributions import _tables, contributions, stock_contributions, top_k

OUT = Path(__file__).parent / ".out"
CACHE = OUT / "explain"


def prepare(enterprises: int, rows: int, trees: int, retrain: bool) -> dict[str, tuple]:
    """{name: (booster, X)}; trained like bench_scoring.py, cached under .out/explain."""
    tag = f"e{enterprises}_r{rows}"
    X_path = CACHE / f"X_{tag}.npy"
    names = {"default (early stopping)": CACHE / f"model_e{enterprises}.txt"}
    if trees:
        names[f"fixed {trees} trees"] = CACHE / f"model_e{enterprises}_t{trees}.txt"
    if retrain or not X_path.exists() or not all(p.exists() for p in names.values()):
        _train_and_encode(enterprises, rows, trees, X_path, list(names.values()))
    X = np.load(X_path)
    return {name: (lgb.Booster(model_file=str(path)), X) for name, path in names.items()}


def _train_and_encode(
    enterprises: int, rows: int, trees: int, X_path: Path, paths: list[Path]
) -> None:
    from bench_scoring import population

    from features.pipeline import run_synthetic
    from features.workspace import Workspace
    from training.config import load_config
    from training.labels import build_examples
    from training.train import train

    CACHE.mkdir(parents=True, exist_ok=True)
    ws = Workspace(OUT / f"train_{enterprises}")
    run = run_synthetic(ws, enterprises=enterprises, seed=7)
    config = load_config()
    model = train(ws.validated, config, run.snapshot.path, register=False).model
    model.booster.save_model(str(paths[0]))
    np.save(X_path, model.encoder.matrix(population(None, rows)))
    if trees:  # same parameters, exactly ``trees`` rounds (as bench_scoring.py --trees)
        params = {**model.booster.params}
        params.pop("num_iterations", None)
        params.pop("early_stopping_round", None)
        ex, _ = build_examples(ws.validated, config.splits)
        train_rows = ex[ex["period"] == "train"]
        data = lgb.Dataset(
            model.encoder.matrix(train_rows),
            label=train_rows["label"],
            categorical_feature=model.encoder.categorical_indices,
        )
        lgb.train(params, data, num_boost_round=trees).save_model(str(paths[1]))


def compare(name: str, booster: lgb.Booster, X: np.ndarray, stock_rows: int, repeats: int) -> dict:
    threads = os.cpu_count() or 1
    sub = X[:stock_rows]
    t0 = time.perf_counter()
    tables = _tables(booster)  # parse + per-leaf tables, once per model
    build_s = time.perf_counter() - t0
    contributions(booster, X[:100], threads=threads)  # numba compile (cached on disk)
    stock_t, fast_sub_t, fast_t, reasons_t = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stock = stock_contributions(booster, sub, threads=threads)
        stock_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fast_sub = contributions(booster, sub, threads=threads)
        fast_sub_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fast = contributions(booster, X, threads=threads)
        fast_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        top_k(fast.values, 5)
        reasons_t.append(fast_t[-1] + time.perf_counter() - t0)
    assert fast.path == fast_sub.path == "fast", fast.path
    t0 = time.perf_counter()
    top_k(stock.values, 5)
    stock_reasons_s = statistics.median(stock_t) + time.perf_counter() - t0
    raw = booster.predict(X, raw_score=True, num_threads=threads)
    depth = np.diff(tables.slot_start)
    return {
        "model": name,
        "trees": booster.num_trees(),
        "leaves ≤": int(max(np.diff(tables.leaf_start).max(), 1)),
        "path features ≤": int(depth.max()) if len(depth) else 0,
        "tables (s)": build_s,
        "stock rows": len(sub),
        "stock rows/s": len(sub) / statistics.median(stock_t),
        "fast rows/s (same rows)": len(sub) / statistics.median(fast_sub_t),
        "ratio (same rows)": statistics.median(stock_t) / statistics.median(fast_sub_t),
        "fast rows": len(X),
        "fast rows/s": len(X) / statistics.median(fast_t),
        "ratio": (len(X) / statistics.median(fast_t)) / (len(sub) / statistics.median(stock_t)),
        "max |Δ| vs pred_contrib": float(np.abs(fast_sub.values - stock.values).max()),
        "max |base+Σ − raw|": float(np.abs(fast.base_value + fast.values.sum(axis=1) - raw).max()),
        "stock enterprises/s with top-5": len(sub) / stock_reasons_s,
        "fast enterprises/s with top-5": len(X) / statistics.median(reasons_t),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=172_000, help="training province")
    parser.add_argument("--rows", type=int, default=100_000, help="population rows explained")
    parser.add_argument("--stock-rows", type=int, default=5_000, help="rows stock is timed on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", type=int, default=0, help="also a model with exactly N trees")
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args()

    models = prepare(args.enterprises, args.rows, args.trees, args.retrain)
    rows = [
        compare(name, booster, X, args.stock_rows, args.repeats)
        for name, (booster, X) in models.items()
    ]
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "bench_explain.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    print(f"threads {os.cpu_count()}, repeats {args.repeats} (medians)\n")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(_cell(r[c]) for c in cols) + " |")


def _cell(v: object) -> str:
    if isinstance(v, float):
        if v == 0 or abs(v) < 1e-3:
            return f"{v:.1e}"
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


if __name__ == "__main__":
    main()
