"""Category vocabularies shared by training and serving: a feature frame → a numeric matrix.

Why it exists: LightGBM rejects pandas 3 ``str`` columns, and a category's integer code must
mean the same thing when the model is trained, saved, loaded by the service and explained.
Industry and enterprise type have fixed vocabularies from the contracts; regions are learned
from the training data and stored with the model. A value outside the vocabulary (a county
the model never saw, a missing value) becomes NaN, which the model treats as missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from features.contracts import ENTERPRISE_TYPES, INDUSTRIES

#: Vocabularies fixed by the contracts; the others are learned by ``Encoder.fit``.
FIXED_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "industry": tuple(INDUSTRIES),
    "enterprise_type": tuple(ENTERPRISE_TYPES),
}


@dataclass(frozen=True)
class Encoder:
    """Maps the catalogue's feature columns (all, or all but some) to a float64 matrix."""

    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @classmethod
    def fit(cls, frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> Encoder:
        """Fixed vocabularies where the contracts give one; sorted observed values otherwise.

        ``exclude`` leaves catalogue features out of the model (a dataset may have no real
        source for one, or one may stand in for something the model must not use).
        """
        unknown = sorted(set(exclude) - set(FEATURE_NAMES))
        if unknown:
            raise KeyError(f"not catalogue features: {', '.join(unknown)}")
        names = tuple(n for n in FEATURE_NAMES if n not in exclude)
        vocab: dict[str, tuple[str, ...]] = {}
        for name in (n for n in CATEGORICAL_FEATURES if n in names):
            if name in FIXED_VOCABULARIES:
                vocab[name] = FIXED_VOCABULARIES[name]
            else:
                vocab[name] = tuple(sorted(frame[name].dropna().astype(str).unique()))
        return cls(vocabularies=vocab, feature_names=names)

    @property
    def categorical_indices(self) -> list[int]:
        return [self.feature_names.index(n) for n in self.vocabularies]

    def codes(self, name: str, values: pd.Series) -> np.ndarray:
        """Integer code of each value as float; NaN when missing or not in the vocabulary."""
        lookup = {v: float(i) for i, v in enumerate(self.vocabularies[name])}
        return values.astype(object).map(lookup).to_numpy(dtype=np.float64, na_value=np.nan)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input: one float64 column per feature, C-contiguous."""
        missing = [n for n in self.feature_names if n not in frame.columns]
        if missing:
            raise KeyError(f"feature columns missing: {', '.join(missing)}")
        out = np.empty((len(frame), len(self.feature_names)), dtype=np.float64)
        for j, name in enumerate(self.feature_names):
            if name in self.vocabularies:
                out[:, j] = self.codes(name, frame[name])
            else:
                out[:, j] = pd.to_numeric(frame[name], errors="raise").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        return out

    def encoded_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The matrix as a DataFrame with the feature names (what the model signature shows)."""
        return pd.DataFrame(self.matrix(frame), columns=list(self.feature_names))

    def to_json(self) -> str:
        return json.dumps(
            {
                "feature_names": list(self.feature_names),
                "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Encoder:
        data = json.loads(text)
        return cls(
            vocabularies={k: tuple(v) for k, v in data["vocabularies"].items()},
            feature_names=tuple(data["feature_names"]),
        )
