"""Inspector leniency: how much more (or fewer) problems a team finds than the model expects.

Why: whether an inspection "finds a problem" depends on the enterprise *and* on who inspects.
Inspector identity must never be a predictor of an enterprise's risk (an enterprise cannot
choose its inspectors, and scoring it on them would be unfair), but the regulator needs to
know which inspectors are unusually lenient or strict: it distorts the labels the model learns
from and it is a supervision matter in its own right.

Model: for inspection ``i`` by team ``T(i)`` (one or more inspectors, ids separated by ``;``)

    y_i ~ Bernoulli(sigmoid(offset_i + sum_{j in T(i)} b_j))

where ``offset_i`` is the risk model's expected logit (fixed, so enterprise risk is not
attributed to inspectors) and ``b_j`` is inspector ``j``'s strictness. The ``b_j`` get an L2
penalty ``penalty / 2 * sum b_j^2``, i.e. a Gaussian random effect with variance
``1 / penalty``: inspectors with few inspections are shrunk towards 0 instead of being flagged
on noise. The exact penalised log-likelihood and its gradient are minimised with L-BFGS over a
sparse inspection x inspector design, which scales to 20,000 inspectors x 200,000 inspections.
Intervals use the diagonal of the penalised Hessian (an approximation that ignores the
correlation between team mates).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import optimize, sparse
from scipy.special import expit

#: Two-sided 95 % normal quantile for the approximate intervals.
Z95 = 1.959963984540054

LENIENCY_COLUMNS = (
    "inspector_id",
    "department",
    "inspections",
    "problems_found",
    "expected_problems",
    "strictness",
    "leniency",
    "ci_low",
    "ci_high",
    "flag",
)


def team_design(teams: pd.Series) -> tuple[sparse.csr_matrix, NDArray[np.object_]]:
    """Sparse 0/1 matrix (inspections x inspectors) from ``;``-separated team strings.

    Ids are stripped, empty ids ignored and an inspector listed twice on a team counts once.
    Columns follow the sorted inspector ids, returned alongside.
    """
    positional = pd.Series(teams.to_numpy(dtype=object)).fillna("").astype("str")
    parts = positional.str.split(";").explode().str.strip()
    parts = parts[parts.notna() & (parts != "")]
    row_pos = parts.index.to_numpy(dtype=np.int64)
    codes, ids = pd.factorize(parts.to_numpy(dtype=object), sort=True)
    design = sparse.coo_matrix(
        (np.ones(codes.size), (row_pos, codes)), shape=(len(teams), ids.size)
    ).tocsr()
    design.sum_duplicates()
    design.data[:] = 1.0
    return design, np.asarray(ids, dtype=object)


def penalised_nll(
    b: NDArray[np.float64],
    design: sparse.csr_matrix,
    offset: NDArray[np.float64],
    y: NDArray[np.float64],
    penalty: float,
) -> tuple[float, NDArray[np.float64]]:
    """Penalised negative log-likelihood and its gradient in ``b``.

    ``sum_i [log(1 + exp(eta_i)) - y_i eta_i] + penalty / 2 * ||b||^2`` with
    ``eta = offset + design @ b``; gradient ``design.T @ (sigmoid(eta) - y) + penalty * b``.
    """
    eta = offset + design @ b
    value = float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * penalty * (b @ b))
    grad = design.T @ (expit(eta) - y) + penalty * b
    return value, np.asarray(grad, dtype=np.float64)


def _main_department(
    design: sparse.csr_matrix, departments: pd.Series, n_inspectors: int
) -> NDArray[np.object_]:
    """Most frequent department per inspector (ties: alphabetically first)."""
    coo = design.tocoo()
    pairs = pd.DataFrame(
        {
            "inspector": coo.col,
            "department": departments.to_numpy(dtype=object)[coo.row],
        }
    ).dropna()
    pairs["department"] = pairs["department"].astype("str")
    counted = pairs.groupby(["inspector", "department"], sort=False).size().rename("k")
    counted = counted.reset_index().sort_values(
        ["inspector", "k", "department"], ascending=[True, False, True], kind="stable"
    )
    first = counted.drop_duplicates("inspector")
    out = np.full(n_inspectors, "", dtype=object)
    out[first["inspector"].to_numpy()] = first["department"].to_numpy(dtype=object)
    return out


def inspector_leniency(
    frame: pd.DataFrame,
    *,
    label: str = "label",
    expected: str = "expected_logit",
    team: str = "inspector_ids",
    department: str | None = "department",
    penalty: float = 1.0,
) -> pd.DataFrame:
    """Estimated strictness of every inspector, with approximate 95 % intervals and flags.

    ``frame`` has one row per inspection: ``label`` (0/1 problem found), ``expected`` (the
    risk model's logit for that enterprise at that date, used as a fixed offset), ``team``
    (``;``-separated inspector ids) and optionally ``department``. Rows without any inspector
    carry no information about inspectors and are ignored.

    Returns one row per inspector, sorted by ``leniency`` descending (ties by id):
    ``inspector_id, department`` (most frequent), ``inspections, problems_found,
    expected_problems`` (sum of ``sigmoid(offset)``), ``strictness`` (``b_j``), ``leniency``
    (``-b_j``), ``ci_low, ci_high`` (95 % interval **of leniency**) and ``flag``: "lenient" when
    the interval is above 0, "strict" when below, else "". ``attrs`` holds ``penalty``,
    ``converged``, ``iterations`` and ``objective``.
    """
    if not (penalty > 0 and math.isfinite(penalty)):
        raise ValueError(f"penalty must be a positive number, got {penalty}")
    needed = [label, expected, team, *([department] if department else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"columns not in frame: {', '.join(missing)}")
    y = frame[label].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"column {label!r} must be 0/1 without missing values")
    offset = frame[expected].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.all(np.isfinite(offset)):
        raise ValueError(f"column {expected!r} must be finite without missing values")

    teams = frame[team].reset_index(drop=True)
    design, ids = team_design(teams)
    has_team = np.diff(design.indptr) > 0
    design, y, offset = design[has_team], y[has_team], offset[has_team]
    n_inspectors = ids.size

    result = optimize.minimize(
        penalised_nll,
        np.zeros(n_inspectors),
        args=(design, offset, y, penalty),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-7, "ftol": 1e-12},
    )
    if not result.success:
        warnings.warn(
            f"inspector leniency fit did not converge: {result.message}",
            RuntimeWarning,
            stacklevel=2,
        )
    b = result.x
    eta = offset + design @ b
    mu = expit(eta)
    hess_diag = design.T @ (mu * (1 - mu)) + penalty
    se = 1.0 / np.sqrt(hess_diag)
    leniency = -b
    ci_low, ci_high = leniency - Z95 * se, leniency + Z95 * se
    flag = np.where(ci_low > 0, "lenient", np.where(ci_high < 0, "strict", ""))

    dept = (
        _main_department(design, frame[department].reset_index(drop=True)[has_team], n_inspectors)
        if department
        else np.full(n_inspectors, "", dtype=object)
    )
    out = pd.DataFrame(
        {
            "inspector_id": pd.array(ids, dtype="str"),
            "department": pd.array(dept, dtype="str"),
            "inspections": np.diff(design.tocsc().indptr).astype(np.int64),
            "problems_found": np.rint(design.T @ y).astype(np.int64),
            "expected_problems": design.T @ expit(offset),
            "strictness": b,
            "leniency": leniency,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "flag": pd.array(flag, dtype="str"),
        }
    )
    out = out.sort_values(
        ["leniency", "inspector_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    out.attrs.update(
        penalty=float(penalty),
        converged=bool(result.success),
        iterations=int(result.nit),
        objective=float(result.fun),
    )
    return out
