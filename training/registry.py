"""MLflow tracking and registry under ``mlruns/``: log, register, alias, load, roll back.

Why a module of its own: the rest of the code should not care where models live. Tracking and
registry share one SQLite file (``mlruns/mlflow.db``; MLflow 3.13+ refuses a plain file store)
with artifacts under ``mlruns/artifacts``, so nothing needs a server. Promotion is a separate,
gated step (``training.promotion``); this module only moves the ``champion`` alias and keeps
its history in a registered-model tag, so ``rollback`` can return to the previous champion.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from training.risk_model import RiskModel

log = logging.getLogger(__name__)

DEFAULT_MLRUNS = Path("mlruns")
CHAMPION = "champion"
HISTORY_TAG = "champion_history"


def mlruns_root(root: Path | None = None) -> Path:
    """``root``, else ``$RISK_MLRUNS``, else ``mlruns/`` in the current directory."""
    return Path(root or os.environ.get("RISK_MLRUNS") or DEFAULT_MLRUNS).resolve()


def configure(root: Path | None = None) -> Path:
    """Point MLflow's tracking and registry at ``root`` (SQLite + local artifacts)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    root = mlruns_root(root)
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return root


def experiment_id(name: str, root: Path) -> str:
    """The experiment, created with its artifacts under ``root/artifacts`` if new."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(name, artifact_location=(root / "artifacts").as_uri())


def signature_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Catalogue columns as MLflow's schema understands them: numbers as float64 (NaN when
    missing — nullable integers break schema enforcement), categories as plain objects."""
    out = frame[list(FEATURE_NAMES)].reset_index(drop=True).copy()
    for col in out.columns:
        if col in CATEGORICAL_FEATURES:
            out[col] = out[col].astype(object)
        else:
            out[col] = pd.to_numeric(out[col]).astype("float64")
    return out


def log_model(model: RiskModel, example: pd.DataFrame, registered_model: str) -> ModelVersion:
    """Log the model to the active run with signature and input example, and register it."""
    sample = signature_frame(example.head(5))
    output = model.predict(sample).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = model.save(Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"bundle": str(bundle)},
            signature=infer_signature(sample, output),
            input_example=sample,
            registered_model_name=registered_model,
            pip_requirements=_requirements(),
        )
    client = MlflowClient()
    version = client.get_model_version(registered_model, str(info.registered_model_version))
    return version


def _requirements() -> list[str]:
    from importlib.metadata import version

    names = ["mlflow", "lightgbm", "numpy", "pandas", "pyyaml", "pydantic", "scikit-learn"]
    return [f"{n}=={version(n)}" for n in names]


def champion(name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None when there is none yet."""
    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def history(name: str) -> list[str]:
    """Champion versions in the order they were promoted (last = current)."""
    model = MlflowClient().get_registered_model(name)
    return json.loads(model.tags.get(HISTORY_TAG, "[]"))


def set_champion(name: str, version: str) -> None:
    """Give ``version`` the champion alias and append it to the history."""
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, version)
    past = history(name)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps([*past, str(version)]))


def rollback(name: str) -> str:
    """Return the champion alias to the previous champion; refuse when there is none."""
    past = history(name)
    if len(past) < 2:
        raise ValueError(
            f"model {name!r}: no previous champion to roll back to (history: {past or 'empty'})"
        )
    client = MlflowClient()
    previous = past[-2]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(past[:-1]))
    client.set_model_version_tag(name, past[-1], "rolled_back", "true")
    return previous


def load(name: str, version: str | None = None) -> tuple[RiskModel, ModelVersion]:
    """Load a registered version (default: the champion) as a ``RiskModel``."""
    client = MlflowClient()
    if version is None:
        mv = champion(name)
        if mv is None:
            raise LookupError(f"model {name!r} has no champion yet; run `riskctl train`")
    else:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException:
            raise LookupError(f"model {name!r} has no version {version}") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp
        )
        bundle = next(Path(path).rglob("model.json")).parent
        model = RiskModel.load(bundle)
    model.meta["model_version"] = str(mv.version)
    model.meta["run_id"] = mv.run_id
    return model, mv
