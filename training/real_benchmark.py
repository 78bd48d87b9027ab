"""The real-data benchmark: the whole path on real inspections, next to the published model.

Adapter → validation and quarantine → point-in-time features → labels → LightGBM, scorecard
and expert rules (the same ``train`` as the synthetic province, tracked in MLflow) → every model
measured on the City's own test inspections, beside the City's published models' scores on the
same rows and the order the inspections were actually made in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.adapters import chicago
from features.pipeline import run_sources
from features.validate import ValidationReport
from features.workspace import Workspace
from training.config import POLICY_DIR, TrainingConfig, load_config
from training.evaluate import (
    binary_metrics,
    calibration_table,
    detection_at_share,
    expected_calibration_error,
    share_of_problems_found,
)
from training.labels import load_inspections, periods_for
from training.train import TrainResult, train

CHICAGO_CONFIG = POLICY_DIR / "chicago.yaml"

#: What the City reported for its pilot (September–October 2014), quoted with its source.
CHICAGO_REPORTED = {
    "share_found_first_half": 0.69,
    "existing_order_first_half": 0.55,
    "source": (
        "City of Chicago pilot report, quoted by the Chicago Tribune (2015-07-06) and Lexology: "
        "'69 percent of violations found in the first month compared to the 55 percent that "
        "the existing inspection order had yielded'; project page "
        "https://chicago.github.io/food-inspections-evaluation ('over one week earlier')"
    ),
}

#: Models whose scores are probabilities (calibration is reported for them only).
PROBABILISTIC = ("lightgbm", "scorecard", "city_glmnet", "city_xgboost")


@dataclass
class RealBenchmark:
    adapter: chicago.AdapterSummary
    validation: ValidationReport
    result: TrainResult
    #: Every model on the City's test inspections (the rows both it and we kept).
    table: pd.DataFrame
    city_test_rows: int

    @property
    def rows_compared(self) -> int:
        return int(self.table["inspections"].iloc[0])


def _ranks(score: np.ndarray) -> np.ndarray:
    """An order as values in (0, 1] (ties share a rank): AUC needs only the order."""
    return pd.Series(score).rank(pct=True).to_numpy()


def order_metrics(y: np.ndarray, score: np.ndarray, probabilistic: bool) -> dict[str, float]:
    """The figures regulators compare: problems found in the first half, top-10 % detection,
    ROC-AUC, and calibration (Brier, ECE) for models that give probabilities."""
    # orders that are not probabilities (dates, rule levels) enter as ranks
    m = binary_metrics(y, score if probabilistic else _ranks(score))
    return {
        "share_found_first_half": share_of_problems_found(y, score, 0.5),
        "detection_top10": detection_at_share(y, score, 0.10).detection_rate,
        "roc_auc": m["roc_auc"],
        "brier": m["brier"] if probabilistic else np.nan,
        "ece": (
            expected_calibration_error(calibration_table(y, score)) if probabilistic else np.nan
        ),
    }


def team_rates(validated_dir: Path, result: TrainResult) -> pd.Series:
    """Each inspector team's problem rate over the training period (a score that knows only
    who will inspect: what a model gains by using the inspector)."""
    insp = load_inspections(validated_dir)
    train_rows = insp[result.periods.label(insp["inspected_on"]) == "train"]
    return train_rows.groupby("inspector_ids")["problem_found"].mean().astype(float)


def within_team_auc(y: np.ndarray, score: np.ndarray, team: np.ndarray) -> float:
    """ROC-AUC inside each inspector team, averaged by team size: how well establishments are
    ranked when the inspector is held fixed (as a random assignment of inspectors does)."""
    aucs, sizes = [], []
    for t in np.unique(team):
        m = team == t
        if 0 < y[m].sum() < m.sum():
            aucs.append(binary_metrics(y[m], _ranks(score[m]))["roc_auc"])
            sizes.append(m.sum())
    return float(np.average(aucs, weights=sizes)) if aucs else np.nan


def compare_on_city_test(
    result: TrainResult, published: pd.DataFrame, rates: pd.Series
) -> pd.DataFrame:
    """Our models and the City's on the City's test inspections that our data kept."""
    test = result.test
    ours = pd.DataFrame(
        {
            "record_id": test["record_id"].astype(str),
            "label": test["label"],
            "team": test["inspector_ids"].astype(str),
        }
    )
    for name, score in result.test_scores.items():
        ours[name] = score
    rows = published.merge(ours, on="record_id", validate="1:1")
    if (rows["label"] != rows["critical_found"]).any():
        raise ValueError("our labels differ from the City's criticalFound on its test rows")
    days = pd.to_datetime(rows["inspected_on"]).map(pd.Timestamp.toordinal).to_numpy(float)
    scores = {
        "lightgbm": rows["lightgbm"],
        "scorecard": rows["scorecard"],
        "expert_rules": rows["expert_rules"],
        "city_glmnet": rows["glmnet"],
        "city_xgboost": rows["xgboost"],
        # the order the inspections were actually made in: earlier first
        "actual_order": -days,
        # knows only which team inspects (its training-period rate); not a model of the firm
        "inspector_team_only": rows["team"].map(rates).fillna(rates.mean()),
        "random": np.zeros(len(rows)),
    }
    y = rows["label"].to_numpy()
    team = rows["team"].to_numpy()
    return pd.DataFrame(
        [
            {"model": name, "inspections": len(rows), "problems": int(y.sum())}
            | order_metrics(y, np.asarray(s, dtype=float), name in PROBABILISTIC)
            | {"within_team_auc": within_team_auc(y, np.asarray(s, dtype=float), team)}
            for name, s in scores.items()
        ]
    )


def run_chicago(
    data_dir: Path,
    workspace: Workspace,
    *,
    config: TrainingConfig | None = None,
    mlruns: Path | None = None,
    register: bool = True,
) -> RealBenchmark:
    """Adapt, validate, train and compare on the Chicago data (see the module docstring)."""
    cfg = config or load_config(CHICAGO_CONFIG)
    summary = chicago.adapt(data_dir, workspace.raw)
    inspected = pd.read_csv(workspace.raw / "inspections.csv", usecols=["inspected_on"])
    periods = periods_for(cfg.splits, inspected["inspected_on"])
    # the population is tiered as it stood when the test period began
    run = run_sources(
        workspace, workspace.raw, extracted_on=summary.extracted_on, as_of=periods.test_start
    )
    result = train(workspace.validated, cfg, run.snapshot.path, mlruns=mlruns, register=register)
    published = chicago.published_scores(data_dir)
    table = compare_on_city_test(result, published, team_rates(workspace.validated, result))
    return RealBenchmark(
        adapter=summary,
        validation=run.validation,
        result=result,
        table=table,
        city_test_rows=len(published),
    )
