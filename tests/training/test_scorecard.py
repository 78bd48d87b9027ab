"""The scorecard baseline: readable points that move with risk."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from training.scorecard import POINTS_TO_DOUBLE, Scorecard, quantile_edges


def frame(n: int = 6_000, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {name: rng.poisson(0.3, n).astype(float) for name in FEATURE_NAMES}
    data["industry"] = rng.choice(["C", "H", "I"], n)
    data["region"] = rng.choice(["330102", "330103"], n)
    data["enterprise_type"] = rng.choice(["limited_company", "individual_business"], n)
    data["credit_score_latest"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(700, 50, n))
    df = pd.DataFrame(data)
    logit = -1.5 + 0.9 * df["penalty_count_1y"] + 1.0 * (df["industry"] == "H")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df, y


def test_points_rise_with_the_risk_drivers_and_match_the_logit() -> None:
    df, y = frame()
    sc = Scorecard().fit(df, y)
    table = sc.points_table()
    ind = table[table["feature"] == "industry"].set_index("bin")["points"]
    assert ind["H"] > ind["C"] + 10 and ind["H"] > ind["I"] + 10
    pen = table[table["feature"] == "penalty_count_1y"].set_index("bin")["points"]
    assert list(pen.index) == ["< 1", ">= 1"]  # bins in natural order
    assert pen[">= 1"] > pen["< 1"]
    # total points are the base plus each row's bins; 20 points double the odds
    odds = np.exp(sc.logit(df))
    points = sc.points(df)
    i, j = np.argsort(points)[[10, -10]]
    assert np.isclose((points[j] - points[i]) / POINTS_TO_DOUBLE, np.log2(odds[j] / odds[i]))


def test_missing_values_and_unseen_categories_get_scored() -> None:
    df, y = frame()
    sc = Scorecard().fit(df, y)
    new = df.head(3).copy()
    new.loc[new.index[0], "industry"] = "K"  # never seen
    new.loc[new.index[1], "credit_score_latest"] = np.nan
    p = sc.predict_proba(new)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert set(CATEGORICAL_FEATURES) <= set(sc.categories)


def test_ranks_almost_as_well_as_the_true_risk() -> None:
    from sklearn.metrics import roc_auc_score

    df, y = frame()
    test, yt = frame(seed=2)
    oracle = roc_auc_score(yt, test["penalty_count_1y"] * 0.9 + (test["industry"] == "H"))
    ours = roc_auc_score(yt, Scorecard().fit(df, y).predict_proba(test))
    assert oracle - 0.02 < ours <= oracle + 0.01


def test_a_flag_or_a_mostly_zero_count_keeps_its_rare_values_apart() -> None:
    """Plain quantiles of a value that is 0 for 90 % of enterprises all fall on 0: one bin."""
    rng = np.random.default_rng(3)
    flag = (rng.random(10_000) < 0.1).astype(float)
    assert quantile_edges(flag, 5).tolist() == [1.0]  # "< 1" and ">= 1"
    counts = np.where(rng.random(10_000) < 0.9, 0.0, rng.integers(1, 40, 10_000))
    edges = quantile_edges(counts, 5)
    assert edges[0] == 1.0 and len(edges) == 4 and np.all(np.diff(edges) > 0)
    spread = rng.normal(size=10_000)  # no heavy lowest value: plain quintiles
    assert np.allclose(quantile_edges(spread, 5), np.quantile(spread, [0.2, 0.4, 0.6, 0.8]))
    assert quantile_edges(np.zeros(50), 5).tolist() == [0.0]
    assert quantile_edges(np.array([]), 5).size == 0

    n = 8_000
    x = (rng.random(n) < 0.1).astype(float)
    y = (rng.random(n) < np.where(x == 1, 0.6, 0.1)).astype(int)
    df = pd.DataFrame({"flag": x})
    sc = Scorecard(features=("flag",)).fit(df, y)
    bins = sc.points_table().set_index("bin")["points"]
    assert bins[">= 1"] > bins["< 1"] + 2 * POINTS_TO_DOUBLE
