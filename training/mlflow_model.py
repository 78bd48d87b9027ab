"""The risk model as an MLflow pyfunc, logged as code ("models from code"), not as a pickle.

MLflow runs this file when it loads the model; the model's files (trees, vocabularies,
calibration, tier policy, rules) come from the ``bundle`` artifact. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from training.risk_model import RiskModel


class RiskPyfunc(mlflow.pyfunc.PythonModel):
    """Raw catalogue features in; probability, raw score and tiers under every scheme out."""

    def load_context(self, context) -> None:
        self.model = RiskModel.load(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        return self.model.predict(model_input).reset_index(drop=True)


mlflow.models.set_model(RiskPyfunc())
