"""The real-data benchmark: its metrics on constructed cases, and the whole path on Chicago."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from features.adapters import locate_dataset
from features.workspace import Workspace
from serving.cli import app
from training.evaluate import share_of_problems_found
from training.real_benchmark import CHICAGO_REPORTED, order_metrics, run_chicago, within_team_auc


def test_share_found_in_the_first_half() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    best = np.arange(10, 0, -1, dtype=float)  # positives first
    assert share_of_problems_found(y, best, 0.5) == pytest.approx(1.0)
    assert share_of_problems_found(y, -best, 0.5) == pytest.approx(0.0)
    # one tie group: half the problems in expectation, whatever the row order
    assert share_of_problems_found(y, np.zeros(10), 0.5) == pytest.approx(0.5)
    # 2 of the 3 positives in the top 5
    mixed = np.array([9, 8, 1, 7, 6, 5, 4, 3, 2, 0], dtype=float)
    assert share_of_problems_found(y, mixed, 0.5) == pytest.approx(2 / 3)


def test_within_team_auc_holds_the_inspector_fixed() -> None:
    # team A finds problems often, team B rarely; inside each team the score ranks perfectly
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    team = np.array(["A", "A", "A", "A", "B", "B", "B", "B"])
    firm = np.array([0.9, 0.8, 0.1, 0.7, 0.95, 0.2, 0.1, 0.05])
    assert within_team_auc(np.r_[y[:4], 1, 0, 0, 0], firm, team) == pytest.approx(1.0)
    who = np.where(team == "A", 0.75, 0.0)  # knows only the team
    assert within_team_auc(y, who, team) == pytest.approx(0.5)
    assert order_metrics(y, who, probabilistic=True)["roc_auc"] > 0.8


def test_order_metrics_rank_non_probability_orders() -> None:
    y = np.array([1, 0, 1, 0, 0, 0])
    days = -np.arange(6, dtype=float)  # earlier first
    m = order_metrics(y, days, probabilistic=False)
    assert np.isnan(m["brier"]) and np.isnan(m["ece"])
    assert m["share_found_first_half"] == pytest.approx(1.0)
    assert 0.5 < m["roc_auc"] <= 1.0


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    work = tmp_path / "work"
    res = runner.invoke(app, ["real-benchmark", "boston", "--workdir", str(work)])
    assert res.exit_code == 2 and "unknown dataset" in res.output
    res = runner.invoke(
        app, ["real-benchmark", "--data", str(tmp_path / "nowhere"), "--workdir", str(work)]
    )
    assert res.exit_code == 2 and "--data" in res.output and "nowhere" in res.output
    assert not work.exists()


def _chicago() -> Path:
    try:
        return locate_dataset("chicago-food-inspections")
    except FileNotFoundError as exc:  # the team's shared data are not on this machine
        pytest.skip(str(exc))


@pytest.mark.slow
def test_chicago_end_to_end(tmp_path: Path) -> None:
    bench = run_chicago(_chicago(), Workspace(tmp_path / "work"), mlruns=tmp_path / "mlruns")
    t = bench.table.set_index("model")
    # the City's own figures come out of our metric on its rows: the metric is theirs
    assert t.loc["actual_order", "share_found_first_half"] == pytest.approx(
        CHICAGO_REPORTED["existing_order_first_half"], abs=0.01
    )
    assert t.loc["city_glmnet", "share_found_first_half"] == pytest.approx(
        CHICAGO_REPORTED["share_found_first_half"], abs=0.01
    )
    assert bench.rows_compared >= 0.99 * bench.city_test_rows
    # ours beats a random ordering and the rule baseline on the latest period
    for metric in ("share_found_first_half", "roc_auc", "within_team_auc"):
        assert t.loc["lightgbm", metric] > t.loc["expert_rules", metric]
        assert t.loc["lightgbm", metric] > t.loc["random", metric]
    # the inspector never enters the model, and the ZIP region that stands in for it is out
    assert "region" not in bench.result.model.encoder.feature_names
    assert bench.result.model_version == "1"
    # every quarantined row is accounted for
    for s in bench.validation.sources.values():
        assert s.rows_read == s.rows_kept + s.rows_quarantined
