"""What the service holds in memory: the champion, the latest snapshot scored once, reasons.

Why score the whole snapshot at start-up: tiers of a snapshot only change when the model or
the snapshot does, and both are fixed for the life of a server; a tier request is then a
dictionary lookup (the province's 2.5 M rows score in seconds with the compiled forest).
Reasons are computed on first request per enterprise with the exact SHAP path and kept.
Everything here is plain Python, testable without a server; ``serving.service`` wraps it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.catalogue import feature
from features.credit_code import mask
from features.workspace import Workspace
from training.explain.contributions import contributions, top_k
from training.explain.reasons import render
from training.risk_model import RiskModel

log = logging.getLogger(__name__)

MAX_REASONS = 10


class NotReady(RuntimeError):
    """The service has no champion or no snapshot: it must not answer tier requests."""


class BadRequest(ValueError):
    """A request the service refuses; ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message
        self.status = status


@dataclass
class Loaded:
    model: RiskModel
    model_name: str
    model_version: str
    snapshot: Path
    as_of: date
    frame: pd.DataFrame
    index: dict[str, int]
    probability: np.ndarray
    tiers: dict[str, np.ndarray]
    rules: dict[str, np.ndarray]
    values: np.ndarray
    X: np.ndarray
    up: np.ndarray = field(init=False)
    down: np.ndarray = field(init=False)
    contrib: np.ndarray = field(init=False)
    explained: np.ndarray = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        n = len(self.frame)
        self.up = np.full((n, MAX_REASONS), -1, dtype=np.int32)
        self.down = np.full((n, MAX_REASONS), -1, dtype=np.int32)
        self.contrib = np.zeros((n, MAX_REASONS * 2), dtype=np.float64)
        self.explained = np.zeros(n, dtype=bool)

    @property
    def snapshot_version(self) -> str:
        return self.snapshot.stem.removeprefix("features_")


def load(workdir: Path | None, mlruns: Path | None, model_name: str) -> Loaded:
    """The champion and the latest snapshot scored; NotReady naming what is missing."""
    from training import registry

    ws = Workspace.from_env(workdir)
    found = sorted(ws.snapshots.glob("features_*.parquet"))
    if not found:
        raise NotReady(
            f"no feature snapshot in {ws.snapshots}; run `riskctl demo` or `riskctl features`"
        )
    root = registry.mlruns_root(mlruns)
    if not (root / "mlflow.db").is_file():  # never create a registry from a server worker
        raise NotReady(f"no MLflow registry at {root}; run `riskctl demo` or `riskctl train`")
    registry.configure(root)
    try:
        model, mv = registry.load(model_name)
    except LookupError as exc:
        raise NotReady(f"{exc}") from None
    snapshot = found[-1]
    frame = pd.read_parquet(snapshot)
    pred = model.predict(frame)
    schemes = model.scheme_names
    names = list(model.encoder.feature_names)
    log.info("loaded %s v%s and %s (%d enterprises)", model_name, mv.version, snapshot, len(frame))
    return Loaded(
        model=model,
        model_name=model_name,
        model_version=str(mv.version),
        snapshot=snapshot,
        as_of=pd.Timestamp(frame["as_of"].iloc[0]).date(),
        frame=frame,
        index={c: i for i, c in enumerate(frame["credit_code"])},
        probability=pred["probability"].to_numpy(),
        tiers={s: pred[f"tier_{s}"].to_numpy(dtype=object) for s in schemes},
        rules={s: pred[f"rule_{s}"].to_numpy(dtype=object) for s in schemes},
        values=frame[names].to_numpy(dtype=object),
        X=model.encoder.matrix(frame),
    )


def scheme_of(model: RiskModel, scheme: str | None) -> str:
    if scheme is None:
        return model.policy.active
    if scheme not in model.scheme_names:
        raise BadRequest("scheme", f"{scheme!r} is not one of {', '.join(model.scheme_names)}")
    return scheme


def _explain_rows(state: Loaded, rows: np.ndarray) -> None:
    """Exact contributions and top reasons for rows not explained yet (kept for next time)."""
    todo = rows[~state.explained[rows]]
    if len(todo) == 0:
        return
    todo = np.unique(todo)
    c = contributions(state.model.booster, state.X[todo])
    up, down = top_k(c.values, MAX_REASONS)
    with state.lock:
        state.up[todo] = up
        state.down[todo] = down
        r = np.arange(len(todo))[:, None]
        state.contrib[todo, :MAX_REASONS] = np.where(up >= 0, c.values[r, np.maximum(up, 0)], 0)
        state.contrib[todo, MAX_REASONS:] = np.where(down >= 0, c.values[r, np.maximum(down, 0)], 0)
        state.explained[todo] = True


def explain_all(state: Loaded, block: int = 20_000) -> None:
    """Top reasons of the whole snapshot, block by block (run in a background thread at
    start-up: requests for rows not reached yet are explained on demand)."""
    for lo in range(0, len(state.frame), block):
        _explain_rows(state, np.arange(lo, min(lo + block, len(state.frame))))
    log.info("top reasons ready for %d enterprises", len(state.frame))


def _reasons(state: Loaded, i: int, k: int, lang: str) -> dict[str, list[dict]]:
    names = state.model.encoder.feature_names
    out: dict[str, list[dict]] = {"reasons_raising_risk": [], "reasons_lowering_risk": []}
    for key, idx, offset in (
        ("reasons_raising_risk", state.up[i], 0),
        ("reasons_lowering_risk", state.down[i], MAX_REASONS),
    ):
        for j in range(k):
            f = int(idx[j])
            if f < 0:
                break
            name = names[f]
            out[key].append(
                {
                    "code": feature(name).code,
                    "feature": name,
                    "contribution": float(state.contrib[i, offset + j]),
                    "text": render(name, state.values[i, f], lang),
                }
            )
    return out


def tiers(
    state: Loaded,
    codes: list[str],
    *,
    scheme: str | None,
    reasons: int,
    lang: str,
    masked: bool = False,
) -> tuple[str, list[str | None]]:
    """The JSON answer for ``codes`` (one item per code, in order; unknown codes answer
    ``found: false``) and the tier of each (None when unknown) for the audit trail.

    Why text built here rather than dicts serialised later: a tier lookup is microseconds,
    while walking a 1,000-item answer generically (masking, JSON conversion) took most of a
    batch request's time. ``masked`` hides individual businesses' codes (see serving.masking).
    """
    active = scheme_of(state.model, scheme)
    rows = [state.index.get(c, -1) for c in codes]
    if reasons:
        known = np.array([r for r in rows if r >= 0], dtype=np.int64)
        _explain_rows(state, known)
    tiers_of = state.tiers[active]
    rules_of = state.rules[active]
    schemes = list(state.tiers.items())
    items, summary = [], []
    for code, i in zip(codes, rows, strict=True):
        shown = json.dumps(mask(code) if masked else code)
        if i < 0:
            items.append(f'{{"credit_code":{shown},"found":false}}')
            summary.append(None)
            continue
        all_tiers = ",".join(f'"{s}":{json.dumps(t[i])}' for s, t in schemes)
        item = (
            f'{{"credit_code":{shown},"found":true,"probability":{float(state.probability[i])!r},'
            f'"scheme":"{active}","tier":{json.dumps(tiers_of[i])},'
            f'"rule":{json.dumps(rules_of[i])},"tiers":{{{all_tiers}}}'
        )
        if reasons:
            item += "," + json.dumps(_reasons(state, i, reasons, lang), ensure_ascii=False)[1:-1]
        items.append(item + "}")
        summary.append(tiers_of[i])
    head = (
        f'{{"model_version":"{state.model_version}",'
        f'"snapshot_version":"{state.snapshot_version}","results":['
    )
    return head + ",".join(items) + "]}", summary


def score_rows(
    model: RiskModel, rows: list[dict], *, scheme: str | None, reasons: int, lang: str
) -> list[dict]:
    """Probability, tiers and reasons of supplied feature rows (same path as batch scoring)."""
    active = scheme_of(model, scheme)
    frame = pd.DataFrame(rows, columns=list(model.encoder.feature_names))
    for name, vocab in model.encoder.vocabularies.items():
        for i, v in enumerate(frame[name]):
            if v is not None and not pd.isna(v) and str(v) not in vocab:
                raise BadRequest(
                    f"rows[{i}].{name}",
                    f"{v!r} is not a known value ({len(vocab)} known, e.g. {', '.join(vocab[:5])})",
                )
    pred = model.predict(frame)
    out = []
    if reasons:
        c = contributions(model.booster, model.encoder.matrix(frame))
        up, down = top_k(c.values, reasons)
    names = model.encoder.feature_names
    for i in range(len(frame)):
        item = {
            "probability": float(pred["probability"].iat[i]),
            "scheme": active,
            "tier": pred[f"tier_{active}"].iat[i],
            "rule": pred[f"rule_{active}"].iat[i],
            "tiers": {s: pred[f"tier_{s}"].iat[i] for s in model.scheme_names},
        }
        if reasons:
            for key, idx in (("reasons_raising_risk", up[i]), ("reasons_lowering_risk", down[i])):
                item[key] = [
                    {
                        "code": feature(names[j]).code,
                        "feature": names[j],
                        "contribution": float(c.values[i, j]),
                        "text": render(names[j], frame[names[j]].iat[i], lang),
                    }
                    for j in idx
                    if j >= 0
                ]
        out.append(item)
    return out
