"""Metrics regulators read: discrimination, calibration, detection at an inspection budget,
the credit-linked draw's expected hit rate, and performance per slice.

Why these and why this way:

* Inspections are not a random sample of enterprises. Targeted inspections go where problems
  are expected, so every metric is computed twice by the callers: on all inspections (the biased
  view) and on random-draw inspections only, weighted by ``1 / selection_probability`` (the
  unbiased, population view). Every function therefore takes an optional ``weight`` (``None``
  means all ones) and treats it as a frequency weight: a row of weight 20 stands for 20
  enterprises.
* Baselines such as expert rules produce only a handful of distinct scores, so "the top 10 %"
  often cuts through a tie group. Detection metrics include the straddling tie group
  fractionally (its expected contribution under random tie-breaking), which makes them
  independent of row order.
* The regulator's headline compares a credit-linked draw (inclusion probability proportional to
  the tier's sampling ratio) with an ordinary uniform draw. It is computed as an exact
  expectation, not a simulation, so reports are reproducible to the last digit.

All functions are pure: numpy/pandas in, plain floats, dataclasses or DataFrames out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

#: Probabilities are clipped to [EPS, 1 - EPS] for the log loss so a confident miss is finite.
EPS = 1e-15

#: Key of ``slice_table(...).attrs`` holding the overall ROC AUC the gaps are measured from.
OVERALL_AUC_ATTR = "overall_roc_auc"


# --------------------------------------------------------------------------------------------
# input checks


def _labels(y: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels are empty")
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("labels must be 0/1 or booleans") from exc
    if not np.all((out == 0) | (out == 1)):
        raise ValueError("labels must be 0/1 or booleans (no missing values)")
    return out


def _scores(score: ArrayLike, n: int, what: str = "scores") -> NDArray[np.float64]:
    arr = np.asarray(score, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{what} have shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite (no missing values)")
    return arr


def _weights(weight: ArrayLike | None, n: int) -> NDArray[np.float64]:
    if weight is None:
        return np.ones(n)
    arr = np.asarray(weight, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"weights have shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("weights must be finite and non-negative")
    if arr.sum() <= 0:
        raise ValueError("weights sum to zero")
    return arr


def _both_classes(y: NDArray[np.float64], w: NDArray[np.float64]) -> bool:
    """Both classes carry positive weight (otherwise ranking metrics are undefined)."""
    return bool((w * y).sum() > 0 and (w * (1 - y)).sum() > 0)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else math.nan


# --------------------------------------------------------------------------------------------
# discrimination and calibration


def binary_metrics(y: ArrayLike, p: ArrayLike, weight: ArrayLike | None = None) -> dict[str, float]:
    """Weighted discrimination and accuracy of probabilities ``p`` for labels ``y``.

    ``n`` and ``positives`` are unweighted row counts (how much evidence there is);
    ``base_rate``, ``roc_auc``, ``pr_auc`` (average precision), ``brier`` and ``log_loss`` use
    the weights. When only one class carries weight the AUCs are NaN rather than an error, so
    small slices can be reported side by side with large ones.
    """
    yv = _labels(y)
    pv = _scores(p, yv.size, "probabilities")
    if np.any((pv < 0) | (pv > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    w = _weights(weight, yv.size)
    total = w.sum()
    if _both_classes(yv, w):
        roc = float(roc_auc_score(yv, pv, sample_weight=w))
        ap = float(average_precision_score(yv, pv, sample_weight=w))
    else:
        roc = ap = math.nan
    pc = np.clip(pv, EPS, 1 - EPS)
    loss = -(w * (yv * np.log(pc) + (1 - yv) * np.log1p(-pc))).sum() / total
    return {
        "n": float(yv.size),
        "positives": float(yv.sum()),
        "base_rate": float((w * yv).sum() / total),
        "roc_auc": roc,
        "pr_auc": ap,
        "brier": float((w * (pv - yv) ** 2).sum() / total),
        "log_loss": float(loss),
    }


def _weighted_quantile_edges(
    p: NDArray[np.float64], w: NDArray[np.float64], bins: int
) -> NDArray[np.float64]:
    """Interior bin edges: the inverted-CDF weighted quantiles of ``p``, deduplicated.

    The edges are data values and bins are right-closed, so a tie group is never split and no
    bin is empty; heavy ties simply give fewer bins.
    """
    order = np.argsort(p, kind="stable")
    ps, cw = p[order], np.cumsum(w[order])
    total = cw[-1]
    levels = np.arange(1, bins) / bins * total
    idx = np.searchsorted(cw, levels * (1 - 1e-12), side="left")
    idx = np.minimum(idx, ps.size - 1)
    edges = np.unique(ps[idx])
    return edges[edges < ps[-1]]


def calibration_table(
    y: ArrayLike, p: ArrayLike, weight: ArrayLike | None = None, bins: int = 10
) -> pd.DataFrame:
    """Reliability table over (weighted) quantile bins of ``p``.

    Columns ``bin, lower, upper, mean_predicted, observed_rate, n, weight``. Bins are
    right-closed ``(lower, upper]`` (the first also holds ``lower``); edges are weighted
    quantiles so each bin carries about the same share of the population. Ties stay together,
    so there may be fewer than ``bins`` rows. Rates are weighted; ``n`` counts rows.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    yv = _labels(y)
    pv = _scores(p, yv.size, "probabilities")
    w = _weights(weight, yv.size)
    edges = _weighted_quantile_edges(pv, w, bins)
    idx = np.searchsorted(edges, pv, side="left")
    k = edges.size + 1
    n = np.bincount(idx, minlength=k)
    sw = np.bincount(idx, weights=w, minlength=k)
    swp = np.bincount(idx, weights=w * pv, minlength=k)
    swy = np.bincount(idx, weights=w * yv, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(sw > 0, swp / sw, np.nan)
        rate = np.where(sw > 0, swy / sw, np.nan)
    lower = np.concatenate([[pv.min()], edges])
    upper = np.concatenate([edges, [pv.max()]])
    return pd.DataFrame(
        {
            "bin": np.arange(k),
            "lower": lower,
            "upper": upper,
            "mean_predicted": mean_p,
            "observed_rate": rate,
            "n": n.astype(np.int64),
            "weight": sw,
        }
    )


def expected_calibration_error(table: pd.DataFrame) -> float:
    """Weight-averaged ``|mean_predicted - observed_rate|`` over the bins of a calibration table.

    Bins without weight are ignored. It is the average distance, in probability, between what
    the model says and what inspectors find.
    """
    gap = (table["mean_predicted"] - table["observed_rate"]).abs().to_numpy(dtype=np.float64)
    w = table["weight"].to_numpy(dtype=np.float64)
    keep = np.isfinite(gap) & (w > 0)
    if not keep.any():
        return math.nan
    return float((w[keep] * gap[keep]).sum() / w[keep].sum())


# --------------------------------------------------------------------------------------------
# detection at an inspection budget


@dataclass(frozen=True)
class DetectionResult:
    """Inspecting the top ``share`` by score versus a random draw of the same size.

    ``selected_weight`` is the inspected weight (``share`` x total weight); rates are the
    expected share of inspections finding a problem; ``lift_pp`` is
    ``100 * (detection_rate - random_rate)`` (percentage points); ``ratio`` is
    ``detection_rate / random_rate`` (NaN when the random rate is 0).
    """

    share: float
    selected_weight: float
    detection_rate: float
    random_rate: float
    lift_pp: float
    ratio: float


def _gain_knots(
    y: ArrayLike, score: ArrayLike, weight: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cumulative (weight, positive weight) at the end of each tie group, best score first.

    Within a tie group the found positives grow linearly with the inspected weight (random
    tie-breaking in expectation), so linear interpolation between these knots is exact.
    """
    yv = _labels(y)
    s = _scores(score, yv.size)
    w = _weights(weight, yv.size)
    uniq, inverse = np.unique(-s, return_inverse=True)  # ascending -s = descending score
    gw = np.bincount(inverse, weights=w, minlength=uniq.size)
    gp = np.bincount(inverse, weights=w * yv, minlength=uniq.size)
    keep = gw > 0
    cum_w = np.concatenate([[0.0], np.cumsum(gw[keep])])
    cum_p = np.concatenate([[0.0], np.cumsum(gp[keep])])
    return cum_w, cum_p


def detection_at_share(
    y: ArrayLike, score: ArrayLike, share: float, weight: ArrayLike | None = None
) -> DetectionResult:
    """Problem-detection rate when inspecting the top ``share`` of (weighted) rows by score.

    The tie group straddling the cut is included fractionally, i.e. the expected result under
    random tie-breaking, so the answer does not depend on row order. ``share`` is a share of
    total weight in ``(0, 1]``. The random baseline's expected rate is the weighted base rate.
    """
    if not (0 < share <= 1):
        raise ValueError(f"share must be in (0, 1], got {share}")
    cum_w, cum_p = _gain_knots(y, score, weight)
    total, positives = cum_w[-1], cum_p[-1]
    budget = share * total
    found = float(np.interp(budget, cum_w, cum_p))
    rate = found / budget
    base = positives / total
    return DetectionResult(
        share=float(share),
        selected_weight=float(budget),
        detection_rate=float(rate),
        random_rate=float(base),
        lift_pp=float(100 * (rate - base)),
        ratio=_ratio(rate, base),
    )


def share_of_problems_found(
    y: ArrayLike, score: ArrayLike, share: float, weight: ArrayLike | None = None
) -> float:
    """Of all problems, the share found by inspecting the top ``share`` by score first.

    "Critical violations found in the first half of the period" is this at ``share=0.5`` when
    inspections are done in score order; ties are split as in ``detection_at_share``.
    """
    if not (0 < share <= 1):
        raise ValueError(f"share must be in (0, 1], got {share}")
    cum_w, cum_p = _gain_knots(y, score, weight)
    found = float(np.interp(share * cum_w[-1], cum_w, cum_p))
    return found / cum_p[-1] if cum_p[-1] > 0 else np.nan


def detection_curve(
    y: ArrayLike, score: ArrayLike, weight: ArrayLike | None = None, points: int = 101
) -> pd.DataFrame:
    """Gain chart: share of problems found against share inspected, at ``points`` even shares.

    Columns ``share_inspected, share_of_problems_found, detection_rate``; ties are handled as
    in ``detection_at_share``. At share 0 the detection rate is its limit, the rate of the
    top-scored tie group. ``share_of_problems_found`` is NaN when there are no positives.
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    cum_w, cum_p = _gain_knots(y, score, weight)
    total, positives = cum_w[-1], cum_p[-1]
    shares = np.linspace(0.0, 1.0, points)
    found = np.interp(shares * total, cum_w, cum_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(shares > 0, found / (shares * total), cum_p[1] / cum_w[1])
        gained = found / positives if positives > 0 else np.full(points, np.nan)
    return pd.DataFrame(
        {"share_inspected": shares, "share_of_problems_found": gained, "detection_rate": rate}
    )


# --------------------------------------------------------------------------------------------
# credit-linked draws


def inclusion_probabilities(
    ratios_per_row: ArrayLike, expected_count: float, *, weight: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Inclusion probabilities ``pi_i = min(1, c * r_i)`` with ``sum(w_i * pi_i) = expected_count``.

    This is how a draw with sampling ratios per tier becomes a probability sample of a fixed
    expected size: rows with larger ratios are proportionally more likely to be drawn until
    they are certain to be (capped at 1), and the freed budget is spread over the rest. Solved
    exactly by sorting (no iteration tolerance). ``weight`` (optional, all ones by default)
    lets one row stand for several identical enterprises.
    """
    r = np.asarray(ratios_per_row, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("ratios_per_row must be a non-empty one-dimensional array")
    if not np.all(np.isfinite(r)):
        raise ValueError("ratios must be finite")
    if np.any(r < 0):
        raise ValueError("ratios must be non-negative")
    w = _weights(weight, r.size)
    m = float(expected_count)
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"expected_count must be > 0, got {expected_count}")
    eligible = float(w[r > 0].sum())
    if m > eligible * (1 + 1e-12):
        raise ValueError(
            f"expected_count {m:g} exceeds the number of rows that can be drawn "
            f"(ratio > 0): {eligible:g}"
        )
    pi = np.zeros_like(r)
    if m >= eligible:
        pi[r > 0] = 1.0
        return pi
    order = np.argsort(-r, kind="stable")
    rs, ws = r[order], w[order]
    capped_w = np.concatenate([[0.0], np.cumsum(ws)])[:-1]  # weight of rows before k
    rest = np.cumsum((ws * rs)[::-1])[::-1]  # sum_{i >= k} w_i r_i
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (m - capped_w) / rest
        ok = (capped_w < m) & (rest > 0) & (c * rs <= 1)
    k = int(np.argmax(ok))  # smallest k: the top k rows are capped at 1
    pi_sorted = np.minimum(1.0, c[k] * rs)
    pi_sorted[:k] = 1.0
    pi[order] = pi_sorted
    return pi


@dataclass(frozen=True)
class DrawComparison:
    """Expected outcome of a tier-weighted draw versus a uniform draw of the same size.

    ``weighted_rate`` / ``uniform_rate`` are the expected shares of drawn enterprises with a
    problem; ``lift_pp`` = ``100 * (weighted_rate - uniform_rate)``; ``ratio`` =
    ``weighted_rate / uniform_rate``; ``tier_shares`` maps each tier of ``sampling_ratio`` (in
    its order) to its expected share of the weighted draw.
    """

    expected_count: float
    weighted_rate: float
    uniform_rate: float
    lift_pp: float
    ratio: float
    tier_shares: dict[str, float]


def tier_weighted_draw(
    y: ArrayLike,
    tiers: ArrayLike,
    sampling_ratio: Mapping[str, float],
    expected_count: float,
    weight: ArrayLike | None = None,
) -> DrawComparison:
    """Exact expected hit rate of a credit-linked draw versus an ordinary uniform draw.

    Each row's inclusion probability is proportional to its tier's sampling ratio (capped at 1,
    see ``inclusion_probabilities``), with ``expected_count`` enterprises drawn in expectation
    (a share of total weight when weighted). The hit rate is ``sum(w pi y) / sum(w pi)``; the
    uniform draw's is the weighted base rate.
    """
    yv = _labels(y)
    t = pd.Series(np.asarray(tiers, dtype=object))
    if t.size != yv.size:
        raise ValueError(f"tiers have {t.size} rows, labels {yv.size}")
    if t.isna().any():
        raise ValueError("tiers contain missing values")
    unknown = sorted(set(t.unique()) - set(sampling_ratio), key=str)
    if unknown:
        raise ValueError(f"tier(s) without a sampling ratio: {', '.join(map(str, unknown))}")
    w = _weights(weight, yv.size)
    ratios = t.map(dict(sampling_ratio)).to_numpy(dtype=np.float64)
    pi = inclusion_probabilities(ratios, expected_count, weight=w)
    drawn = w * pi
    weighted_rate = float((drawn * yv).sum() / drawn.sum())
    uniform_rate = float((w * yv).sum() / w.sum())
    per_tier = pd.Series(drawn).groupby(t.to_numpy()).sum()
    shares = {str(k): float(per_tier.get(k, 0.0) / drawn.sum()) for k in sampling_ratio}
    return DrawComparison(
        expected_count=float(expected_count),
        weighted_rate=weighted_rate,
        uniform_rate=uniform_rate,
        lift_pp=100 * (weighted_rate - uniform_rate),
        ratio=_ratio(weighted_rate, uniform_rate),
        tier_shares=shares,
    )


# --------------------------------------------------------------------------------------------
# slices


def size_band(registered_capital: ArrayLike, enterprise_type: ArrayLike) -> pd.Series:
    """Size band per enterprise from registered capital (10,000 CNY) and legal form.

    ``individual`` for individual businesses (they register no capital), else ``unknown`` when
    capital is missing, ``micro`` < 10, ``small`` < 100, ``medium`` < 1000, ``large`` >= 1000.
    The index is taken from ``registered_capital`` when it is a Series.
    """
    index = registered_capital.index if isinstance(registered_capital, pd.Series) else None
    cap = pd.to_numeric(pd.Series(np.asarray(registered_capital, dtype=object)), errors="coerce")
    cap = cap.to_numpy(dtype=np.float64)
    etype = pd.Series(np.asarray(enterprise_type, dtype=object))
    if etype.shape != cap.shape:
        raise ValueError(f"enterprise_type has shape {etype.shape}, capital {cap.shape}")
    individual = etype.map(lambda v: v == "individual_business" if isinstance(v, str) else False)
    band = np.select(
        [
            individual.to_numpy(dtype=bool),
            np.isnan(cap),
            cap < 10,
            cap < 100,
            cap < 1000,
        ],
        ["individual", "unknown", "micro", "small", "medium"],
        default="large",
    )
    return pd.Series(band, index=index, dtype="str", name="size_band")


def slice_table(
    frame: pd.DataFrame,
    by: str,
    *,
    label: str = "label",
    score: str = "probability",
    weight: str | None = None,
    coverage: str = "coverage",
    share: float = 0.1,
    min_examples: int = 30,
) -> pd.DataFrame:
    """Performance per value of column ``by``: where the model is weaker, or less calibrated.

    One row per slice (sorted by slice value, missing last) with ``slice, n, positives,
    base_rate, mean_predicted, calibration_gap, roc_auc, detection_rate_at_share, lift_pp,
    coverage, largest_gap``. Rates are weighted by column ``weight`` (if given); ``roc_auc`` is
    NaN for slices with fewer than ``min_examples`` rows or one class; ``detection_rate_at_share``
    and ``lift_pp`` compare the slice's top ``share`` with the slice's base rate; ``coverage`` is
    the weighted mean of column ``coverage`` (NaN if the column is absent). ``largest_gap``
    marks the one slice (among those with an AUC) furthest from the overall AUC (ties: first
    slice). The overall AUC is stored in ``table.attrs["overall_roc_auc"]`` (see
    ``fairness_gap``).
    """
    for col in (by, label, score, *([weight] if weight else [])):
        if col not in frame.columns:
            raise ValueError(f"column {col!r} not in frame")
    y_all = _labels(frame[label].to_numpy())
    s_all = _scores(frame[score].to_numpy(), y_all.size)
    w_all = _weights(None if weight is None else frame[weight].to_numpy(), y_all.size)
    cov_all = frame[coverage].to_numpy(dtype=np.float64) if coverage in frame.columns else None
    overall = (
        float(roc_auc_score(y_all, s_all, sample_weight=w_all))
        if _both_classes(y_all, w_all)
        else math.nan
    )
    rows = []
    groups = pd.Series(np.arange(y_all.size)).groupby(frame[by].to_numpy(), sort=True, dropna=False)
    for value, idx_series in groups:
        idx = idx_series.to_numpy()
        y, s, w = y_all[idx], s_all[idx], w_all[idx]
        sw = w.sum()
        base = float((w * y).sum() / sw) if sw > 0 else math.nan
        mean_p = float((w * s).sum() / sw) if sw > 0 else math.nan
        auc = (
            float(roc_auc_score(y, s, sample_weight=w))
            if idx.size >= min_examples and _both_classes(y, w)
            else math.nan
        )
        if sw > 0:
            det = detection_at_share(y, s, share, weight=w)
            det_rate, lift = det.detection_rate, det.lift_pp
        else:
            det_rate = lift = math.nan
        cov = math.nan
        if cov_all is not None:
            c = cov_all[idx]
            ok = np.isfinite(c) & (w > 0)
            cov = float((w[ok] * c[ok]).sum() / w[ok].sum()) if ok.any() else math.nan
        rows.append(
            {
                "slice": value,
                "n": int(idx.size),
                "positives": int(y.sum()),
                "base_rate": base,
                "mean_predicted": mean_p,
                "calibration_gap": mean_p - base,
                "roc_auc": auc,
                "detection_rate_at_share": det_rate,
                "lift_pp": lift,
                "coverage": cov,
            }
        )
    table = pd.DataFrame(rows)
    gaps = (table["roc_auc"] - overall).abs()
    table["largest_gap"] = False
    if gaps.notna().any():
        table.loc[gaps.idxmax(), "largest_gap"] = True
    table.attrs[OVERALL_AUC_ATTR] = overall
    table.attrs["by"] = by
    table.attrs["share"] = share
    table.attrs["min_examples"] = min_examples
    return table


def fairness_gap(table: pd.DataFrame, overall: float | None = None) -> float:
    """Largest ``|slice roc_auc - overall roc_auc|`` over slices that have an AUC.

    ``overall`` defaults to ``table.attrs["overall_roc_auc"]``, which ``slice_table`` sets
    (pass it explicitly for a table that lost its attrs). Slices with NaN AUC (too few examples
    or one class) are not eligible; NaN when none is.
    """
    if overall is None:
        if OVERALL_AUC_ATTR not in table.attrs:
            raise ValueError(
                f"no overall AUC: pass overall= or use a table with attrs[{OVERALL_AUC_ATTR!r}]"
            )
        overall = table.attrs[OVERALL_AUC_ATTR]
    gaps = (table["roc_auc"] - float(overall)).abs().dropna()
    return float(gaps.max()) if not gaps.empty else math.nan
