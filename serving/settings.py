"""Where the service and the serving CLI find things: one reading of the environment.

``RISK_WORKDIR`` (workspace: snapshots, validated sources, draws), ``RISK_MLRUNS`` (MLflow
home), ``RISK_DB`` (SQLAlchemy URL of the audit trail, API keys, draws and results; default a
SQLite file ``service.db`` in the workspace; PostgreSQL by URL,
``postgresql+psycopg://user:password@host:5432/db`` — or libpq's ``postgresql://…``, read as
psycopg 3, see :func:`serving.audit.database_url`), ``RISK_MODEL`` (registered model name).
Kept free of BentoML so the CLI starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from features.workspace import Workspace


@dataclass(frozen=True)
class Settings:
    workdir: Path
    mlruns: Path | None
    db: str
    model: str

    @property
    def validated(self) -> Path:
        return self.workdir / "validated"


def settings(
    workdir: Path | None = None, mlruns: Path | None = None, db: str | None = None
) -> Settings:
    ws = Workspace.from_env(workdir)
    root = Path(ws.root).resolve()
    env_mlruns = os.environ.get("RISK_MLRUNS")
    return Settings(
        workdir=root,
        mlruns=mlruns or (Path(env_mlruns) if env_mlruns else None),
        db=db or os.environ.get("RISK_DB") or f"sqlite:///{root / 'service.db'}",
        model=os.environ.get("RISK_MODEL", "enterprise-risk"),
    )
