"""Batch scoring: a whole population's feature snapshot → probabilities and tiers in Parquet.

Why it records versions on every row: a tier handed to an inspection platform must be traceable
to the model version that produced it and to the snapshot (date, feature catalogue, data
fingerprint) it was computed from, even after the file has been copied elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.risk_model import RiskModel


@dataclass(frozen=True)
class ScoreRun:
    path: Path
    rows: int
    model_version: str
    snapshot: str
    scoring_path: str


def snapshot_version(snapshot: Path) -> dict:
    """The snapshot's identity: its sidecar JSON (as-of date, catalogue, data fingerprint)."""
    meta_path = snapshot.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return {
        "snapshot": snapshot.name,
        "as_of": meta.get("as_of"),
        "catalogue_version": meta.get("catalogue_version"),
        "data_fingerprint": meta.get("data_fingerprint"),
    }


def load_snapshot(model: RiskModel, snapshot: Path) -> tuple[pd.DataFrame, dict]:
    """The snapshot's rows and identity, refused if built with another feature catalogue."""
    if not snapshot.is_file():
        raise FileNotFoundError(f"{snapshot}: no such feature snapshot")
    frame = pd.read_parquet(snapshot)
    version = snapshot_version(snapshot)
    trained_on = model.meta.get("catalogue_version")
    if version["catalogue_version"] and trained_on and version["catalogue_version"] != trained_on:
        raise ValueError(
            f"{snapshot}: built with feature catalogue {version['catalogue_version']}, but the "
            f"model was trained on {trained_on}; rebuild the snapshot"
        )
    return frame, version


def stamp(out: pd.DataFrame, model: RiskModel, version: dict) -> pd.DataFrame:
    """Model name and version and the snapshot's identity on every row."""
    out["model_name"] = model.meta.get("registered_model", "")
    out["model_version"] = str(model.meta.get("model_version", ""))
    for key, value in version.items():
        out[f"snapshot_{key}" if key != "snapshot" else "snapshot"] = value
    return out


def write_atomically(out: pd.DataFrame, out_path: Path) -> None:
    """Write beside the target and rename, so a failed run never leaves half a file."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".parquet.tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(out_path)


def score_snapshot(
    model: RiskModel, snapshot: Path, out_path: Path, *, accelerated: bool = True
) -> ScoreRun:
    """Score every enterprise of ``snapshot``; write Parquet atomically next to ``out_path``."""
    frame, version = load_snapshot(model, snapshot)
    scored = model.predict(frame, accelerated=accelerated)
    out = stamp(pd.concat([frame[["credit_code", "as_of"]], scored], axis=1), model, version)
    write_atomically(out, out_path)
    return ScoreRun(
        path=out_path,
        rows=len(out),
        model_version=str(model.meta.get("model_version", "")),
        snapshot=snapshot.name,
        scoring_path=model.last_path,
    )
