"""Tests of training.plots: the right artists, labels and a PNG that renders."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from training.evaluate import calibration_table, detection_curve, slice_table
from training.plots import (
    HIGHLIGHT_COLOUR,
    calibration_plot,
    detection_plot,
    slice_plot,
    tier_distribution_plot,
)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.25).astype(int)
    good = 1 / (1 + np.exp(-(2 * y - 1.5 + rng.normal(0, 1, y.size))))
    rules = np.select([good > 0.6, good > 0.3], [0.5, 0.25], 0.1)  # three distinct scores
    return y, good, rules


def test_calibration_plot(data) -> None:
    y, good, rules = data
    tables = {"model": calibration_table(y, good), "rules": calibration_table(y, rules)}
    fig = calibration_plot(tables)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["model", "rules", "perfectly calibrated"]
    assert len(lines[1].get_xdata()) == len(tables["rules"])
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "model",
        "rules",
        "perfectly calibrated",
    ]
    assert _png(fig).startswith(b"\x89PNG")


def test_detection_plot(data) -> None:
    y, good, rules = data
    curves = {"model": detection_curve(y, good), "rules": detection_curve(y, rules, points=11)}
    fig = detection_plot(curves)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["model", "rules", "random draw"]
    assert len(lines[0].get_xdata()) == 101 and len(lines[1].get_xdata()) == 11
    assert list(lines[2].get_ydata()) == [0, 1]
    assert "inspected" in ax.get_xlabel().lower()
    assert _png(fig).startswith(b"\x89PNG")


def test_slice_plot_highlights_largest_gap_and_annotates_coverage(data) -> None:
    y, good, _ = data
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"label": y, "probability": good, "coverage": 1.0})
    frame["band"] = rng.choice(["micro", "small", "medium"], y.size)
    noisy = frame["band"] == "small"
    frame.loc[noisy, "probability"] = rng.random(int(noisy.sum()))
    frame.loc[noisy, "coverage"] = 0.4
    frame.loc[frame.index[:5], "band"] = "tiny"  # too few examples: no AUC
    table = slice_table(frame, "band")
    fig = slice_plot(table)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == len(table) == 4
    colours = [to_hex(b.get_facecolor()) for b in bars]
    flagged = table["largest_gap"].to_numpy()
    assert table.loc[flagged, "slice"].tolist() == ["small"]
    assert [c == HIGHLIGHT_COLOUR.lower() for c in colours] == flagged.tolist()
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 4
    small = table.index[table["slice"] == "small"][0]
    assert texts[small] == "coverage 40%"
    tiny = table.index[table["slice"] == "tiny"][0]
    assert "too few examples" in texts[tiny]
    assert [t.get_text() for t in ax.get_yticklabels()] == table["slice"].tolist()
    assert len(ax.get_lines()) == 1  # the overall AUC line
    assert ax.get_title() == "Model performance by slice"
    assert _png(fig).startswith(b"\x89PNG")


def test_tier_distribution_plot_with_rates() -> None:
    counts = {"A": 500, "B": 3000, "C": 1200, "D": 300, "E": 50}
    rates = {"A": 0.05, "B": 0.1, "C": 0.2, "D": 0.35}
    fig = tier_distribution_plot(counts, rates, title="Tiers 2025")
    assert len(fig.axes) == 2
    ax, ax2 = fig.axes
    assert [p.get_height() for p in ax.patches] == [500, 3000, 1200, 300, 50]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "D", "E"]
    (line,) = ax2.get_lines()
    ydata = np.asarray(line.get_ydata(), dtype=float)
    assert ydata[:4].tolist() == [0.05, 0.1, 0.2, 0.35] and np.isnan(ydata[4])
    assert ax.get_title() == "Tiers 2025"
    assert ax2.get_ylabel() == "Observed problem rate"
    assert _png(fig).startswith(b"\x89PNG")


def test_tier_distribution_plot_without_rates_and_bad_rates() -> None:
    fig = tier_distribution_plot({"E": 1, "A": 2})
    assert len(fig.axes) == 1
    assert fig.axes[0].get_ylabel() == "Number of enterprises"
    counted = tier_distribution_plot({"A": 3}, counted="inspections")
    assert counted.axes[0].get_ylabel() == "Number of inspections"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["E", "A"]
    with pytest.raises(ValueError, match="Z"):
        tier_distribution_plot({"A": 1}, {"Z": 0.1})


def test_figures_are_deterministic(data) -> None:
    y, good, _ = data
    tables = {"model": calibration_table(y, good)}
    assert _png(calibration_plot(tables)) == _png(calibration_plot(tables))
