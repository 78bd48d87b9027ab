"""SHAP figures for auditors: summary (beeswarm), dependence, waterfall, importance.

Why SHAP's own plots: auditors and data scientists know them, and they read the same
``shap.Explanation`` whatever computed the numbers. SHAP draws through pyplot's global state,
so each figure is made under a lock, rendered to PNG bytes and closed. Outside notebooks pyplot
runs on the file backend (a server or CLI must never open a window); a notebook keeps its inline
backend, and pyplot's interactive mode, which SHAP's plots switch off, is restored after each
figure.
"""

from __future__ import annotations

import io
import sys
import threading

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shap

_LOCK = threading.Lock()


def explanation(values: np.ndarray, base_value: float, data: pd.DataFrame) -> shap.Explanation:
    """SHAP's container for our contributions (log-odds) and the encoded feature values."""
    return shap.Explanation(
        values=np.asarray(values, dtype=float),
        base_values=np.full(len(values), base_value),
        data=data.to_numpy(dtype=float),
        feature_names=list(data.columns),
    )


def _png(draw, size: tuple[float, float]) -> bytes:
    with _LOCK:
        interactive = plt.isinteractive()
        fig = plt.figure(figsize=size)
        try:
            draw()
            fig = plt.gcf()
            fig.set_size_inches(*size)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
            return buf.getvalue()
        finally:
            plt.close("all")
            plt.interactive(interactive)


def summary_png(expl: shap.Explanation, max_display: int = 15) -> bytes:
    """Beeswarm: every enterprise a dot per feature, coloured by the feature's value."""
    return _png(lambda: shap.plots.beeswarm(expl, max_display=max_display, show=False), (9, 7))


def dependence_png(expl: shap.Explanation, feature: str) -> bytes:
    """How one feature's value maps to its contribution, across the population sample."""
    return _png(lambda: shap.plots.scatter(expl[:, feature], show=False, ax=plt.gca()), (6.5, 4.5))


def waterfall_png(expl_row: shap.Explanation, max_display: int = 12) -> bytes:
    """From the base value to this enterprise's score, one feature at a time."""
    return _png(lambda: shap.plots.waterfall(expl_row, max_display=max_display, show=False), (9, 6))


def importance_png(mean_abs: pd.Series, gain: pd.Series) -> bytes:
    """Mean |SHAP| (what moves scores) next to LightGBM's split gain (what the trees used)."""

    def draw() -> None:
        order = mean_abs.sort_values().index
        ax1 = plt.subplot(1, 2, 1)
        ax1.barh(order, mean_abs[order], color="#0072B2")
        ax1.set_title("mean |SHAP| (log-odds)")
        ax2 = plt.subplot(1, 2, 2, sharey=ax1)
        ax2.barh(order, gain.reindex(order).fillna(0) / max(gain.sum(), 1e-12), color="#E69F00")
        ax2.set_title("share of split gain")
        plt.setp(ax2.get_yticklabels(), visible=False)
        plt.tight_layout()

    return _png(draw, (11, 8))
