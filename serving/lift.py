"""The measured lift of a draw: problem rate of its risk-weighted arm over its control arm.

Why measured and not claimed: the control arm is a plain uniform draw from the same pool, so
its problem rate estimates what a random draw would have found; the difference is the lift of
risk-weighted selection on this draw, with a 95 % interval (Newcombe's hybrid score interval
for a difference of two independent proportions, which behaves at small counts and at 0 or
100 %, unlike the Wald interval). Targets drawn in both arms count in both.
"""

from __future__ import annotations

import math

import pandas as pd

Z95 = 1.959963984540054


def wilson(found: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN bounds when ``n`` is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = found / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(found_a: int, n_a: int, found_b: int, n_b: int) -> tuple[float, float]:
    """95 % interval of p_a − p_b (Newcombe 1998, method 10)."""
    if n_a == 0 or n_b == 0:
        return (math.nan, math.nan)
    pa, pb = found_a / n_a, found_b / n_b
    la, ua = wilson(found_a, n_a)
    lb, ub = wilson(found_b, n_b)
    d = pa - pb
    return (
        d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2),
        d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2),
    )


def draw_lift(targets: pd.DataFrame, results: pd.DataFrame) -> dict:
    """Problem rates per arm and the lift, from a draw's targets (``credit_code``, ``arm`` in
    risk/control/both) and the ingested results (``credit_code``, ``problem_found``)."""
    merged = targets[["credit_code", "arm"]].merge(
        results[["credit_code", "problem_found"]], on="credit_code", how="inner"
    )
    out: dict = {"targets": len(targets), "inspected": len(merged)}
    counts = {}
    for arm in ("risk", "control"):
        rows = merged[merged["arm"].isin([arm, "both"])]
        n, found = len(rows), int(rows["problem_found"].sum())
        counts[arm] = (found, n)
        lo, hi = wilson(found, n)
        out[arm] = {
            "inspected": n,
            "problems": found,
            "rate": found / n if n else None,
            "interval_95": [_num(lo), _num(hi)],
        }
    (fr, nr), (fc, nc) = counts["risk"], counts["control"]
    lo, hi = newcombe(fr, nr, fc, nc)
    out["lift"] = {
        "difference": (fr / nr - fc / nc) if nr and nc else None,
        "interval_95": [_num(lo), _num(hi)],
        "ratio": (fr / nr) / (fc / nc) if nr and nc and fc else None,
        "method": "Newcombe hybrid score interval, 95 %",
    }
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x
