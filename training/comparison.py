"""Models side by side on the same out-of-time inspections, in two views.

Why two views: targeted inspections are not a random sample — they go where a complaint or a
penalty points, so they find more problems and flatter any model that ranks like the
targeting. The *random* view keeps only random-draw inspections, weighted by 1/p, which
estimates what the model would do on the population a draw samples from; it is the view
regulators should read. The *all* view (every inspection, unweighted) is shown beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from training.evaluate import (
    binary_metrics,
    calibration_table,
    detection_at_share,
    expected_calibration_error,
    slice_table,
    tier_weighted_draw,
)

VIEWS: dict[str, str] = {
    "random": "random-draw inspections only, weighted by 1/p: the unbiased view",
    "all": "all inspections, unweighted: biased towards what targeting finds",
}


def view(examples: pd.DataFrame, name: str, ipw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row mask and weights of one view."""
    if name == "random":
        mask = (examples["selection"] == "random").to_numpy()
        return mask, ipw[mask]
    if name == "all":
        return np.ones(len(examples), dtype=bool), np.ones(len(examples))
    raise ValueError(f"unknown view {name!r}; expected one of {sorted(VIEWS)}")


def compare_models(
    examples: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    ipw: np.ndarray,
    *,
    share: float,
    probabilistic: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """One row per model and view: AUCs, Brier (probabilistic models only), detection rate.

    Detection compares inspecting the top ``share`` by the model's score with a random draw of
    the same size (whose expected rate is the view's base rate); ties, as in the rule tiers,
    are split fractionally, so the rule baseline is not flattered or penalised by row order.
    """
    y_all = examples["label"].to_numpy()
    rows = []
    for view_name in VIEWS:
        mask, w = view(examples, view_name, ipw)
        y = y_all[mask]
        for name, score in scores.items():
            s = np.asarray(score, dtype=np.float64)[mask]
            m = binary_metrics(y, s, weight=w)
            det = detection_at_share(y, s, share, weight=w)
            rows.append(
                {
                    "view": view_name,
                    "model": name,
                    "inspections": int(mask.sum()),
                    "base_rate": m["base_rate"],
                    "roc_auc": m["roc_auc"],
                    "pr_auc": m["pr_auc"],
                    "brier": m["brier"] if name in probabilistic else np.nan,
                    "ece": (
                        expected_calibration_error(calibration_table(y, s, weight=w))
                        if name in probabilistic
                        else np.nan
                    ),
                    "detection_rate": det.detection_rate,
                    "random_draw_rate": det.random_rate,
                    "lift_pp": det.lift_pp,
                }
            )
    return pd.DataFrame(rows)


class _Ranked:
    """One model's scores grouped into tie groups, best first, so that the ROC-AUC and the
    detection rate of any re-weighting of the rows cost two ``bincount`` calls."""

    def __init__(self, score: np.ndarray) -> None:
        uniq, self.group = np.unique(-score, return_inverse=True)
        self.groups = uniq.size

    def figures(self, y: np.ndarray, w: np.ndarray, share: float) -> tuple[float, float]:
        pos = np.bincount(self.group, weights=w * y, minlength=self.groups)
        neg = np.bincount(self.group, weights=w * (1 - y), minlength=self.groups)
        # AUC: each positive beats the negatives ranked below it, ties count half
        below = neg.sum() - np.cumsum(neg)
        auc = float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))
        cum_w = np.concatenate([[0.0], np.cumsum(pos + neg)])
        cum_p = np.concatenate([[0.0], np.cumsum(pos)])
        budget = share * cum_w[-1]
        return auc, float(np.interp(budget, cum_w, cum_p) / budget)


def paired_bootstrap(
    examples: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    ipw: np.ndarray,
    *,
    share: float,
    reference: str = "lightgbm",
    rounds: int = 400,
    seed: int = 0,
) -> pd.DataFrame:
    """How sure is "the model beats the baseline"? Paired bootstrap on the random view.

    Every resample re-weights the same inspections for all models (Poisson bootstrap: each
    inspection counted Poisson(1) times), so the interval is for the difference (reference −
    baseline) in ROC-AUC and in detection rate at ``share``; ``wins`` is the share of resamples
    in which the reference is ahead. A test period of a few thousand inspections cannot
    separate models a hundredth of AUC apart; this says so instead of hiding it.
    """
    mask, w = view(examples, "random", ipw)
    y = examples["label"].to_numpy()[mask].astype(np.float64)
    ranked = {name: _Ranked(np.asarray(v, dtype=np.float64)[mask]) for name, v in scores.items()}
    rng = np.random.default_rng(seed)
    resamples = [w * rng.poisson(1.0, len(y)) for _ in range(rounds)]
    boot = {
        name: np.array([r.figures(y, rw, share) for rw in resamples]) for name, r in ranked.items()
    }
    full = {name: np.array(r.figures(y, w, share)) for name, r in ranked.items()}
    rows = []
    for name in ranked:
        if name == reference:
            continue
        diffs = boot[reference] - boot[name]
        point = full[reference] - full[name]
        for j, metric in enumerate(("roc_auc", "detection_rate")):
            rows.append(
                {
                    "reference": reference,
                    "baseline": name,
                    "metric": metric,
                    "difference": float(point[j]),
                    "ci_low": float(np.percentile(diffs[:, j], 2.5)),
                    "ci_high": float(np.percentile(diffs[:, j], 97.5)),
                    "wins": float(np.mean(diffs[:, j] > 0)),
                    "rounds": rounds,
                }
            )
    return pd.DataFrame(rows)


def draw_comparison(
    examples: pd.DataFrame,
    tiers: np.ndarray,
    sampling_ratio: Mapping[str, float],
    ipw: np.ndarray,
    *,
    share: float,
) -> dict[str, float]:
    """Tier-weighted draw vs plain random draw of the same size, on the random view."""
    mask, w = view(examples, "random", ipw)
    result = tier_weighted_draw(
        examples["label"].to_numpy()[mask],
        np.asarray(tiers, dtype=object)[mask],
        sampling_ratio,
        expected_count=share * float(w.sum()),
        weight=w,
    )
    return {
        "draw_share": share,
        "tier_weighted_rate": result.weighted_rate,
        "uniform_rate": result.uniform_rate,
        "lift_pp": result.lift_pp,
        "ratio": result.ratio,
        **{f"share_of_draw_{k}": v for k, v in result.tier_shares.items()},
    }


def slices(
    examples: pd.DataFrame,
    probability: np.ndarray,
    by: tuple[str, ...],
    *,
    share: float,
    min_examples: int,
) -> dict[str, pd.DataFrame]:
    """Per-slice metrics on all inspections of the period, with each slice's data coverage.

    The all view is used here because per-slice random-draw samples are too small to give a
    usable AUC; the calibration gap column still shows where the model over- or under-predicts.
    """
    frame = examples.assign(probability=probability)
    return {name: slice_table(frame, name, share=share, min_examples=min_examples) for name in by}
