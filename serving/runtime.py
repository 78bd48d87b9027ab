"""What the service holds in memory: the champion, the latest snapshot scored once, reasons.

Why score the whole snapshot at start-up: tiers of a snapshot only change when the model or
the snapshot does, and both are fixed for the life of a server; a tier request is then a
dictionary lookup (the province's 2.5 M rows score in seconds with the compiled forest).
Reasons are computed on first request per enterprise with the exact SHAP path and kept.
Everything here is plain Python, testable without a server; ``serving.service`` wraps it.
"""

from __future__ import annotations

import functools
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

    @functools.cached_property
    def snapshot_version(self) -> str:
        """``features_<version>.parquet`` → ``<version>`` (kept: every answer names it)."""
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
    state = Loaded(
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
    rendered(state)  # the JSON spellings tier requests are built from
    return state


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


@functools.cache
def _feature_code(name: str) -> str:
    return feature(name).code


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
                    "code": _feature_code(name),
                    "feature": name,
                    "contribution": float(state.contrib[i, offset + j]),
                    "text": render(name, state.values[i, f], lang),
                }
            )
    return out


@dataclass(frozen=True)
class Rendered:
    """JSON spellings of the small-domain columns, for :func:`tiers` (built once per state).

    ``tier[s]``/``rule[s]``: per row, a code into ``tier_text[s]``/``rule_text[s]`` (the JSON
    of each distinct value); ``combo``: per row, a code into ``combo_text`` (the
    ``"tiers":{...}`` member with every scheme's tier). One byte or two per row and scheme, so
    a batch is gathered with numpy instead of formatted value by value."""

    tier: dict[str, np.ndarray]
    tier_text: dict[str, np.ndarray]
    rule: dict[str, np.ndarray]
    rule_text: dict[str, np.ndarray]
    combo: np.ndarray
    combo_text: np.ndarray


def _lookup(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    text = np.array([json.dumps(_py(u)) for u in uniques], dtype=object)
    return codes.astype(np.int32), text


def _py(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def rendered(state: Loaded) -> Rendered:
    """``state``'s :class:`Rendered` (computed on first use, then kept on the state)."""
    got = state.__dict__.get("_rendered")
    if got is not None:
        return got
    tier, tier_text, rule, rule_text = {}, {}, {}, {}
    for s in state.tiers:
        tier[s], tier_text[s] = _lookup(state.tiers[s])
        rule[s], rule_text[s] = _lookup(state.rules[s])
    names = list(state.tiers)
    # one code per distinct combination of every scheme's tier
    combo_key = np.zeros(len(state.frame), dtype=np.int64)
    for s in names:
        combo_key = combo_key * (len(tier_text[s]) + 1) + tier[s]
    _, first_row, combo = np.unique(combo_key, return_index=True, return_inverse=True)
    combo_text = np.array(
        [
            '"tiers":{' + ",".join(f'"{s}":{tier_text[s][tier[s][i]]}' for s in names) + "}"
            for i in first_row
        ],
        dtype=object,
    )
    out = Rendered(tier, tier_text, rule, rule_text, combo.astype(np.int32), combo_text)
    state.__dict__["_rendered"] = out
    return out


def _bare(text: str) -> bool:
    """Whether ``text`` is ASCII letters, digits and ``*`` only (no JSON escaping needed):
    well-formed codes, masked or not."""
    return text.isascii() and (text.isalnum() or text.replace("*", "").isalnum())


def _quoted(code: str) -> str:
    """JSON string of a code: well-formed and masked codes need no escaping."""
    return f'"{code}"' if _bare(code) else json.dumps(code)


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
    batch request's time. The batch's columns are gathered with numpy from the JSON spellings
    in :func:`rendered`, so an item is one string format. ``masked`` hides individual
    businesses' codes (see serving.masking).
    """
    active = scheme_of(state.model, scheme)
    index = state.index
    rows = [index.get(c, -1) for c in codes]
    if reasons:
        known = np.array([r for r in rows if r >= 0], dtype=np.int64)
        _explain_rows(state, known)
    rend = rendered(state)
    if len(rows) <= 8:  # a few codes: indexing item by item beats building arrays
        prob, tier_js, rule_js, combo_js, tier_values = [], [], [], [], []
        tier, tier_text = rend.tier[active], rend.tier_text[active]
        rule, rule_text = rend.rule[active], rend.rule_text[active]
        combo, combo_text = rend.combo, rend.combo_text
        probability, tiers_of = state.probability, state.tiers[active]
        for i in rows:  # one pass (a batch of one is the common request)
            i = max(i, 0)
            prob.append(float(probability[i]))
            tier_js.append(tier_text[tier[i]])
            rule_js.append(rule_text[rule[i]])
            combo_js.append(combo_text[combo[i]])
            tier_values.append(tiers_of[i])
    else:
        at = np.maximum(np.array(rows, dtype=np.int64), 0)
        prob = state.probability[at].tolist()
        tier_js = rend.tier_text[active][rend.tier[active][at]].tolist()
        rule_js = rend.rule_text[active][rend.rule[active][at]].tolist()
        combo_js = rend.combo_text[rend.combo[at]].tolist()
        tier_values = state.tiers[active][at].tolist()
    shown = [mask(c) for c in codes] if masked else codes
    quoted = [f'"{c}"' for c in shown] if _bare("".join(shown)) else [_quoted(c) for c in shown]
    found = ',"found":true,"probability":'
    scheme_part = f',"scheme":"{active}","tier":'
    items = [
        f'{{"credit_code":{q}{found}{p!r}{scheme_part}{t},"rule":{r},{c}'
        if i >= 0
        else f'{{"credit_code":{q},"found":false'
        for q, i, p, t, r, c in zip(quoted, rows, prob, tier_js, rule_js, combo_js, strict=True)
    ]
    if reasons:
        for n, i in enumerate(rows):
            if i >= 0:
                more = json.dumps(_reasons(state, i, reasons, lang), ensure_ascii=False)
                items[n] += "," + more[1:-1]
    summary = [v if i >= 0 else None for i, v in zip(rows, tier_values, strict=True)]
    head = (
        f'{{"model_version":"{state.model_version}",'
        f'"snapshot_version":"{state.snapshot_version}","results":['
    )
    body = "},".join(items) + "}" if items else ""  # each item still lacks its closing brace
    return head + body + "]}", summary


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
