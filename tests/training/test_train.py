"""Training end to end on a small province: tracked, registered, gated, reproducible, scored."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.catalogue import CATALOGUE_VERSION, FEATURE_NAMES
from features.pipeline import FeatureRun
from features.workspace import Workspace
from serving.cli import app
from training import registry
from training.config import ConfigError, load_config
from training.labels import build_examples
from training.promotion import promote
from training.scoring import score_snapshot
from training.train import TrainResult, train

runner = CliRunner()
#: Fewer search candidates keep the suite quick; everything else is the shipped configuration.
QUICK = {"search": [{}]}


def config(**overrides):
    base = load_config()
    lgb = {**base.lightgbm.model_dump(), **overrides.pop("lightgbm", QUICK)}
    return load_config(lightgbm=lgb, **overrides)


@pytest.fixture(scope="module")
def mlruns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture(scope="module")
def first(province: FeatureRun, validated: Path, mlruns: Path) -> TrainResult:
    return train(validated, config(), province.snapshot.path, mlruns=mlruns)


def test_every_model_is_compared_in_both_views(first: TrainResult) -> None:
    table = first.comparison
    assert set(table["view"]) == {"random", "all"}
    assert set(table["model"]) == {"lightgbm", "scorecard", "expert_rules", "random"}
    ours = table.set_index(["view", "model"])
    for v in ("random", "all"):
        assert ours.loc[(v, "lightgbm"), "roc_auc"] > 0.65
        assert ours.loc[(v, "random"), "roc_auc"] == pytest.approx(0.5)
        # a random draw of the same size finds the base rate, by definition
        assert ours.loc[(v, "random"), "detection_rate"] == pytest.approx(
            ours.loc[(v, "random"), "base_rate"]
        )
        assert ours.loc[(v, "lightgbm"), "detection_rate"] > ours.loc[(v, "random"), "base_rate"]
    # the random view holds only random-draw inspections
    n_random = ours.loc[("random", "lightgbm"), "inspections"]
    assert n_random < ours.loc[("all", "lightgbm"), "inspections"]


def test_the_tier_weighted_draw_finds_more_than_a_plain_random_draw(first: TrainResult) -> None:
    d = first.draw
    assert d["tier_weighted_rate"] > d["uniform_rate"]
    assert d["ratio"] > 1.2


def test_the_run_is_tracked_with_everything_needed_to_reproduce_it(
    first: TrainResult, validated: Path, mlruns: Path
) -> None:
    registry.configure(mlruns)
    run = mlflow.get_run(first.run_id)
    params = run.data.params
    assert params["catalogue_version"] == CATALOGUE_VERSION
    assert params["data_fingerprint"] == first.model.meta["data_fingerprint"] is not None
    assert params["policy_fingerprint"] == first.model.policy.fingerprint()
    assert params["seed"] == "42"
    assert run.data.metrics["random_lightgbm_roc_auc"] == pytest.approx(
        first.comparison.query("view == 'random' and model == 'lightgbm'")["roc_auc"].iloc[0]
    )
    artifacts = {a.path for a in MlflowClient().list_artifacts(first.run_id, "evaluation")}
    for name in (
        "calibration.png",
        "detection.png",
        "tiers.png",
        "comparison.csv",
        "tiers_resolved.yaml",
    ):
        assert f"evaluation/{name}" in artifacts
    logged = mlflow.models.get_model_info(f"models:/enterprise-risk/{first.model_version}")
    assert logged.signature is not None
    assert [c.name for c in logged.signature.inputs.inputs] == list(FEATURE_NAMES)


def test_the_first_model_becomes_champion(first: TrainResult, mlruns: Path) -> None:
    registry.configure(mlruns)
    assert first.champion is not None and first.champion.passed
    assert str(registry.champion("enterprise-risk").version) == first.model_version
    assert registry.history("enterprise-risk") == [first.model_version]


def test_same_data_config_and_seed_give_the_same_model_and_scores(
    first: TrainResult, province: FeatureRun, validated: Path
) -> None:
    again = train(validated, config(), province.snapshot.path, register=False)
    a = first.model.booster.model_to_string()
    b = again.model.booster.model_to_string()
    assert a == b
    population = pd.read_parquet(province.snapshot.path)
    assert np.array_equal(first.model.probability(population), again.model.probability(population))
    assert again.model.policy == first.model.policy


def test_a_registered_model_loads_back_and_scores_exactly_as_before(
    first: TrainResult, province: FeatureRun, mlruns: Path
) -> None:
    registry.configure(mlruns)
    population = pd.read_parquet(province.snapshot.path)
    loaded, _ = registry.load("enterprise-risk", first.model_version)
    before = first.model.predict(population)
    after = loaded.predict(population)
    pd.testing.assert_frame_equal(before, after)
    # the categorical features really matter to the model, so the round trip tested them
    shuffled = population.assign(
        industry=population["industry"].sample(frac=1, random_state=0).to_numpy()
    )
    assert not np.array_equal(loaded.probability(shuffled), after["probability"].to_numpy())
    # and the MLflow pyfunc gives the same answer from raw features
    pyfunc = mlflow.pyfunc.load_model("models:/enterprise-risk@champion")
    out = pyfunc.predict(registry.signature_frame(population.head(200)))
    np.testing.assert_array_equal(
        out["probability"].to_numpy(), after["probability"].to_numpy()[:200]
    )


def test_batch_scoring_writes_versions_and_matches_the_model(
    first: TrainResult, province: FeatureRun, tmp_path: Path
) -> None:
    model = first.model
    out = score_snapshot(model, province.snapshot.path, tmp_path / "scores.parquet")
    scored = pd.read_parquet(out.path)
    population = pd.read_parquet(province.snapshot.path)
    assert len(scored) == len(population) == out.rows
    assert (scored["model_version"] == first.model_version).all()
    assert (scored["snapshot_data_fingerprint"] == province.validation.data_fingerprint).all()
    assert (scored["snapshot_catalogue_version"] == CATALOGUE_VERSION).all()
    np.testing.assert_array_equal(scored["probability"], model.probability(population))
    stock = score_snapshot(
        model, province.snapshot.path, tmp_path / "stock.parquet", accelerated=False
    )
    assert stock.scoring_path == "lightgbm"
    stock_scores = pd.read_parquet(stock.path)
    assert np.abs(stock_scores["probability"] - scored["probability"]).max() <= 1e-9
    tier_cols = [c for c in scored.columns if c.startswith("tier_")]
    assert len(tier_cols) == 3
    pd.testing.assert_frame_equal(scored[tier_cols], stock_scores[tier_cols])


def test_the_gate_refuses_a_worse_challenger_and_accepts_an_equal_one_then_rollback(
    first: TrainResult, province: FeatureRun, validated: Path, mlruns: Path
) -> None:
    name = "enterprise-risk"
    weak = config(
        lightgbm={"search": [{"num_leaves": 2, "learning_rate": 0.01}], "num_boost_round": 2}
    )
    worse = train(validated, weak, province.snapshot.path, mlruns=mlruns)
    assert worse.champion is None  # a champion exists: registering does not crown it
    _, decision = promote(validated, config(), version=worse.model_version, mlruns=mlruns)
    assert not decision.passed
    assert any(c.name == "roc_auc" and not c.passed for c in decision.checks)
    registry.configure(mlruns)
    assert str(registry.champion(name).version) == first.model_version

    equal = train(validated, config(), province.snapshot.path, mlruns=mlruns)
    _, decision = promote(validated, config(), version=equal.model_version, mlruns=mlruns)
    assert decision.passed, decision.failures()
    registry.configure(mlruns)
    assert str(registry.champion(name).version) == equal.model_version
    assert registry.history(name) == [first.model_version, equal.model_version]

    assert registry.rollback(name) == first.model_version
    assert str(registry.champion(name).version) == first.model_version
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(name)


def test_gate_figures_are_computed_on_the_latest_period_only(validated: Path) -> None:
    test, periods = build_examples(validated, config().splits, only=("test",))
    assert set(test["period"]) == {"test"}
    assert pd.to_datetime(test["inspected_on"]).min() >= pd.Timestamp(periods.test_start)


def test_cli_refuses_bad_input_and_changes_nothing(
    first: TrainResult, province: FeatureRun, mlruns: Path, tmp_path: Path
) -> None:
    registry.configure(mlruns)
    champion_before = str(registry.champion("enterprise-risk").version)
    workdir = str(Workspace(province.workspace).root)
    cases = [
        (["promote", "--version", "999"], "no version 999"),
        (["train", "--config", str(tmp_path / "missing.yaml")], "no such configuration file"),
        (["score", "--as-of", "2026-13-01"], "not a date"),
        (["score", "--as-of", "2001-01-01"], "no snapshot"),
    ]
    for args, message in cases:
        result = runner.invoke(
            app,
            [*args, "--workdir", workdir, "--mlruns", str(mlruns)]
            if args[0] != "rollback"
            else args,
        )
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    registry.configure(mlruns)
    assert str(registry.champion("enterprise-risk").version) == champion_before


def test_config_validation_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("weighting: sometimes\nlightgbm: {params: {}}\n")
    with pytest.raises(ConfigError, match="weighting"):
        load_config(bad)
    bad.write_text("lightgbm: {params: {}}\nsplits: {test_months: 0}\n")
    with pytest.raises(ConfigError, match=r"splits\.test_months"):
        load_config(bad)
    bad.write_text("lightgbm: {params: {}}\nsurprise: 1\n")
    with pytest.raises(ConfigError, match="surprise"):
        load_config(bad)


def test_inspector_leniency_is_estimated_not_used_as_a_predictor(
    first: TrainResult, province: FeatureRun
) -> None:
    from scipy.stats import spearmanr

    assert first.model.booster.feature_name() == list(FEATURE_NAMES)
    assert not any("inspector" in name or "department" in name for name in FEATURE_NAMES)
    truth = pd.read_csv(Workspace(province.workspace).raw / "_truth" / "inspectors.csv")
    est = first.leniency.merge(truth, on="inspector_id", suffixes=("", "_true"))
    assert len(est) == len(first.leniency)  # every estimated inspector exists
    rho = spearmanr(est["strictness"], est["strictness_true"]).statistic
    assert rho > 0.2
    flagged = est.groupby("flag")["strictness_true"].mean()
    assert flagged["lenient"] < 0 < flagged["strict"]


def test_cli_scores_with_the_champion_and_lists_models(
    first: TrainResult, province: FeatureRun, mlruns: Path, tmp_path: Path
) -> None:
    workdir = str(Workspace(province.workspace).root)
    out = tmp_path / "scores.parquet"
    args = ["--workdir", workdir, "--mlruns", str(mlruns)]
    result = runner.invoke(app, ["score", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    registry.configure(mlruns)
    champion = str(registry.champion("enterprise-risk").version)
    assert (scored["model_version"] == champion).all()
    assert len(scored) == province.snapshot.rows
    listing = runner.invoke(app, ["models", "--mlruns", str(mlruns)])
    assert listing.exit_code == 0, listing.output
    assert "★" in listing.output
