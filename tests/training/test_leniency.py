"""Tests of training.leniency on simulated inspectors with known strictness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy.special import expit
from scipy.stats import spearmanr

from training.leniency import LENIENCY_COLUMNS, inspector_leniency, penalised_nll, team_design


def _simulate(
    strictness: np.ndarray,
    inspections: int,
    seed: int,
    team_size: int = 2,
) -> pd.DataFrame:
    """Inspections by random teams; problem ~ Bernoulli(sigmoid(offset + team strictness))."""
    rng = np.random.default_rng(seed)
    n_insp = strictness.size
    members = np.stack(
        [rng.choice(n_insp, size=team_size, replace=False) for _ in range(inspections)]
    )
    offset = rng.normal(-1.0, 1.0, inspections)
    eta = offset + strictness[members].sum(axis=1)
    y = (rng.random(inspections) < expit(eta)).astype(int)
    ids = np.array([f"insp{j:03d}" for j in range(n_insp)], dtype=object)
    teams = [";".join(ids[m]) for m in members]
    # an inspector's home department is d<j % 3>, occasionally they help elsewhere
    dept = [f"d{m[0] % 3}" if rng.random() < 0.8 else "d9" for m in members]
    return pd.DataFrame(
        {"label": y, "expected_logit": offset, "inspector_ids": teams, "department": dept}
    )


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    frame = _simulate(rng.normal(0, 1, 15), 300, seed=1, team_size=3)
    design, _ = team_design(frame["inspector_ids"])
    y = frame["label"].to_numpy(dtype=float)
    offset = frame["expected_logit"].to_numpy()
    b0 = rng.normal(0, 1, design.shape[1])
    err = optimize.check_grad(
        lambda b: penalised_nll(b, design, offset, y, 0.7)[0],
        lambda b: penalised_nll(b, design, offset, y, 0.7)[1],
        b0,
    )
    grad_norm = np.linalg.norm(penalised_nll(b0, design, offset, y, 0.7)[1])
    assert err < 1e-5 * max(1.0, grad_norm)
    # the value itself, by hand
    eta = offset + design @ b0
    expected = -np.sum(y * np.log(expit(eta)) + (1 - y) * np.log(1 - expit(eta)))
    assert penalised_nll(b0, design, offset, y, 0.7)[0] == pytest.approx(expected + 0.35 * b0 @ b0)


def test_team_design_parses_and_deduplicates() -> None:
    teams = pd.Series([" a; b", "b", "c;;a;a", None, ""], index=[10, 11, 12, 13, 14])
    design, ids = team_design(teams)
    assert ids.tolist() == ["a", "b", "c"]
    assert design.toarray().tolist() == [
        [1, 1, 0],
        [0, 1, 0],
        [1, 0, 1],
        [0, 0, 0],
        [0, 0, 0],
    ]


def test_recovers_known_strictness() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(0, 0.8, 120)
    frame = _simulate(truth, 30_000, seed=3)  # ~500 inspections per inspector
    out = inspector_leniency(frame)
    assert list(out.columns) == list(LENIENCY_COLUMNS)
    assert len(out) == 120 and out.attrs["converged"]
    assert (np.diff(out["leniency"].to_numpy()) <= 0).all()  # sorted, most lenient first
    true_b = pd.Series(truth, index=[f"insp{j:03d}" for j in range(120)])
    est = out.set_index("inspector_id")["strictness"]
    rho = spearmanr(est, true_b.loc[est.index]).statistic
    assert rho > 0.9
    lenient = out.loc[out["flag"] == "lenient", "inspector_id"]
    strict = out.loc[out["flag"] == "strict", "inspector_id"]
    assert len(lenient) >= 10 and len(strict) >= 10
    assert (true_b.loc[lenient] < 0).all()
    assert (true_b.loc[strict] > 0).all()
    # flags follow the interval of leniency
    assert (out.loc[out["flag"] == "lenient", "ci_low"] > 0).all()
    assert ((out["ci_low"] < out["leniency"]) & (out["leniency"] < out["ci_high"])).all()
    assert np.allclose(out["leniency"], -out["strictness"])


def test_no_inspector_effect_shrinks_to_zero() -> None:
    frame = _simulate(np.zeros(80), 8_000, seed=4)  # ~200 inspections each
    out = inspector_leniency(frame)
    assert abs(out["strictness"].mean()) < 0.05
    assert out["strictness"].abs().max() < 0.6
    assert (out["flag"] != "").mean() <= 0.1  # about 5 % false flags expected
    heavy = inspector_leniency(frame, penalty=1000.0)
    assert heavy["strictness"].abs().max() < 0.05
    assert (heavy["flag"] == "").all()
    # the penalty shrinks: heavier penalty, smaller estimates
    assert heavy["strictness"].abs().sum() < out["strictness"].abs().sum()


def test_counts_department_and_expected_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "label": [1, 0, 1, 0, 1],
            "expected_logit": [0.0, np.log(3), 0.0, 0.0, 0.0],
            "inspector_ids": ["a;b", "a", "b", "c", "a;a"],
            "department": ["x", "y", "y", "z", "y"],
        },
        index=[5, 3, 9, 1, 7],
    )
    out = inspector_leniency(frame).set_index("inspector_id").sort_index()
    assert out["inspections"].tolist() == [3, 2, 1]
    assert out["problems_found"].tolist() == [2, 2, 0]
    assert out["expected_problems"].tolist() == pytest.approx([0.5 + 0.75 + 0.5, 1.0, 0.5])
    assert out["department"].tolist() == ["y", "x", "z"]  # b: x and y once each -> "x"
    assert out.loc["c", "strictness"] < 0 < out.loc["b", "strictness"]


def test_rows_without_team_are_ignored() -> None:
    frame = _simulate(np.array([0.5, -0.5, 0.0]), 300, seed=5)
    extra = pd.DataFrame(
        {"label": [1] * 50, "expected_logit": 0.0, "inspector_ids": [""] * 50, "department": "d"}
    )
    a = inspector_leniency(frame)
    b = inspector_leniency(pd.concat([frame, extra], ignore_index=True))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("penalty", [0.0, -1.0, np.inf])
def test_rejects_non_positive_penalty(penalty: float) -> None:
    frame = _simulate(np.zeros(3), 20, seed=6)
    with pytest.raises(ValueError, match="penalty"):
        inspector_leniency(frame, penalty=penalty)


def test_rejects_bad_labels_and_missing_columns() -> None:
    frame = _simulate(np.zeros(3), 20, seed=6)
    with pytest.raises(ValueError, match="label"):
        inspector_leniency(frame.assign(label=2))
    with pytest.raises(ValueError, match="expected_logit"):
        inspector_leniency(frame.drop(columns="expected_logit"))
    no_dept = inspector_leniency(frame.drop(columns="department"), department=None)
    assert (no_dept["department"] == "").all()


@pytest.mark.slow
def test_scales_to_a_province() -> None:
    """20,000 inspectors x 200,000 inspections: converges with a near-zero gradient."""
    rng = np.random.default_rng(7)
    n_insp, n = 20_000, 200_000
    truth = rng.normal(0, 0.5, n_insp)
    a = rng.integers(0, n_insp, n)
    b = (a + 1 + rng.integers(0, 50, n)) % n_insp
    offset = rng.normal(-1.5, 1, n)
    y = (rng.random(n) < expit(offset + truth[a] + truth[b])).astype(int)
    ids = np.char.add("i", np.arange(n_insp).astype(str)).astype(object)
    frame = pd.DataFrame(
        {
            "label": y,
            "expected_logit": offset,
            "inspector_ids": pd.Series(ids[a]) + ";" + pd.Series(ids[b]),
            "department": "market",
        }
    )
    out = inspector_leniency(frame)
    assert len(out) == n_insp and out.attrs["converged"]
    design, col_ids = team_design(frame["inspector_ids"])
    est = -out.set_index("inspector_id").loc[col_ids, "leniency"].to_numpy()
    _, grad = penalised_nll(est, design, offset, y.astype(float), 1.0)
    assert np.abs(grad).max() < 1e-3
    assert spearmanr(est, truth[pd.Index(ids).get_indexer(col_ids)]).statistic > 0.5
