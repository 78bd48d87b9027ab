"""Figures for the evaluation report: calibration, gain charts, slices and tier distributions.

Why this module looks the way it does: figures are built on ``matplotlib.figure.Figure``
directly (no pyplot, no global state, no display backend), so they are safe in servers, tests
and parallel jobs and are garbage-collected like any object. Every function takes the tables
produced by ``training.evaluate`` and returns a ``Figure``; callers save it with
``fig.savefig(path_or_buffer, format="png")``. Output is deterministic: series are drawn in the
order of the mappings passed in, with a fixed colour cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

#: Fixed palette (colour-blind safe, Okabe-Ito) so the same model keeps its colour across runs.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: Bar colour of ordinary slices and of the slice with the largest gap.
BAR_COLOUR = "#9DB4C0"
HIGHLIGHT_COLOUR = "#D55E00"
DIAGONAL_STYLE = {"color": "grey", "linestyle": "--", "linewidth": 1}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def calibration_plot(
    tables: Mapping[str, pd.DataFrame], title: str = "Calibration (reliability) curves"
) -> Figure:
    """Reliability curves (``calibration_table`` outputs, one per model) and the diagonal.

    The axes carry one line per model, in mapping order, then the diagonal (the last line).
    """
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    top = 0.0
    for i, (name, table) in enumerate(tables.items()):
        x = table["mean_predicted"].to_numpy(dtype=float)
        y = table["observed_rate"].to_numpy(dtype=float)
        ax.plot(x, y, marker="o", color=_colour(i), label=name)
        finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
        if finite.size:
            top = max(top, float(finite.max()))
    top = min(1.0, top * 1.05) if top > 0 else 1.0
    ax.plot([0, top], [0, top], label="perfectly calibrated", **DIAGONAL_STYLE)
    pad = 0.02 * top  # so markers at 0 are not cut in half
    ax.set_xlim(-pad, top)
    ax.set_ylim(-pad, top)
    ax.set_xlabel("Mean predicted probability of a problem")
    ax.set_ylabel("Observed problem rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def detection_plot(
    curves: Mapping[str, pd.DataFrame],
    title: str = "Problems found by share of enterprises inspected",
) -> Figure:
    """Gain charts (``detection_curve`` outputs, one per model) and the random-draw diagonal.

    The axes carry one line per model, in mapping order, then the diagonal (the last line).
    """
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(
            curve["share_inspected"].to_numpy(dtype=float),
            curve["share_of_problems_found"].to_numpy(dtype=float),
            color=_colour(i),
            label=name,
        )
    ax.plot([0, 1], [0, 1], label="random draw", **DIAGONAL_STYLE)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Share of enterprises inspected (highest scores first)")
    ax.set_ylabel("Share of problems found")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def slice_plot(
    table: pd.DataFrame, metric: str = "roc_auc", title: str = "Model performance by slice"
) -> Figure:
    """Horizontal bars of ``metric`` per slice (a ``slice_table`` output), top to bottom.

    Each bar has one text annotation (its coverage, or ``n = ...`` when the coverage is
    unknown, plus "too few examples" when the metric is NaN); the ``largest_gap`` slice is
    drawn in a highlight colour. For ``roc_auc`` a dashed vertical line marks the overall AUC
    when ``table.attrs["overall_roc_auc"]`` is present.
    """
    if metric not in table.columns:
        raise ValueError(f"metric {metric!r} is not a column of the slice table")
    labels = [str(v) for v in table["slice"]]
    values = table[metric].to_numpy(dtype=float)
    widths = np.nan_to_num(values, nan=0.0)
    flagged = (
        table["largest_gap"].to_numpy(dtype=bool)
        if "largest_gap" in table.columns
        else np.zeros(len(table), dtype=bool)
    )
    colours = [HIGHLIGHT_COLOUR if f else BAR_COLOUR for f in flagged]
    coverage = (
        table["coverage"].to_numpy(dtype=float)
        if "coverage" in table.columns
        else np.full(len(table), np.nan)
    )
    height = max(2.5, 0.45 * len(table) + 1.5)
    fig = Figure(figsize=(7, height), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(table))
    ax.barh(pos, widths, color=colours, label=metric)
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    finite = values[np.isfinite(values)]
    right = float(finite.max()) if finite.size else 1.0
    right = max(right, 1e-9)
    for i in range(len(table)):
        if math.isfinite(coverage[i]):
            note = f"coverage {coverage[i]:.0%}"
        else:
            note = f"n = {int(table['n'].iloc[i])}" if "n" in table.columns else ""
        if not math.isfinite(values[i]):
            note = f"{note} (too few examples)".strip()
        ax.text(widths[i] + 0.01 * right, i, note, va="center", fontsize=8)
    overall = table.attrs.get("overall_roc_auc")
    if metric == "roc_auc" and overall is not None and math.isfinite(overall):
        ax.axvline(overall, label=f"overall {overall:.3f}", **DIAGONAL_STYLE)
    ax.set_xlim(0, right * 1.3)
    ax.set_xlabel(metric.replace("_", " "))
    ax.set_ylabel(str(table.attrs.get("by", "slice")))
    ax.set_title(title)
    return fig


def tier_distribution_plot(
    counts: Mapping[str, int],
    rates: Mapping[str, float] | None = None,
    title: str = "Enterprises per risk tier",
    counted: str = "enterprises",
) -> Figure:
    """Bars of counts per tier (of ``counted``: enterprises, inspections…), in the given order;
    optionally the observed problem
    rate per tier as a line on a second y axis (``fig.axes[1]``).

    Tiers of ``counts`` missing from ``rates`` are drawn as gaps; a tier in ``rates`` but not
    in ``counts`` is an error.
    """
    tiers = list(counts)
    if rates is not None:
        extra = [t for t in rates if t not in counts]
        if extra:
            raise ValueError(f"rates for tiers without counts: {', '.join(map(str, extra))}")
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(tiers))
    heights = [counts[t] for t in tiers]
    bars = ax.bar(pos, heights, color=BAR_COLOUR, label="enterprises")
    ax.bar_label(bars, labels=[f"{h:,}" for h in heights], fontsize=8)
    ax.set_xticks(pos, [str(t) for t in tiers])
    ax.set_xlabel("Risk tier")
    ax.set_ylabel(f"Number of {counted}")
    ax.set_title(title)
    if rates is not None:
        ax2 = ax.twinx()
        y = [rates.get(t, math.nan) for t in tiers]
        ax2.plot(pos, y, color=HIGHLIGHT_COLOUR, marker="o", label="observed problem rate")
        ax2.set_ylabel("Observed problem rate")
        ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax2.set_ylim(0, max([v for v in y if math.isfinite(v)], default=1.0) * 1.2 or 1.0)
        handles = [bars, *ax2.get_lines()]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper right")
    return fig
