"""Training configuration: leaving features out is checked against the catalogue."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from features.encode import Encoder
from training.config import DEFAULT_CONFIG, ConfigError, load_config


def test_exclude_features_must_name_catalogue_features(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude_features: not catalogue features: regoin"):
        load_config(DEFAULT_CONFIG, exclude_features=["regoin"])
    cfg = load_config(DEFAULT_CONFIG, exclude_features=["region"])
    assert cfg.exclude_features == ("region",)


def test_encoder_leaves_excluded_features_out() -> None:
    frame = pd.DataFrame([{n: None for n in FEATURE_NAMES}] * 2).assign(
        region=["330205", "330206"], industry=["C", "H"], age_years=[1.0, 2.0]
    )
    enc = Encoder.fit(frame, exclude=("region",))
    assert "region" not in enc.feature_names and "region" not in enc.vocabularies
    assert len(enc.feature_names) == len(FEATURE_NAMES) - 1
    assert enc.matrix(frame).shape == (2, len(FEATURE_NAMES) - 1)
    # stored and loaded with the model: the same columns come back
    assert Encoder.from_json(enc.to_json()) == enc
    with pytest.raises(KeyError, match="not catalogue features"):
        Encoder.fit(frame, exclude=("nope",))
