"""A real server on loopback over the session's champion and province, with one key per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from features.pipeline import FeatureRun
from features.workspace import Workspace
from serving.auth import KeyStore
from serving.draw_desk import synthetic_roster
from tests.serving.server import bentoml_server


@dataclass(frozen=True)
class Live:
    url: str
    db: str
    keys: dict[str, str]
    snapshot: pd.DataFrame
    workdir: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


@pytest.fixture(scope="session")
def live(
    province: FeatureRun,
    champion,
    champion_mlruns: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("service")
    db = f"sqlite:///{folder / 'service.db'}"
    store = KeyStore(db)
    keys = {
        role: store.create_key(role, f"test {role}") for role in ("platform", "auditor", "admin")
    }
    workdir = Path(Workspace(province.workspace).root)
    synthetic_roster(workdir)
    env = {"RISK_WORKDIR": str(workdir), "RISK_MLRUNS": str(champion_mlruns), "RISK_DB": db}
    with bentoml_server(env, folder / "server.log") as url:
        yield Live(url, db, keys, pd.read_parquet(province.snapshot.path), workdir)
