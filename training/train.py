"""The order of the training steps — the only module that knows it.

labels → weights → LightGBM (search + early stopping on validation) → calibration on validation
→ tier policy resolved on the population → baselines → side-by-side evaluation on the test
period (random and all views) → inspector leniency → MLflow run, registered model version, and
the champion alias when there is none yet (later champions go through ``riskctl promote``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from features.catalogue import CATALOGUE_VERSION
from features.encode import Encoder
from training import plots, registry
from training.baselines import expert_rule_scores
from training.calibrate import Calibrator
from training.comparison import (
    VIEWS,
    compare_models,
    draw_comparison,
    paired_bootstrap,
    slices,
    view,
)
from training.config import TrainingConfig
from training.evaluate import (
    binary_metrics,
    calibration_table,
    detection_at_share,
    detection_curve,
    fairness_gap,
    size_band,
)
from training.explain.report import write_model_report
from training.labels import Periods, build_examples, selection_weights
from training.leniency import inspector_leniency
from training.models import LightGBMFit, Matrix, fit_lightgbm
from training.promotion import GateDecision, decide
from training.risk_model import RiskModel
from training.rules import load_rules
from training.scorecard import Scorecard
from training.tiers import load_policy

log = logging.getLogger(__name__)

MODELS = ("lightgbm", "scorecard", "expert_rules", "random")


@dataclass
class TrainResult:
    model: RiskModel
    periods: Periods
    comparison: pd.DataFrame
    draw: dict[str, float]
    gate_metrics: dict[str, float]
    slices: dict[str, pd.DataFrame]
    leniency: pd.DataFrame
    search: pd.DataFrame
    uncertainty: pd.DataFrame
    run_id: str = ""
    model_version: str = ""
    champion: GateDecision | None = None
    counts: dict[str, int] = field(default_factory=dict)
    #: The test-period examples and every model's score on them (for further comparisons).
    test: pd.DataFrame | None = None
    test_scores: dict[str, np.ndarray] = field(default_factory=dict)


def data_fingerprint(validated_dir: Path) -> str | None:
    report = validated_dir / "validation_report.json"
    return json.loads(report.read_text())["data_fingerprint"] if report.exists() else None


def _matrix(encoder: Encoder, examples: pd.DataFrame, mask: np.ndarray, w: np.ndarray) -> Matrix:
    return Matrix(encoder.matrix(examples[mask]), examples["label"].to_numpy()[mask], w[mask])


def fit_model(
    examples: pd.DataFrame,
    config: TrainingConfig,
    population: pd.DataFrame,
    *,
    fingerprint: str | None,
) -> tuple[RiskModel, LightGBMFit]:
    """Trees on the training period, calibration on validation, tiers resolved on population."""
    w = selection_weights(examples, config.weighting, config.max_weight)
    ipw = selection_weights(examples, "ipw", config.max_weight)
    period = examples["period"].to_numpy()
    train, valid = period == "train", period == "valid"
    encoder = Encoder.fit(examples[train], exclude=config.exclude_features)
    fit = fit_lightgbm(
        _matrix(encoder, examples, train, w),
        _matrix(encoder, examples, valid, w),
        config.lightgbm,
        seed=config.seed,
        feature_names=list(encoder.feature_names),
        categorical=encoder.categorical_indices,
    )
    # Calibrated on the validation period's random draws, weighted by 1/p: a probability then
    # means "if this enterprise were drawn at random and inspected".
    random_valid = valid & (examples["selection"] == "random").to_numpy()
    raw_valid = fit.booster.predict(encoder.matrix(examples[random_valid]), raw_score=True)
    calibrator = Calibrator.fit(
        raw_valid,
        examples["label"].to_numpy()[random_valid],
        ipw[random_valid],
        method=config.calibration,
    )
    policy = load_policy(config.tiers)
    rules = load_rules(config.rules)
    rules.check_against(policy)
    draft = RiskModel(fit.booster, encoder, calibrator, policy, rules)
    resolved = policy.resolve(draft.probability(population))
    meta = {
        "registered_model": config.registered_model,
        "catalogue_version": CATALOGUE_VERSION,
        "data_fingerprint": fingerprint,
        "seed": config.seed,
        "weighting": config.weighting,
        "calibration": config.calibration,
        "best_iteration": fit.best_iteration,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "policy_fingerprint": resolved.fingerprint(),
        "rules_fingerprint": rules.fingerprint(),
        "population_for_tiers": len(population),
    }
    return RiskModel(fit.booster, encoder, calibrator, resolved, rules, meta), fit


def gate_metrics(
    probability: np.ndarray, examples: pd.DataFrame, config: TrainingConfig
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """What the promotion gate compares: random-view AUC and detection, largest slice gap."""
    ipw = selection_weights(examples, "ipw", config.max_weight)
    share = config.evaluation.detection_share
    mask, w = view(examples, "random", ipw)
    y = examples["label"].to_numpy()[mask]
    frame = examples.assign(
        size_band=size_band(examples["registered_capital"], examples["enterprise_type"]).to_numpy()
    )
    by_slice = slices(
        frame,
        probability,
        config.evaluation.slices,
        share=share,
        min_examples=config.evaluation.min_slice_examples,
    )
    figures = {
        "roc_auc": binary_metrics(y, probability[mask], weight=w)["roc_auc"],
        "detection_rate": detection_at_share(y, probability[mask], share, weight=w).detection_rate,
        "fairness_gap": _largest([fairness_gap(t) for t in by_slice.values()]),
    }
    return figures, by_slice


def _largest(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else float("nan")


def gate_metrics_on_latest(
    validated_dir: Path, config: TrainingConfig, models: list[RiskModel]
) -> list[dict[str, float]]:
    """Gate figures of several models on the same latest out-of-time period of today's data."""
    test, _ = build_examples(validated_dir, config.splits, only=("test",))
    return [gate_metrics(m.probability(test), test, config)[0] for m in models]


@dataclass
class Evaluation:
    comparison: pd.DataFrame
    draw: dict[str, float]
    gate: dict[str, float]
    slices: dict[str, pd.DataFrame]
    scores: dict[str, np.ndarray]
    uncertainty: pd.DataFrame


def evaluate(
    model: RiskModel,
    examples: pd.DataFrame,
    config: TrainingConfig,
    scorecard: Scorecard,
    base_rate: float,
) -> Evaluation:
    """All models on the test period; the tier-weighted draw and slices for LightGBM."""
    ipw = selection_weights(examples, "ipw", config.max_weight)
    share = config.evaluation.detection_share
    prob = model.probability(examples)
    scores = {
        "lightgbm": prob,
        "scorecard": scorecard.predict_proba(examples),
        "expert_rules": expert_rule_scores(examples, config.expert_baseline, model.policy),
        "random": np.full(len(examples), base_rate),
    }
    table = compare_models(
        examples, scores, ipw, share=share, probabilistic=frozenset({"lightgbm", "scorecard"})
    )
    active = model.policy.active
    tiers = model.tiers(examples, prob, [active])[f"tier_{active}"].to_numpy()
    draw = draw_comparison(examples, tiers, model.policy.sampling_ratios(active), ipw, share=share)
    gate, by_slice = gate_metrics(prob, examples, config)
    uncertainty = paired_bootstrap(examples, scores, ipw, share=share, seed=config.seed)
    return Evaluation(table, draw, gate, by_slice, scores, uncertainty)


def leniency(model: RiskModel, examples: pd.DataFrame) -> pd.DataFrame:
    """Inspector leniency against the model's expectation, with targeted checks offset.

    Targeted checks look where a trigger points and find more than the model expects; the
    offset adds each selection kind's average surplus so an inspector who does many targeted
    checks is not mistaken for a strict one.
    """
    p = np.clip(model.probability(examples), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    y = examples["label"].to_numpy()
    for kind in ("random", "targeted"):
        m = (examples["selection"] == kind).to_numpy()
        if m.any() and 0 < y[m].mean() < 1:
            observed, expected = y[m].mean(), p[m].mean()
            logit[m] += np.log(observed / (1 - observed)) - np.log(expected / (1 - expected))
    return inspector_leniency(examples.assign(expected_logit=logit))


def train(
    validated_dir: Path,
    config: TrainingConfig,
    population_snapshot: Path,
    *,
    mlruns: Path | None = None,
    register: bool = True,
    examples: tuple[pd.DataFrame, Periods] | None = None,
) -> TrainResult:
    """Train, evaluate and track one model; register it and crown it if there is no champion.

    ``examples`` may pass labelled examples already built (benchmarks time the steps apart).
    """
    examples, periods = examples or build_examples(validated_dir, config.splits)
    counts = examples["period"].value_counts().to_dict()
    for p in ("train", "valid", "test"):
        if counts.get(p, 0) == 0:
            raise ValueError(f"the {p} period {periods.as_dict()} holds no inspections")
    population = pd.read_parquet(population_snapshot)
    fingerprint = data_fingerprint(validated_dir)
    model, fit = fit_model(examples, config, population, fingerprint=fingerprint)
    model.meta["periods"] = periods.as_dict()

    period = examples["period"].to_numpy()
    train_rows = examples[period == "train"]
    w = selection_weights(examples, config.weighting, config.max_weight)
    scorecard = Scorecard(features=model.encoder.feature_names).fit(
        train_rows, train_rows["label"].to_numpy(), w[period == "train"]
    )
    base_rate = float(np.average(train_rows["label"], weights=w[period == "train"]))
    test = examples[period == "test"].reset_index(drop=True)
    ev = evaluate(model, test, config, scorecard, base_rate)
    result = TrainResult(
        model=model,
        periods=periods,
        comparison=ev.comparison,
        draw=ev.draw,
        gate_metrics=ev.gate,
        slices=ev.slices,
        leniency=leniency(model, examples),
        search=fit.search,
        uncertainty=ev.uncertainty,
        counts={k: int(v) for k, v in counts.items()},
        test=test,
        test_scores=ev.scores,
    )
    if register:
        figures = _figures(result, test, ev, config)
        _track(result, config, examples, scorecard, figures, population, mlruns)
    return result


def _track(
    result: TrainResult,
    config: TrainingConfig,
    examples: pd.DataFrame,
    scorecard: Scorecard,
    figures: dict,
    population: pd.DataFrame,
    mlruns: Path | None,
) -> None:
    """One MLflow run with everything needed to compare, reproduce and audit the model."""
    root = registry.configure(mlruns)
    model = result.model
    with mlflow.start_run(experiment_id=registry.experiment_id(config.experiment, root)) as run:
        mlflow.log_params(
            {
                "seed": config.seed,
                "weighting": config.weighting,
                "max_weight": config.max_weight,
                "calibration": config.calibration,
                "data_fingerprint": model.meta["data_fingerprint"],
                "catalogue_version": CATALOGUE_VERSION,
                "policy_fingerprint": model.meta["policy_fingerprint"],
                "rules_fingerprint": model.meta["rules_fingerprint"],
                "best_iteration": model.meta["best_iteration"],
                **{f"period_{k}": v for k, v in result.periods.as_dict().items()},
                **{f"inspections_{k}": v for k, v in result.counts.items()},
                **{f"lgb_{k}": v for k, v in _chosen_params(result).items()},
            }
        )
        metrics = {}
        for row in result.comparison.itertuples():
            for metric in ("roc_auc", "pr_auc", "brier", "ece", "detection_rate", "lift_pp"):
                value = getattr(row, metric)
                if np.isfinite(value):
                    metrics[f"{row.view}_{row.model}_{metric}"] = float(value)
        metrics.update({f"draw_{k}": float(v) for k, v in result.draw.items()})
        metrics.update({f"gate_{k}": float(v) for k, v in result.gate_metrics.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {"views": json.dumps(VIEWS), "feature_names": ",".join(model.encoder.feature_names)}
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            result.comparison.to_csv(out / "comparison.csv", index=False)
            result.search.to_csv(out / "search.csv", index=False)
            result.uncertainty.to_csv(out / "bootstrap_differences.csv", index=False)
            result.leniency.to_csv(out / "inspector_leniency.csv", index=False)
            scorecard.points_table().to_csv(out / "scorecard_points.csv", index=False)
            for name, table in result.slices.items():
                table.to_csv(out / f"slices_{name}.csv", index=False)
            (out / "draw.json").write_text(json.dumps(result.draw, indent=2))
            (out / "training_config.json").write_text(config.model_dump_json(indent=2))
            # the tier policy as resolved on the population, and the rules, exactly as stored
            (out / "tiers_resolved.yaml").write_text(model.policy.to_yaml(), encoding="utf-8")
            (out / "trigger_rules.yaml").write_text(model.rules.to_yaml(), encoding="utf-8")
            for fname, fig in figures.items():
                fig.savefig(out / fname, dpi=100)
            mlflow.log_artifacts(str(out), artifact_path="evaluation")
        version = registry.log_model(model, examples, config.registered_model)
        result.run_id = run.info.run_id
        result.model_version = str(version.version)
        model.meta["model_version"] = result.model_version
        model.meta["run_id"] = result.run_id
        with tempfile.TemporaryDirectory() as tmp:
            write_model_report(
                result,
                figures,
                population,
                Path(tmp),
                seed=config.seed,
                min_slice=config.evaluation.min_slice_examples,
            )
            mlflow.log_artifacts(tmp, artifact_path="report")
    client = mlflow.MlflowClient()
    for key, value in result.gate_metrics.items():
        client.set_model_version_tag(config.registered_model, version.version, key, f"{value:.6f}")
    if registry.champion(config.registered_model) is None:
        decision = decide(result.gate_metrics, None, config.gate)
        client.set_model_version_tag(
            config.registered_model, version.version, "gate", decision.summary()
        )
        if decision.passed:
            registry.set_champion(config.registered_model, str(version.version))
        result.champion = decision


def _chosen_params(result: TrainResult) -> dict:
    keep = ("learning_rate", "num_leaves", "max_depth", "min_data_in_leaf", "lambda_l2")
    params = result.model.booster.params or {}
    return {k: params.get(k) for k in keep if k in params}


def _figures(result: TrainResult, test: pd.DataFrame, ev: Evaluation, config: TrainingConfig):
    """Calibration (random view), gain charts of every model, slices, the tier distribution."""
    ipw = selection_weights(test, "ipw", config.max_weight)
    mask, w = view(test, "random", ipw)
    y = test["label"].to_numpy()[mask]
    model = result.model
    active = model.policy.active
    tiers = model.tiers(test, ev.scores["lightgbm"], [active])[f"tier_{active}"]
    names = model.policy.tier_names(active)
    figs = {
        "calibration.png": plots.calibration_plot(
            {"lightgbm": calibration_table(y, ev.scores["lightgbm"][mask], weight=w)}
        ),
        "detection.png": plots.detection_plot(
            {n: detection_curve(y, s[mask], weight=w) for n, s in ev.scores.items()}
        ),
        "tiers.png": plots.tier_distribution_plot(
            {t: int((tiers == t).sum()) for t in names},
            {t: float(test["label"][tiers == t].mean()) for t in names if (tiers == t).any()},
            title=f"Test-period inspections by {active} tier",
            counted="inspections",
        ),
    }
    for name, table in result.slices.items():
        figs[f"slices_{name}.png"] = plots.slice_plot(table, title=f"AUC by {name}")
    return figs
