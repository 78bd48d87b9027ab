"""The 29 point-in-time features written the way a data scientist would write them in pandas.

Why this exists: it is an independent re-implementation of the feature spec (read the typed
Parquet files, merge the events onto the (credit_code, as_of) pairs, filter dates, group by),
written without looking at the DuckDB SQL. The parity test compares the two exactly, and the
pipeline benchmark uses it as the baseline the SQL build is measured against. It is correct and
plain, not tuned: it materialises every (pair, event) match in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.contracts import GRADES, PENALTY_KINDS

log = logging.getLogger(__name__)

#: Output columns after credit_code and as_of, in the spec's order.
FEATURES: tuple[str, ...] = (
    "age_years",
    "registered_capital",
    "industry",
    "region",
    "enterprise_type",
    "is_individual_business",
    "penalty_count_5y",
    "penalty_count_1y",
    "serious_penalty_count_5y",
    "penalty_max_severity_5y",
    "penalty_amount_5y",
    "days_since_last_penalty",
    "on_black_list",
    "on_abnormal_list",
    "on_red_list",
    "black_list_entries_5y",
    "abnormal_entries_1y",
    "credit_score_latest",
    "credit_grade_latest",
    "credit_score_change",
    "days_since_evaluation",
    "inspections_5y",
    "problems_found_5y",
    "past_problem_rate_5y",
    "problems_found_1y",
    "days_since_last_inspection",
    "complaints_1y",
    "substantiated_complaints_1y",
    "complaints_90d",
)

#: pandas dtype of each feature: BIGINT counts -> int64, INTEGER -> int32 (Int32 when it can be
#: NULL), DOUBLE -> float64 (NaN = NULL), VARCHAR -> str.
DTYPES: dict[str, str] = {
    "age_years": "float64",
    "registered_capital": "float64",
    "industry": "str",
    "region": "str",
    "enterprise_type": "str",
    "is_individual_business": "int32",
    "penalty_count_5y": "int64",
    "penalty_count_1y": "int64",
    "serious_penalty_count_5y": "int64",
    "penalty_max_severity_5y": "int32",
    "penalty_amount_5y": "float64",
    "days_since_last_penalty": "Int32",
    "on_black_list": "int32",
    "on_abnormal_list": "int32",
    "on_red_list": "int32",
    "black_list_entries_5y": "int64",
    "abnormal_entries_1y": "int64",
    "credit_score_latest": "float64",
    "credit_grade_latest": "Int32",
    "credit_score_change": "float64",
    "days_since_evaluation": "Int32",
    "inspections_5y": "int64",
    "problems_found_5y": "int64",
    "past_problem_rate_5y": "float64",
    "problems_found_1y": "int64",
    "days_since_last_inspection": "Int32",
    "complaints_1y": "int64",
    "substantiated_complaints_1y": "int64",
    "complaints_90d": "int64",
}

#: Features that are 0 (not NULL) when nothing matches.
ZERO_WHEN_NONE = (
    *(n for n, dt in DTYPES.items() if dt in ("int64", "int32") and n != "is_individual_business"),
    "penalty_amount_5y",
)

SEVERITY = {kind: i + 1 for i, kind in enumerate(PENALTY_KINDS)}
SERIOUS_KINDS = ("confiscation", "suspension", "revocation")
GRADE_RANK = {grade: i + 1 for i, grade in enumerate(GRADES)}


def _read(validated_dir: Path, source: str, columns: list[str]) -> pd.DataFrame:
    """Read one validated source; DATE columns come back as datetime64 so they compare."""
    return pd.read_parquet(
        validated_dir / f"{source}.parquet",
        columns=columns,
        to_pandas_kwargs={"date_as_object": False},
    )


def _known(pairs: pd.DataFrame, events: pd.DataFrame, event_col: str) -> pd.DataFrame:
    """Every (pair, event) of the same code whose event and recording are both before t."""
    matched = pairs.merge(events, on="credit_code")
    known = (matched[event_col] < matched["as_of"]) & (matched["recorded_at"] < matched["as_of"])
    return matched[known].reset_index(drop=True)


def _not_excluded(
    events: pd.DataFrame, source: str, repairs: pd.DataFrame, objections: pd.DataFrame
) -> pd.Series:
    """False where, at the pair's t, the record is repaired or under a standing objection."""
    keys = events[["record_id", "as_of"]].reset_index(names="_row")

    rep = repairs[repairs["target_source"] == source]
    hits = keys.merge(rep, left_on="record_id", right_on="target_record_id")
    repaired = hits.loc[
        (hits["repaired_on"] < hits["as_of"]) & (hits["recorded_at"] < hits["as_of"]), "_row"
    ]

    obj = objections[objections["target_source"] == source]
    hits = keys.merge(obj, left_on="record_id", right_on="target_record_id")
    rejected = (hits["outcome"] == "rejected") & (hits["resolved_on"] < hits["as_of"])
    disputed = hits.loc[
        (hits["filed_on"] < hits["as_of"]) & (hits["recorded_at"] < hits["as_of"]) & ~rejected,
        "_row",
    ]
    excluded = pd.Index(repaired).union(pd.Index(disputed))
    return pd.Series(~events.index.isin(excluded), index=events.index)


def _registry(validated_dir: Path, pairs: pd.DataFrame) -> pd.DataFrame:
    registry = _read(
        validated_dir,
        "registry",
        [
            "credit_code",
            "founded_on",
            "registered_capital",
            "industry",
            "region",
            "enterprise_type",
        ],
    )
    m = pairs.merge(registry, on="credit_code", how="left")
    out = pd.DataFrame(index=m["_pair"])
    out["age_years"] = ((m["as_of"] - m["founded_on"]).dt.days / 365.25).to_numpy()
    out["registered_capital"] = m["registered_capital"].to_numpy()
    for col in ("industry", "region", "enterprise_type"):
        out[col] = m[col].to_numpy()
    is_92 = m["credit_code"].str.startswith("92").astype("int32")
    out["is_individual_business"] = is_92.to_numpy()
    return out


def _penalties(ev: pd.DataFrame) -> pd.DataFrame:
    in5 = ev[ev["decided_on"] >= ev["t_5y"]].copy()
    in5["severity"] = in5["kind"].map(SEVERITY)
    in5["serious"] = in5["kind"].isin(SERIOUS_KINDS)
    in5["amount"] = in5["amount"].fillna(0.0)
    g = in5.groupby("_pair")
    out = pd.DataFrame(
        {
            "penalty_count_5y": g.size(),
            "penalty_count_1y": ev[ev["decided_on"] >= ev["t_1y"]].groupby("_pair").size(),
            "serious_penalty_count_5y": g["serious"].sum(),
            "penalty_max_severity_5y": g["severity"].max(),
            "penalty_amount_5y": g["amount"].sum(),
            "last_penalty": g["decided_on"].max(),
        }
    )
    return out


def _list_entries(ev: pd.DataFrame) -> pd.DataFrame:
    removed = (ev["removed_on"] < ev["as_of"]) & (ev["removal_recorded_at"] < ev["as_of"])
    listed = ev[~removed]
    black5 = ev[(ev["list_type"] == "black") & (ev["entered_on"] >= ev["t_5y"])]
    abnormal1 = ev[(ev["list_type"] == "abnormal") & (ev["entered_on"] >= ev["t_1y"])]
    # The on_*_list columns count listed entries here; pandas_features turns them into 0/1.
    return pd.DataFrame(
        {
            **{
                f"on_{kind}_list": listed[listed["list_type"] == kind].groupby("_pair").size()
                for kind in ("black", "abnormal", "red")
            },
            "black_list_entries_5y": black5.groupby("_pair").size(),
            "abnormal_entries_1y": abnormal1.groupby("_pair").size(),
        }
    )


def _evaluations(ev: pd.DataFrame) -> pd.DataFrame:
    ordered = ev.sort_values(["_pair", "evaluated_on", "record_id"], ascending=[True, False, False])
    rank = ordered.groupby("_pair").cumcount()
    latest = ordered[rank == 0].set_index("_pair")
    previous = ordered[rank == 1].set_index("_pair")
    out = pd.DataFrame(index=latest.index)
    out["credit_score_latest"] = latest["score"]
    out["credit_grade_latest"] = latest["grade"].map(GRADE_RANK)
    out["credit_score_change"] = latest["score"] - previous["score"]
    out["last_evaluation"] = latest["evaluated_on"]
    return out


def _inspections(ev: pd.DataFrame) -> pd.DataFrame:
    in5 = ev[ev["inspected_on"] >= ev["t_5y"]]
    in1 = ev[(ev["inspected_on"] >= ev["t_1y"]) & ev["problem_found"]]
    g = in5.groupby("_pair")
    return pd.DataFrame(
        {
            "inspections_5y": g.size(),
            "problems_found_5y": g["problem_found"].sum(),
            "problems_found_1y": in1.groupby("_pair").size(),
            "last_inspection": g["inspected_on"].max(),
        }
    )


def _complaints(ev: pd.DataFrame) -> pd.DataFrame:
    in1 = ev[ev["received_on"] >= ev["t_1y"]]
    in90 = ev[ev["received_on"] >= ev["t_90d"]]
    # Open complaints have no verdict yet (NULL): they are not substantiated.
    substantiated = in1["substantiated"].astype("boolean").fillna(False).astype(bool)
    return pd.DataFrame(
        {
            "complaints_1y": in1.groupby("_pair").size(),
            "substantiated_complaints_1y": in1[substantiated].groupby("_pair").size(),
            "complaints_90d": in90.groupby("_pair").size(),
        }
    )


def pandas_features(validated_dir: Path, pairs: pd.DataFrame) -> pd.DataFrame:
    """Features of each (credit_code, as_of) row of ``pairs``, one output row per input row.

    Why: the plain-pandas reading of the spec, to check the SQL build against and to time it.
    ``pairs`` needs ``credit_code`` and ``as_of`` (dates, strings or timestamps). The result has
    ``credit_code``, ``as_of`` (datetime64) and the 29 features in spec order, in input order.
    """
    validated_dir = Path(validated_dir)
    p = pd.DataFrame(
        {
            "credit_code": pairs["credit_code"].astype("str").to_numpy(),
            "as_of": pd.to_datetime(pairs["as_of"]).to_numpy().astype("datetime64[ms]"),
        }
    )
    p["_pair"] = np.arange(len(p))
    # Window starts per pair; calendar years as DuckDB does them (29 Feb - 1 year = 28 Feb).
    p["t_5y"] = p["as_of"] - pd.DateOffset(years=5)
    p["t_1y"] = p["as_of"] - pd.DateOffset(years=1)
    p["t_90d"] = p["as_of"] - pd.Timedelta(days=90)

    repairs = _read(
        validated_dir,
        "credit_repairs",
        ["target_source", "target_record_id", "repaired_on", "recorded_at"],
    )
    objections = _read(
        validated_dir,
        "objections",
        ["target_source", "target_record_id", "filed_on", "recorded_at", "resolved_on", "outcome"],
    )

    def events(source: str, event_col: str, columns: list[str]) -> pd.DataFrame:
        wanted = ["record_id", "credit_code", event_col, "recorded_at", *columns]
        ev = _known(p, _read(validated_dir, source, wanted), event_col)
        if source in ("penalties", "list_entries", "inspections", "complaints"):
            ev = ev[_not_excluded(ev, source, repairs, objections)]
        log.debug("%s: %d known (pair, record) matches", source, len(ev))
        return ev

    parts = [
        _registry(validated_dir, p[["_pair", "credit_code", "as_of"]]),
        _penalties(events("penalties", "decided_on", ["kind", "amount"])),
        _list_entries(
            events("list_entries", "entered_on", ["list_type", "removed_on", "removal_recorded_at"])
        ),
        _evaluations(events("credit_evaluations", "evaluated_on", ["score", "grade"])),
        _inspections(events("inspections", "inspected_on", ["problem_found"])),
        _complaints(events("complaints", "received_on", ["substantiated"])),
    ]
    out = p[["_pair", "credit_code", "as_of"]].set_index("_pair")
    for part in parts:
        out = out.join(part, how="left")

    as_of = out["as_of"]
    out["days_since_last_penalty"] = (as_of - out.pop("last_penalty")).dt.days
    out["days_since_evaluation"] = (as_of - out.pop("last_evaluation")).dt.days
    out["days_since_last_inspection"] = (as_of - out.pop("last_inspection")).dt.days
    for name in ZERO_WHEN_NONE:
        out[name] = out[name].fillna(0)
    for kind in ("black", "abnormal", "red"):
        out[f"on_{kind}_list"] = (out[f"on_{kind}_list"] > 0).astype("int32")
    out["past_problem_rate_5y"] = out["problems_found_5y"] / out["inspections_5y"].where(
        out["inspections_5y"] > 0
    )
    out = out[["credit_code", "as_of", *FEATURES]].astype(DTYPES)
    return out.reset_index(drop=True)
