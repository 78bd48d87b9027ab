"""Labelled examples: one per inspection, features as of the inspection date, out-of-time periods.

Why this shape: the label (did the inspection find a problem?) exists only where someone
inspected, on one date; the features must be what was known *before* that date, or the model
learns from the outcome itself. The feature layer guarantees that (strictly-before, known-before
semantics); this module joins its rows back to every inspection, duplicates included, and
assigns each inspection to a period by date — never shuffled across time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_coverage, build_features
from features.coverage import COVERED_SOURCES
from training.config import Splits

#: Columns of the validated inspections that travel with each example (never model inputs).
INSPECTION_COLUMNS = (
    "record_id",
    "credit_code",
    "inspected_on",
    "task_id",
    "department",
    "inspector_ids",
    "selection",
    "selection_probability",
    "problem_found",
)
PERIODS = ("train", "valid", "test")


@dataclass(frozen=True)
class Periods:
    """Half-open date ranges: train [train_start, valid_start), valid, test up to ``end``."""

    train_start: date
    valid_start: date
    test_start: date
    end: date

    def label(self, days: pd.Series) -> pd.Series:
        """The period of each inspection date ("" when outside every period)."""
        d = pd.to_datetime(days)
        bounds = [self.train_start, self.valid_start, self.test_start]
        out = pd.Series("", index=days.index, dtype=object)
        for name, lo, hi in zip(PERIODS, bounds, [*bounds[1:], None], strict=True):
            upper = d <= pd.Timestamp(self.end) if hi is None else d < pd.Timestamp(hi)
            out[(d >= pd.Timestamp(lo)) & upper] = name
        return out

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def periods_for(splits: Splits, inspection_dates: pd.Series) -> Periods:
    """Count the test and validation periods back from the latest inspection (or ``end``)."""
    days = pd.to_datetime(inspection_dates)
    end = pd.Timestamp(splits.end) if splits.end else days.max()
    test_start = end - pd.DateOffset(months=splits.test_months) + pd.Timedelta(days=1)
    valid_start = test_start - pd.DateOffset(months=splits.valid_months)
    train_start = pd.Timestamp(splits.train_start) if splits.train_start else days.min()
    if not train_start < valid_start:
        raise ValueError(
            f"splits: training would be empty — train_start {train_start.date()} is not before "
            f"the validation period starting {valid_start.date()}"
        )
    return Periods(train_start.date(), valid_start.date(), test_start.date(), end.date())


def load_inspections(validated_dir: Path) -> pd.DataFrame:
    """The validated inspections with the columns labels need."""
    frame = pd.read_parquet(validated_dir / "inspections.parquet", columns=list(INSPECTION_COLUMNS))
    frame["inspected_on"] = pd.to_datetime(frame["inspected_on"]).dt.date
    return frame


def build_examples(
    validated_dir: Path, splits: Splits, *, only: tuple[str, ...] = PERIODS
) -> tuple[pd.DataFrame, Periods]:
    """One row per inspection in the periods: its facts, label, period, coverage and features.

    ``only`` restricts the examples to some periods (the promotion gate needs just the latest);
    the periods themselves are always counted from all inspections.
    """
    insp = load_inspections(validated_dir)
    if insp.empty:
        raise ValueError(f"{validated_dir}: no inspections to learn from")
    periods = periods_for(splits, insp["inspected_on"])
    insp["period"] = periods.label(insp["inspected_on"])
    insp = insp[insp["period"].isin(only)].reset_index(drop=True)
    insp["as_of"] = insp["inspected_on"]
    pairs = insp[["credit_code", "as_of"]]
    feats = build_features(validated_dir, pairs)
    cover = build_coverage(validated_dir, pairs)[["credit_code", "as_of", "coverage"]]
    for frame in (feats, cover):
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    examples = insp.merge(feats, on=["credit_code", "as_of"], how="left", validate="m:1").merge(
        cover, on=["credit_code", "as_of"], how="left", validate="m:1"
    )
    examples["label"] = examples["problem_found"].astype(np.int8)
    examples = examples.sort_values(["inspected_on", "record_id"], kind="stable")
    return examples.reset_index(drop=True), periods


def selection_weights(examples: pd.DataFrame, scheme: str, max_weight: float) -> np.ndarray:
    """Inverse-probability weights: a random-draw inspection stands for 1/p enterprises.

    Targeted inspections carry no design probability; they are treated as certainty selections
    (weight 1). Weights are capped at ``max_weight`` so one tiny-probability draw cannot
    dominate. ``scheme="none"`` gives every inspection weight 1.
    """
    if scheme == "none":
        return np.ones(len(examples))
    if scheme != "ipw":
        raise ValueError(f"weighting: unknown scheme {scheme!r} (expected 'none' or 'ipw')")
    p = examples["selection_probability"].to_numpy(dtype=np.float64, na_value=np.nan)
    random = (examples["selection"] == "random").to_numpy()
    if np.any(random & ~(p > 0)):
        raise ValueError("a random-draw inspection has no positive selection_probability")
    w = np.where(random, 1.0 / np.where(random, p, 1.0), 1.0)
    return np.minimum(w, max_weight)


def random_view(examples: pd.DataFrame) -> pd.Series:
    """Mask of the random-draw inspections: the unbiased view of the population."""
    return examples["selection"] == "random"


__all__ = [
    "COVERED_SOURCES",
    "Periods",
    "build_examples",
    "load_inspections",
    "periods_for",
    "random_view",
    "selection_weights",
]
