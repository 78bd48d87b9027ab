"""One small synthetic province, generated, validated and snapshotted once for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.pipeline import FeatureRun, run_synthetic
from features.workspace import Workspace

ENTERPRISES = 4_000
SEED = 11


@pytest.fixture(scope="session")
def province(tmp_path_factory: pytest.TempPathFactory) -> FeatureRun:
    ws = Workspace(tmp_path_factory.mktemp("province"))
    return run_synthetic(ws, enterprises=ENTERPRISES, seed=SEED)


@pytest.fixture(scope="session")
def validated(province: FeatureRun) -> Path:
    return Workspace(province.workspace).validated
