"""One small synthetic province, generated, validated and snapshotted once for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.pipeline import FeatureRun, run_synthetic
from features.workspace import Workspace
from tests.postgres import database, postgres_db, postgres_server, postgres_url  # noqa: F401

ENTERPRISES = 4_000
SEED = 11


@pytest.fixture(scope="session")
def province(tmp_path_factory: pytest.TempPathFactory) -> FeatureRun:
    ws = Workspace(tmp_path_factory.mktemp("province"))
    return run_synthetic(ws, enterprises=ENTERPRISES, seed=SEED)


@pytest.fixture(scope="session")
def validated(province: FeatureRun) -> Path:
    return Workspace(province.workspace).validated


@pytest.fixture(scope="session")
def champion_mlruns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow home whose only model is the champion below (tests must not add versions)."""
    return tmp_path_factory.mktemp("mlruns-champion")


@pytest.fixture(scope="session")
def champion(province: FeatureRun, validated: Path, champion_mlruns: Path):
    """The shipped configuration (one search candidate) trained and crowned champion once."""
    from tests.training.test_train import config
    from training.train import train

    return train(validated, config(), province.snapshot.path, mlruns=champion_mlruns)
