"""The white-box baseline: binned features, a logistic regression, points per bin.

Why: regulators know scorecards; a model that cannot beat one on the same split has not earned
its opacity. Each feature is cut into at most ``max_bins`` quantile bins learned on the training
period (plus a bin for missing values; categories keep their own bins, rare ones pooled), the
bins are one-hot encoded and a ridge logistic regression gives each bin a weight. Points are
the weights on a readable scale: ``POINTS_AT_EVEN_ODDS`` points mean even odds of a problem and
every ``POINTS_TO_DOUBLE`` points double the odds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES

POINTS_AT_EVEN_ODDS = 500.0
POINTS_TO_DOUBLE = 20.0
_FACTOR = POINTS_TO_DOUBLE / math.log(2)


def quantile_edges(x: np.ndarray, max_bins: int) -> np.ndarray:
    """Inner bin edges: quantiles of ``x``, except that a lowest value holding at least one
    bin's share (counts that are mostly 0, flags) gets a bin of its own and the values above
    it are cut by their own quantiles — plain quantiles would all fall on that value and leave
    the feature a single bin, however much its rarer values say about risk."""
    if not len(x):
        return np.array([], dtype=np.float64)
    lowest = x.min()
    above = x[x > lowest]
    if len(above) and (len(x) - len(above)) / len(x) >= 1 / max_bins:
        inner = np.quantile(above, np.linspace(0, 1, max_bins)[1:-1]) if max_bins > 2 else []
        return np.unique(np.asarray([above.min(), *inner], dtype=np.float64))
    qs = np.quantile(x, np.linspace(0, 1, max_bins + 1)[1:-1])
    return np.unique(np.asarray(qs, dtype=np.float64))


@dataclass
class Scorecard:
    max_bins: int = 5
    min_category_share: float = 0.01
    c: float = 0.5
    features: tuple[str, ...] = FEATURE_NAMES
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    columns: list[tuple[str, str]] = field(default_factory=list)
    coef: np.ndarray | None = None
    intercept: float = 0.0

    def _bin_labels(self, name: str, values: pd.Series) -> pd.Series:
        """The bin of each value, as a readable label ("[1, 3)", "missing", a category...)."""
        if name in self.categories:
            known = self.categories[name]
            v = values.astype(object)
            out = np.where(v.isin(known), v, np.where(v.isna(), "missing", "other"))
            return pd.Series(out, index=values.index, dtype=object)
        x = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
        e = self.edges[name]
        if len(e):
            inner = [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(e)]
            labels = np.array([f"< {e[0]:g}", *inner, f">= {e[-1]:g}"], dtype=object)
            out = labels[np.searchsorted(e, x, side="right")]
        else:
            out = np.full(len(x), "all", dtype=object)
        out = np.where(np.isnan(x), "missing", out)
        return pd.Series(out, index=values.index, dtype=object)

    def _ordered_labels(self, name: str) -> list[str]:
        """Every possible bin of a feature, low to high (categories in vocabulary order)."""
        if name in self.categories:
            return [*self.categories[name], "other", "missing"]
        e = self.edges[name]
        if not len(e):
            return ["all", "missing"]
        inner = [f"[{lo:g}, {hi:g})" for lo, hi in itertools.pairwise(e)]
        return [f"< {e[0]:g}", *inner, f">= {e[-1]:g}", "missing"]

    def _design(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        """One-hot bins; a bin never seen in training gets no column (weight 0)."""
        rows, cols = [], []
        for name in self.features:
            lookup = {b: j for j, (f, b) in enumerate(self.columns) if f == name}
            idx = self._bin_labels(name, frame[name]).map(lookup).to_numpy(np.float64)
            ok = ~np.isnan(idx)
            rows.append(np.flatnonzero(ok))
            cols.append(idx[ok].astype(np.int64))
        r, c = np.concatenate(rows), np.concatenate(cols)
        return sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(frame), len(self.columns)))

    def fit(self, frame: pd.DataFrame, label: np.ndarray, weight: np.ndarray | None = None):
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        for name in self.features:
            if name in CATEGORICAL_FEATURES:
                share = frame[name].value_counts(normalize=True)
                self.categories[name] = tuple(sorted(share[share >= self.min_category_share].index))
            else:
                x = pd.to_numeric(frame[name]).to_numpy(dtype=np.float64, na_value=np.nan)
                self.edges[name] = quantile_edges(x[~np.isnan(x)], self.max_bins)
        self.columns = [
            (name, lab)
            for name in self.features
            for lab in self._ordered_labels(name)
            if lab in set(self._bin_labels(name, frame[name]).unique())
        ]
        lr = LogisticRegression(C=self.c, solver="lbfgs", max_iter=1000, tol=1e-6)
        lr.fit(self._design(frame), label, sample_weight=w)
        self.coef = lr.coef_[0].copy()
        self.intercept = float(lr.intercept_[0])
        return self

    def logit(self, frame: pd.DataFrame) -> np.ndarray:
        return self._design(frame) @ self.coef + self.intercept

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(frame)))

    def points(self, frame: pd.DataFrame) -> np.ndarray:
        """Total risk points: more points, more risk (see the module docstring for the scale)."""
        return POINTS_AT_EVEN_ODDS + _FACTOR * self.logit(frame)

    def points_table(self) -> pd.DataFrame:
        """Points per feature bin, plus the base points every enterprise starts from."""
        rows = [("(base)", "", POINTS_AT_EVEN_ODDS + _FACTOR * self.intercept)]
        rows += [(f, b, _FACTOR * c) for (f, b), c in zip(self.columns, self.coef, strict=True)]
        table = pd.DataFrame(rows, columns=["feature", "bin", "points"])
        table["points"] = table["points"].round(1)
        return table
