"""Chicago food inspections → our source contracts (registry, inspections, complaints).

The mapping's choices live in ``chicago.yaml``; this module applies them. Only the raw,
per-record files of the City's project are read — never its precomputed history features or
its model outputs — so features come from our own point-in-time SQL like any province's.
The City's published model score is read separately (:func:`published_scores`) to compare
with, on the City's own test inspections.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict

from features.adapters import write_sources
from features.contracts import ENTERPRISE_TYPES, INDUSTRIES
from features.credit_code import check_character

CONFIG = Path(__file__).with_name("chicago.yaml")
DATASET = "chicago-food-inspections"

#: GB 11714 organisation-code weights of the 8 body digits.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _regex(value: str) -> str:
    """A bad pattern fails when the configuration loads, not mid-run."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class TypeRule(_Frozen):
    pattern: Regex
    type: str


class RegistryMapping(_Frozen):
    authority: str
    category: str
    region_suffix: str
    industry: dict[str, str]
    industry_default: str
    enterprise_type: list[TypeRule]
    enterprise_type_default: str

    def model_post_init(self, _context: object) -> None:
        for value in [*self.industry.values(), self.industry_default]:
            if value not in INDUSTRIES:
                raise ValueError(f"registry.industry: {value!r} is not a GB/T 4754 section")
        for value in [r.type for r in self.enterprise_type] + [self.enterprise_type_default]:
            if value not in ENTERPRISE_TYPES:
                raise ValueError(f"registry.enterprise_type: unknown type {value!r}")


class InspectionMapping(_Frozen):
    selection: str
    selection_probability: float
    problem_found: str
    unrecorded_team: str


class ComplaintMapping(_Frozen):
    include: Regex
    exclude: Regex
    channel: str


class ChicagoConfig(_Frozen):
    dataset: str
    files: dict[str, str]
    extracted_on: date
    department: str
    registry: RegistryMapping
    inspections: InspectionMapping
    complaints: ComplaintMapping
    not_mapped: list[str]


def load_config(path: Path = CONFIG) -> ChicagoConfig:
    return ChicagoConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def organisation_code(number: int) -> str:
    """An 8-digit number with its GB 11714 check character (the code's 9th to 17th places)."""
    body = f"{number:08d}"
    if len(body) != 8:
        raise ValueError(f"licence number {number} does not fit 8 digits")
    check = 11 - sum(int(d) * w for d, w in zip(body, _ORG_WEIGHTS, strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(check, str(check))


def credit_code(licence: int, region: str, mapping: RegistryMapping) -> str:
    """The GB 32100 code standing for one licence (valid check character, stable per licence)."""
    first17 = mapping.authority + mapping.category + region + organisation_code(licence)
    return first17 + check_character(first17)


def _read(data_dir: Path, cfg: ChicagoConfig, key: str, **kw) -> pd.DataFrame:
    path = data_dir / cfg.files[key]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({key} file of {cfg.dataset})")
    return pd.read_csv(path, **kw)


def _registry(inspections: pd.DataFrame, licences: pd.DataFrame, cfg: ChicagoConfig):
    """One row per licence: its ZIP as region, facility type as industry, founding date."""
    m = cfg.registry
    first = inspections.sort_values(["Inspection_Date", "Inspection_ID"]).groupby("License")
    reg = first.agg(
        name=("DBA_Name", "first"),
        zip=("Zip", "first"),
        facility=("Facility_Type", "first"),
        first_inspection=("Inspection_Date", "min"),
    )
    matched = licences.merge(inspections[["Inspection_ID", "License"]], on="Inspection_ID")
    matched = matched[matched["LICENSE_NUMBER"] == matched["License"]]
    lic = (
        matched.sort_values("minDate")
        .groupby("License")
        .agg(licence_start=("minDate", "min"), legal_name=("LEGAL_NAME", "first"))
    )
    reg = reg.join(lic)
    has_zip = reg["zip"].notna()
    zip6 = reg["zip"].astype("Int64").astype(str).where(has_zip, "") + m.region_suffix
    region = zip6.where(has_zip, "")
    facility = reg["facility"].fillna("").str.strip().str.lower()
    types = pd.Series(m.enterprise_type_default, index=reg.index)
    legal = reg["legal_name"].fillna("").str.upper()
    for rule in reversed(m.enterprise_type):
        types = types.mask(legal.str.contains(rule.pattern, regex=True), rule.type)
    # existed at its first inspection; no licence record at all → no founding date (quarantined)
    founded = (
        reg[["licence_start", "first_inspection"]].min(axis=1).where(reg["licence_start"].notna())
    )
    codes = [
        credit_code(int(n), r if r else "000000", m) for n, r in zip(reg.index, region, strict=True)
    ]
    out = pd.DataFrame(
        {
            "credit_code": codes,
            "name": reg["name"].to_numpy(),
            "founded_on": founded.to_numpy(),
            "industry": facility.map(m.industry).fillna(m.industry_default).to_numpy(),
            "region": region.to_numpy(),
            "registered_capital": np.nan,
            "enterprise_type": types.to_numpy(),
            "status": "active",
            "closed_on": None,
            "recorded_at": founded.to_numpy(),
        }
    )
    return out, pd.Series(codes, index=reg.index, name="credit_code")


def _inspections(
    inspections: pd.DataFrame, teams: pd.DataFrame, codes: pd.Series, cfg: ChicagoConfig
) -> pd.DataFrame:
    m = cfg.inspections
    team = teams.drop_duplicates("inspectionID").set_index("inspectionID")["sanitarian"]
    found = inspections.eval(m.problem_found)
    return pd.DataFrame(
        {
            "record_id": inspections["Inspection_ID"].astype(str),
            "credit_code": inspections["License"].map(codes),
            "task_id": None,
            "inspected_on": inspections["Inspection_Date"],
            "department": cfg.department,
            "inspector_ids": inspections["Inspection_ID"].map(team).fillna(m.unrecorded_team),
            "selection": m.selection,
            "selection_probability": m.selection_probability,
            "problem_found": np.where(found, "true", "false"),
            "recorded_at": inspections["Inspection_Date"],
        }
    )


def _complaints(visits: pd.DataFrame, codes: pd.Series, cfg: ChicagoConfig) -> pd.DataFrame:
    m = cfg.complaints
    purpose = visits["Inspection_Purpose"].fillna("").str.strip().str.lower()
    keep = purpose.str.contains(m.include, regex=True) & ~purpose.str.contains(
        m.exclude, regex=True
    )
    licence = pd.to_numeric(visits["License"], errors="coerce")
    keep &= licence.isin(codes.index)
    rows = visits[keep].assign(licence=licence[keep].astype("int64"))
    rows = rows.sort_values(["licence", "Inspection_Date", "Inspection_Purpose"], kind="stable")
    seq = rows.groupby(["licence", "Inspection_Date"]).cumcount() + 1
    return pd.DataFrame(
        {
            "record_id": (
                "CMP-"
                + rows["licence"].astype(str)
                + "-"
                + rows["Inspection_Date"]
                + "-"
                + seq.astype(str)
            ),
            "credit_code": rows["licence"].map(codes),
            "received_on": rows["Inspection_Date"],
            "channel": m.channel,
            "substantiated": None,
            "department": cfg.department,
            "recorded_at": rows["Inspection_Date"],
        }
    )


class AdapterSummary(_Frozen):
    dataset: str
    source_dir: Path
    out_dir: Path
    extracted_on: date
    rows: dict[str, int]
    licences_without_founding: int
    inspections_without_team: int


def adapt(data_dir: Path, out_dir: Path, config: ChicagoConfig | None = None) -> AdapterSummary:
    """Write the Chicago data as raw contract sources into ``out_dir`` (ready to validate)."""
    cfg = config or load_config()
    inspections = _read(data_dir, cfg, "inspections")
    licences = _read(
        data_dir,
        cfg,
        "licences",
        usecols=["Inspection_ID", "LICENSE_NUMBER", "minDate", "LEGAL_NAME"],
    )
    teams = _read(data_dir, cfg, "teams")
    visits = _read(data_dir, cfg, "visits", dtype=str)
    registry, codes = _registry(inspections, licences, cfg)
    insp = _inspections(inspections, teams, codes, cfg)
    rows = write_sources(
        {
            "registry": registry,
            "inspections": insp,
            "complaints": _complaints(visits, codes, cfg),
        },
        out_dir,
    )
    return AdapterSummary(
        dataset=cfg.dataset,
        source_dir=data_dir,
        out_dir=out_dir,
        extracted_on=cfg.extracted_on,
        rows=rows,
        licences_without_founding=int(registry["founded_on"].isna().sum()),
        inspections_without_team=int(
            (insp["inspector_ids"] == cfg.inspections.unrecorded_team).sum()
        ),
    )


def published_scores(data_dir: Path, config: ChicagoConfig | None = None) -> pd.DataFrame:
    """The City's test inspections with its models' scores on them, for comparison only.

    ``glmnet`` is ``glm_pred_test`` of the pilot's model (fitted on the training period only;
    the City's 2014 evaluation used it); ``xgboost`` is the ``score`` of the later xgboost
    script. Rows: the test inspections present in both tables.
    """
    cfg = config or load_config()
    glm = _read(
        data_dir,
        cfg,
        "published_glmnet",
        usecols=["Inspection_ID", "Inspection_Date", "criticalFound", "Test", "glm_pred_test"],
    )
    xgb = _read(data_dir, cfg, "published_xgboost", usecols=["Inspection_ID", "Test", "score"])
    both = glm[glm["Test"] == 1].merge(
        xgb[xgb["Test"] == 1][["Inspection_ID", "score"]], on="Inspection_ID", validate="1:1"
    )
    return pd.DataFrame(
        {
            "record_id": both["Inspection_ID"].astype(str),
            "inspected_on": pd.to_datetime(both["Inspection_Date"]).dt.date,
            "critical_found": both["criticalFound"].astype(int),
            "glmnet": both["glm_pred_test"].astype(float),
            "xgboost": both["score"].astype(float),
        }
    )
