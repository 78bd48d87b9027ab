"""SHAP contributions of the LightGBM model, in log-odds (the trees' raw score).

Why log-odds: TreeSHAP is exact and additive in the space the trees add up in; the calibrated
probability is a monotone map of that raw score, so a reason that raises the raw score raises
the probability shown. ``base_value`` plus a row's contributions equals its raw score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightgbm as lgb
import numpy as np

Path = Literal["fast", "lightgbm"]


@dataclass(frozen=True)
class Contributions:
    #: One row per enterprise, one column per model feature (log-odds).
    values: np.ndarray
    #: The model's expected raw score; the same for every row.
    base_value: float
    #: Which implementation computed them ("lightgbm" is the stock ``pred_contrib``).
    path: Path


def stock_contributions(booster: lgb.Booster, X: np.ndarray, *, threads: int | None = None) -> Contributions:
    """LightGBM's own TreeSHAP (``pred_contrib``): the reference every faster path must equal."""
    params = {} if threads is None else {"num_threads": threads}
    out = np.asarray(booster.predict(X, pred_contrib=True, **params), dtype=np.float64)
    out = out.reshape(len(X), -1)
    base = float(out[0, -1]) if len(out) else _base_value(booster, X)
    return Contributions(values=np.ascontiguousarray(out[:, :-1]), base_value=base, path="lightgbm")


def _base_value(booster: lgb.Booster, X: np.ndarray) -> float:
    probe = np.full((1, booster.num_feature()), np.nan)
    return float(booster.predict(probe, pred_contrib=True)[0, -1])


def contributions(
    booster: lgb.Booster,
    X: np.ndarray,
    *,
    accelerated: bool = True,
    threads: int | None = None,
) -> Contributions:
    """Exact SHAP contributions of every row of ``X`` (the encoded feature matrix)."""
    return stock_contributions(booster, X, threads=threads)


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices of the ``k`` largest positive and ``k`` most negative contributions per
    row, strongest first; ``-1`` pads rows with fewer than ``k`` in a direction."""
    n, m = values.shape
    k_eff = min(k, m)
    up = np.full((n, k), -1, dtype=np.int64)
    down = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or k_eff == 0:
        return up, down
    # Stable order: ties broken by column index so the same row always gives the same codes.
    order_up = np.argsort(-values, axis=1, kind="stable")[:, :k_eff]
    order_down = np.argsort(values, axis=1, kind="stable")[:, :k_eff]
    rows = np.arange(n)[:, None]
    up[:, :k_eff] = np.where(values[rows, order_up] > 0, order_up, -1)
    down[:, :k_eff] = np.where(values[rows, order_down] < 0, order_down, -1)
    return up, down
