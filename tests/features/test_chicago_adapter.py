"""The Chicago adapter on a small constructed copy of the City's files (same columns)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.adapters import chicago, locate_dataset, write_sources
from features.contracts import SOURCES, ValidationWindow
from features.credit_code import is_valid
from features.validate import validate

INSPECTIONS = [
    # id, licence, facility, zip, date, critical
    (1, 1001, "Restaurant", 60614, "2012-03-01", 2),
    (2, 1001, "Restaurant", 60614, "2013-03-01", 0),
    (3, 2002, "School", 60601, "2012-05-01", 0),
    (4, 3003, "Stadium", 60622, "2012-06-01", 1),
    (5, 4004, "Grocery Store", 60640, "2013-01-10", 0),  # no licence record: quarantined
]
LICENCES = [
    # inspection id, licence number, first term start, legal name
    (1, 1001, "2005-04-16", "ACME FOODS LLC"),
    (2, 1001, "2005-04-16", "ACME FOODS LLC"),
    (3, 2002, "2010-01-01", "BOARD OF EDUCATION INC."),
    (4, 3003, "2012-09-01", "JANE DOE"),  # licence starts after its first inspection
    (5, 9999, "2001-01-01", "SOMEONE ELSE"),  # matched to another licence number
]
VISITS = [
    # licence, date, purpose
    ("1001", "2012-02-10", "Complaint"),
    ("1001", "2012-02-10", "Short Form Complaint"),
    ("1001", "2012-02-20", "Complaint Re-Inspection"),
    ("2002", "2012-04-01", "Suspected Food Poisoning"),
    ("2002", "2012-04-02", "Complaint-Fire"),
    ("3003", "2012-05-05", "Canvass"),
    ("7777", "2012-05-05", "Complaint"),  # not an establishment of ours
    ("N/A", "2012-05-05", "Complaint"),
]


def _write(folder: Path, name: str, frame: pd.DataFrame) -> None:
    frame.to_csv(folder / name, index=False, compression="gzip")


@pytest.fixture
def city(tmp_path: Path) -> Path:
    d = tmp_path / "chicago"
    d.mkdir()
    insp = pd.DataFrame(
        INSPECTIONS,
        columns=["Inspection_ID", "License", "Facility_Type", "Zip", "Inspection_Date", "c"],
    )
    insp["DBA_Name"] = "DBA " + insp["License"].astype(str)
    insp["criticalCount"] = insp.pop("c")
    _write(d, "food_inspection_features.csv.gz", insp)
    lic = pd.DataFrame(
        LICENCES, columns=["Inspection_ID", "LICENSE_NUMBER", "minDate", "LEGAL_NAME"]
    )
    _write(d, "business_license_features.csv.gz", lic)
    _write(
        d,
        "inspector_assignments.csv.gz",
        pd.DataFrame(
            {"inspectionID": [1, 2, 3, 4], "sanitarian": ["blue", "blue", "green", "red"]}
        ),
    )
    _write(
        d,
        "inspector_schedule.csv.gz",
        pd.DataFrame(VISITS, columns=["License", "Inspection_Date", "Inspection_Purpose"]),
    )
    _write(
        d,
        "model_dat_glmnet.csv.gz",
        pd.DataFrame(
            {
                "Inspection_ID": [1, 2, 3],
                "Inspection_Date": ["2012-03-01", "2013-03-01", "2012-05-01"],
                "criticalFound": [1, 0, 0],
                "Test": [0, 1, 1],
                "glm_pred_test": [0.3, 0.2, 0.1],
            }
        ),
    )
    _write(
        d,
        "model_dat_xgboost.csv.gz",
        pd.DataFrame({"Inspection_ID": [1, 2, 4], "Test": [0, 1, 1], "score": [0.5, 0.4, 0.3]}),
    )
    return d


@pytest.fixture
def adapted(city: Path, tmp_path: Path) -> tuple[chicago.AdapterSummary, Path]:
    out = tmp_path / "raw"
    return chicago.adapt(city, out), out


def test_every_source_is_written_with_the_contract_columns(adapted) -> None:
    summary, out = adapted
    for name, source in SOURCES.items():
        frame = pd.read_csv(out / f"{name}.csv")
        assert list(frame.columns) == source.column_names
    assert summary.rows["inspections"] == len(INSPECTIONS)
    assert summary.rows["registry"] == 4
    assert summary.rows["penalties"] == 0


def test_registry_mapping(adapted) -> None:
    _, out = adapted
    reg = pd.read_csv(out / "registry.csv", dtype=str).set_index("name")
    assert all(is_valid(c) for c in reg["credit_code"])
    assert reg.loc["DBA 1001", "region"] == "606140"
    assert reg.loc["DBA 1001", "credit_code"][2:8] == "606140"
    assert reg.loc["DBA 1001", "credit_code"][8:16] == "00001001"
    # industry from the facility type; an unlisted type serves food (catering)
    assert reg["industry"].to_dict() == {
        "DBA 1001": "H",
        "DBA 2002": "P",
        "DBA 3003": "H",
        "DBA 4004": "F",
    }
    # legal form from the legal name
    assert reg.loc["DBA 1001", "enterprise_type"] == "limited_company"
    assert reg.loc["DBA 2002", "enterprise_type"] == "joint_stock"
    assert reg.loc["DBA 3003", "enterprise_type"] == "sole_proprietorship"
    # founding: the licence's first term, or the first inspection when that came earlier
    assert reg.loc["DBA 1001", "founded_on"] == "2005-04-16"
    assert reg.loc["DBA 3003", "founded_on"] == "2012-06-01"
    # no licence record (the only match was another licence number): no founding date
    assert pd.isna(reg.loc["DBA 4004", "founded_on"])


def test_inspections_and_complaints_mapping(adapted) -> None:
    summary, out = adapted
    insp = pd.read_csv(out / "inspections.csv", dtype=str).set_index("record_id")
    assert insp["problem_found"].to_dict() == {
        "1": "true",
        "2": "false",
        "3": "false",
        "4": "true",
        "5": "false",
    }
    assert insp.loc["5", "inspector_ids"] == "unrecorded"
    assert summary.inspections_without_team == 1
    assert set(insp["selection"]) == {"random"}
    codes = pd.read_csv(out / "registry.csv", dtype=str).set_index("name")["credit_code"]
    comp = pd.read_csv(out / "complaints.csv", dtype=str)
    # complaints and food poisoning count; follow-ups, fire complaints and unknown licences do not
    assert sorted(zip(comp["credit_code"], comp["received_on"], strict=True)) == sorted(
        [
            (codes["DBA 1001"], "2012-02-10"),
            (codes["DBA 1001"], "2012-02-10"),
            (codes["DBA 2002"], "2012-04-01"),
        ]
    )
    assert comp["record_id"].is_unique


def test_validation_quarantines_what_the_city_data_lacks_and_loses_nothing(
    adapted, tmp_path: Path
) -> None:
    summary, out = adapted
    report = validate(
        out, tmp_path / "validated", window=ValidationWindow(extracted_on=summary.extracted_on)
    )
    reg, insp = report.sources["registry"], report.sources["inspections"]
    assert reg.quarantined_by == {"missing_value:founded_on": 1}
    assert insp.quarantined_by == {"unknown_enterprise:credit_code": 1}
    for s in report.sources.values():
        assert s.rows_read == s.rows_kept + s.rows_quarantined
    quarantine = pd.read_parquet(tmp_path / "validated" / "quarantine.parquet")
    assert set(quarantine["record_id"].dropna()) >= {"5"}


def test_published_scores_are_the_test_rows_of_both_tables(city: Path) -> None:
    pub = chicago.published_scores(city)
    assert pub["record_id"].tolist() == ["2"]
    assert pub.iloc[0]["glmnet"] == 0.2 and pub.iloc[0]["xgboost"] == 0.4
    assert pub.iloc[0]["inspected_on"] == date(2013, 3, 1)


def test_a_bad_configuration_fails_when_it_loads(tmp_path: Path) -> None:
    raw = yaml.safe_load(chicago.CONFIG.read_text())
    raw["registry"]["industry"]["restaurant"] = "Z"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="GB/T 4754"):
        chicago.load_config(bad)
    raw = yaml.safe_load(chicago.CONFIG.read_text())
    raw["complaints"]["include"] = "complaint("
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"complaints\.include(.|\n)*not a regular expression"):
        chicago.load_config(bad)


def test_a_missing_file_is_named(city: Path, tmp_path: Path) -> None:
    (city / "inspector_assignments.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="inspector_assignments"):
        chicago.adapt(city, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_write_sources_refuses_columns_the_contract_does_not_know(tmp_path: Path) -> None:
    frame = pd.DataFrame(columns=[*SOURCES["complaints"].column_names, "extra"])
    with pytest.raises(ValueError, match="complaints"):
        write_sources({"complaints": frame}, tmp_path)


def test_locate_dataset_names_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RISK_REAL_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="RISK_REAL_DATA"):
        locate_dataset("nothing-here")
    (tmp_path / "some-city").mkdir()
    assert locate_dataset("some-city") == tmp_path / "some-city"


def test_locate_dataset_looks_beside_the_checkout_a_clone_came_from(
    tmp_path: Path, monkeypatch
) -> None:
    """CI runs on a fresh clone somewhere else; the team's data sit beside the original."""
    import subprocess

    from features import adapters

    team = tmp_path / "team"
    origin, clone = team / "main", tmp_path / "elsewhere" / "clone"
    (team / "shared" / "data" / "some-city").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "remote", "add", "origin", str(origin)], check=True)
    package = clone / "features" / "adapters"
    package.mkdir(parents=True)
    monkeypatch.delenv("RISK_REAL_DATA", raising=False)
    monkeypatch.setattr(adapters, "__file__", str(package / "__init__.py"))
    assert adapters.locate_dataset("some-city") == team / "shared" / "data" / "some-city"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        adapters.locate_dataset("nothing-here")
