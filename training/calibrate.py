"""Probability calibration fitted on the validation period.

Why: a tier cut-off or a sampling ratio only means something if "20 %" means that about one
inspection in five finds a problem. The calibrator maps the model's raw score (log-odds) to a
probability; it is fitted on a later period than the trees, with the same selection weights.
Platt scaling (the default) is strictly increasing, so it never reorders enterprises; isotonic
is monotone but may tie neighbours. Both are stored as plain numbers and applied here, so the
service reproduces them exactly without scikit-learn objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Calibrator:
    method: Literal["platt", "isotonic"]
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()

    @classmethod
    def fit(
        cls,
        raw: np.ndarray,
        label: np.ndarray,
        weight: np.ndarray | None = None,
        method: Literal["platt", "isotonic"] = "platt",
    ) -> Calibrator:
        raw = np.asarray(raw, dtype=np.float64)
        label = np.asarray(label)
        if len(np.unique(label)) < 2:
            raise ValueError("calibration needs both outcomes in the validation period")
        if method == "platt":
            lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000, tol=1e-10)
            lr.fit(raw.reshape(-1, 1), label, sample_weight=weight)
            slope, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
            if slope <= 0:
                raise ValueError(
                    f"calibration slope {slope:.4f} ≤ 0: the model ranks the validation period "
                    "backwards; refusing to calibrate"
                )
            return cls(method="platt", slope=slope, intercept=intercept)
        if method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(raw, label, sample_weight=weight)
            return cls(
                method="isotonic",
                knots_x=tuple(map(float, iso.X_thresholds_)),
                knots_y=tuple(map(float, iso.y_thresholds_)),
            )
        raise ValueError(f"calibration: unknown method {method!r}")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probability of a problem for each raw score."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "platt":
            return sigmoid(self.slope * raw + self.intercept)
        return np.interp(raw, self.knots_x, self.knots_y)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        return cls(
            method=data["method"],
            slope=data["slope"],
            intercept=data["intercept"],
            knots_x=tuple(data["knots_x"]),
            knots_y=tuple(data["knots_y"]),
        )
