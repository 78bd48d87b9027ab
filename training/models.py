"""The main model: LightGBM with early stopping on the validation period and a bounded search.

Why these choices: gradient-boosted trees handle the mix of counts, missing values and
categories in credit records without hand-made transformations; early stopping and the search
use only the validation period, so the test period stays untouched for reporting. Training is
deterministic (fixed seed, ``deterministic``, column-wise histograms, a fixed thread count no
larger than the machine's cores), so the same data and configuration give the same trees.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.config import LightGBMConfig

log = logging.getLogger(__name__)


def cores() -> int:
    """Threads to use: never more than the machine has."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Matrix:
    """One period's model inputs."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray


@dataclass(frozen=True)
class LightGBMFit:
    booster: lgb.Booster
    params: dict
    best_iteration: int
    valid_auc: float
    search: pd.DataFrame


def _params(base: dict, override: dict, seed: int) -> dict:
    params = {**base, **override}
    params.update(
        seed=seed,
        deterministic=True,
        force_col_wise=True,
        num_threads=cores(),
        verbosity=params.get("verbosity", -1),
    )
    return params


def fit_lightgbm(
    train: Matrix,
    valid: Matrix,
    config: LightGBMConfig,
    *,
    seed: int,
    feature_names: list[str],
    categorical: list[int],
) -> LightGBMFit:
    """Try each search candidate with early stopping on validation; keep the best by AUC.

    The returned booster holds only the trees up to its best iteration, so saving, loading and
    the compiled scorer all see exactly the model that was chosen.
    """
    rows = []
    best: tuple[float, lgb.Booster, dict] | None = None
    for i, override in enumerate(config.search):
        params = _params(config.params, override, seed)
        dtrain = lgb.Dataset(
            train.X,
            label=train.y,
            weight=train.w,
            feature_name=feature_names,
            categorical_feature=categorical,
            free_raw_data=False,
        )
        dvalid = lgb.Dataset(valid.X, label=valid.y, weight=valid.w, reference=dtrain)
        booster = lgb.train(
            {**params, "metric": "auc"},
            dtrain,
            num_boost_round=config.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        )
        iteration = booster.best_iteration or booster.current_iteration()
        auc = float(
            roc_auc_score(
                valid.y, booster.predict(valid.X, num_iteration=iteration), sample_weight=valid.w
            )
        )
        rows.append({"candidate": i, **override, "best_iteration": iteration, "valid_auc": auc})
        log.info("candidate %d %s: %d trees, valid AUC %.4f", i, override, iteration, auc)
        if best is None or auc > best[0]:
            best = (auc, booster, params)
    assert best is not None
    auc, booster, params = best
    iteration = booster.best_iteration or booster.current_iteration()
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=iteration))
    return LightGBMFit(
        booster=trimmed,
        params=params,
        best_iteration=iteration,
        valid_auc=auc,
        search=pd.DataFrame(rows),
    )
