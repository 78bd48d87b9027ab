"""Side-by-side comparison: the fast bootstrap figures equal the reference metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.comparison import _Ranked, compare_models, paired_bootstrap
from training.evaluate import binary_metrics, detection_at_share


def data(n: int = 3_000, seed: int = 5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(z - 1)))).astype(int)
    examples = pd.DataFrame(
        {"label": y, "selection": np.where(rng.random(n) < 0.5, "random", "targeted")}
    )
    scores = {
        "good": 1 / (1 + np.exp(-z)),
        "tied": np.round(1 / (1 + np.exp(-z)), 1),  # few distinct values, like rule tiers
        "noise": rng.random(n),
    }
    ipw = np.where(examples["selection"] == "random", rng.uniform(5, 20, n), 1.0)
    return examples, scores, ipw


@pytest.mark.parametrize("name", ["good", "tied", "noise"])
def test_fast_figures_equal_the_reference_metrics(name: str) -> None:
    examples, scores, ipw = data()
    y = examples["label"].to_numpy().astype(float)
    auc, det = _Ranked(scores[name]).figures(y, ipw, 0.1)
    assert auc == pytest.approx(binary_metrics(y, scores[name], weight=ipw)["roc_auc"], abs=1e-12)
    ref = detection_at_share(y, scores[name], 0.1, weight=ipw).detection_rate
    assert det == pytest.approx(ref, abs=1e-12)


def test_bootstrap_separates_a_real_difference_from_none() -> None:
    examples, scores, ipw = data()
    table = paired_bootstrap(examples, scores, ipw, share=0.1, reference="good", rounds=200)
    t = table.set_index(["baseline", "metric"])
    assert t.loc[("noise", "roc_auc"), "ci_low"] > 0.1  # clearly better than noise
    assert t.loc[("noise", "roc_auc"), "wins"] == 1.0
    same = paired_bootstrap(
        examples,
        {"good": scores["good"], "copy": scores["good"].copy()},
        ipw,
        share=0.1,
        reference="good",
        rounds=50,
    )
    assert (same["difference"] == 0).all() and (same["ci_low"] == 0).all()
    # the point estimate is the plain difference on the random view
    table_all = compare_models(examples, scores, ipw, share=0.1)
    r = table_all[table_all["view"] == "random"].set_index("model")["roc_auc"]
    assert t.loc[("noise", "roc_auc"), "difference"] == pytest.approx(r["good"] - r["noise"])
