"""Explanations end to end on the small province: additivity, enterprise reasons and records,
objections with and without, what-if on a constructed case, reports that render, batch reasons,
and a CLI that refuses bad input without touching anything."""

from __future__ import annotations

import json
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.catalogue import CATALOGUE
from features.pipeline import FeatureRun
from features.scenario import Edit, with_and_without_objections
from features.workspace import Workspace
from serving.cli import app
from tests.features.test_build import CODE, penalty, registry, write
from tests.support import hash_tree
from tests.training.test_train import config
from training.explain.batch import explain_snapshot
from training.explain.cli import fetch_report
from training.explain.contributions import contributions
from training.explain.enterprise import (
    Scored,
    explain_enterprise,
    sample_enterprise,
    what_if,
)
from training.explain.report import enterprise_report
from training.train import TrainResult

runner = CliRunner()
CODES = {f.name: f.code for f in CATALOGUE}


@pytest.fixture(scope="module")
def mlruns(champion_mlruns: Path) -> Path:
    return champion_mlruns


@pytest.fixture(scope="module")
def trained(champion: TrainResult) -> TrainResult:
    return champion


@pytest.fixture(scope="module")
def population(province: FeatureRun) -> pd.DataFrame:
    return pd.read_parquet(province.snapshot.path)


@pytest.fixture(scope="module")
def as_of(population: pd.DataFrame) -> date:
    return pd.Timestamp(population["as_of"].iloc[0]).date()


class Parsed(HTMLParser):
    """Ids, image sources and every external reference of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: dict[str, str] = {}
        self.external: list[str] = []
        self._last_id: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
            self._last_id = a["id"]
        if tag == "img":  # named by the closest element with an id before it
            self.images[self._last_id or f"img{len(self.images)}"] = a.get("src") or ""
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag == "link" or (tag == "script" and a.get("src")):
            self.external.append(str(a))


def test_contributions_plus_base_value_equal_the_raw_score_shown(
    trained: TrainResult, population: pd.DataFrame
) -> None:
    model = trained.model
    X = model.encoder.matrix(population.head(500))
    c = contributions(model.booster, X)
    raw = model.booster.predict(X, raw_score=True)
    assert np.abs(c.values.sum(axis=1) + c.base_value - raw).max() <= 1e-9
    # Reasons are measured in log-odds; the calibrated probability is a monotone map of it.
    prob = model.probability(population.head(500))
    np.testing.assert_allclose(model.calibrator(raw), prob, atol=1e-12)
    order = np.argsort(raw)
    assert np.all(np.diff(prob[order]) >= -1e-12)


def test_an_enterprise_explanation_links_reasons_to_counted_records(
    trained: TrainResult, validated: Path, province: FeatureRun, as_of: date
) -> None:
    model = trained.model
    code = sample_enterprise(validated, province.snapshot.path, model)
    e = explain_enterprise(model, validated, code, as_of, k=5)
    assert e.base_value + e.features["contribution"].sum() == pytest.approx(
        e.score.raw_score, abs=1e-9
    )
    assert [r.contribution for r in e.up] == sorted((r.contribution for r in e.up), reverse=True)
    assert all(r.contribution > 0 for r in e.up) and all(r.contribution < 0 for r in e.down)
    counted = e.records[e.records["status"] == "counted"]
    for r in [*e.up, *e.down]:
        assert r.code == CODES[r.feature]
        for rec in r.records:
            row = counted[counted["record_id"] == rec["record_id"]]
            assert len(row) == 1 and r.feature in row["features"].iloc[0]
    doc = json.loads(json.dumps(e.to_dict("en"), default=str))
    assert doc["contribution_space"] and doc["reasons_raising_risk"][0]["text"]
    assert set(doc["contributions"]) == set(model.encoder.feature_names)


def test_a_pending_objection_stops_counting_and_the_tier_is_shown_with_and_without(
    trained: TrainResult, validated: Path, province: FeatureRun, as_of: date
) -> None:
    model = trained.model
    code = sample_enterprise(validated, province.snapshot.path, model)
    e = explain_enterprise(model, validated, code, as_of)
    objected = e.records[e.records["status"] == "under_objection"]
    assert len(objected) >= 1, "the sample enterprise is one with a pending objection"
    assert e.objected_records == [
        f"{s}:{r}" for s, r in zip(objected["source"], objected["record_id"], strict=True)
    ]
    assert objected["features"].map(len).eq(0).all()  # feeds nothing while pending
    assert e.with_objected_records is not None
    # As if the objections had not been filed, the objected records feed features again.
    now, as_if, ids = with_and_without_objections(validated, code, as_of)
    assert ids == e.objected_records
    moved = [n for n in model.encoder.feature_names if now[n].iat[0] != as_if[n].iat[0]]
    assert moved, "counting the objected records changes at least one feature"
    assert e.with_objected_records == Scored.of(model, as_if)
    assert e.score == Scored.of(model, now)


@pytest.fixture
def blacklisted(tmp_path: Path) -> Path:
    """An otherwise clean enterprise on the black list, with one penalty near the 5-year edge."""
    listing = dict(
        record_id="L1",
        credit_code=CODE,
        list_type="black",
        entered_on=date(2025, 3, 1),
        removed_on=None,
        reason="serious dishonesty",
        department="MR",
        recorded_at=date(2025, 3, 2),
        removal_recorded_at=None,
    )
    reg = {**registry(), "region": "330106", "industry": "C", "enterprise_type": "limited"}
    old = penalty("P1", date(2021, 7, 1), kind="suspension")
    return write(tmp_path / "v", {"registry": [reg], "list_entries": [listing], "penalties": [old]})


def test_what_if_withdrawing_a_black_listing_lifts_the_forced_tier(
    trained: TrainResult, blacklisted: Path
) -> None:
    model = trained.model
    day = date(2026, 6, 1)
    edit = Edit(kind="withdraw", source="list_entries", record_id="L1")
    result = what_if(model, blacklisted, CODE, day, [edit])
    assert result.before.rules["national4"] == "R01_BLACKLIST"
    assert result.before.tiers["national4"] == "D"
    assert result.after.rules["national4"] != "R01_BLACKLIST"
    assert result.after.tiers["national4"] != "D"
    moved = result.changed.set_index("feature")
    assert moved.loc["on_black_list"].tolist() == [1, 0]
    # Later, when the old penalty leaves its five-year window, the real path drops it too.
    later = what_if(model, blacklisted, CODE, day, later=date(2026, 8, 1))
    assert later.changed.set_index("feature").loc["penalty_count_5y"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least one edit"):
        what_if(model, blacklisted, CODE, day)
    with pytest.raises(ValueError, match="before the as-of"):
        what_if(model, blacklisted, CODE, day, later=date(2026, 1, 1))


def test_model_report_is_self_contained_with_every_plot(
    trained: TrainResult, mlruns: Path, tmp_path: Path
) -> None:
    folder = fetch_report(config(), trained.model_version, mlruns, tmp_path / "report")
    page = Parsed((folder / "model_report.html").read_text(encoding="utf-8"))
    assert not page.external, page.external
    names = list(trained.model.encoder.feature_names)
    expected = {"importance", "shap-summary", "calibration", "detection", "tier-distribution"}
    assert expected <= set(page.images)
    assert any(i.startswith("dependence-") and i[11:] in names for i in page.images)
    assert {f"slices-{s}" for s in ("region", "industry", "size_band")} <= set(page.images)
    for fig, src in page.images.items():
        assert src.startswith("data:image/png;base64,") and len(src) > 2_000, fig
    assert {"model-card", "comparison", "slices", "tiers"} <= page.ids
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    for heading in (
        "Intended use",
        "training window",
        "Metrics",
        "Limitations",
        "Fairness findings",
    ):
        assert heading in card, heading
    importance = pd.read_csv(folder / "feature_importance.csv")
    assert set(importance["feature"]) == set(names)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_enterprise_report_shows_reasons_waterfall_records_and_objections(
    trained: TrainResult,
    validated: Path,
    province: FeatureRun,
    as_of: date,
    tmp_path: Path,
    lang: str,
) -> None:
    model = trained.model
    code = sample_enterprise(validated, province.snapshot.path, model)
    e = explain_enterprise(model, validated, code, as_of)
    out = enterprise_report(e, model, tmp_path / f"{lang}.html", lang)
    text = out.read_text(encoding="utf-8")
    page = Parsed(text)
    assert not page.external
    assert {"reasons-up", "reasons-down", "waterfall", "records", "objections"} <= page.ids
    assert page.images["waterfall"].startswith("data:image/png;base64,")
    for s in model.scheme_names:
        assert {f"tier-{s}", f"with-{s}", f"without-{s}"} <= page.ids
    for rid in e.records["record_id"]:
        assert f"rec-{rid}" in page.ids
    assert e.up[0].text(lang) in text


def test_batch_reasons_match_the_one_enterprise_path(
    trained: TrainResult, validated: Path, province: FeatureRun, as_of: date, tmp_path: Path
) -> None:
    model = trained.model
    run = explain_snapshot(model, province.snapshot.path, tmp_path / "r.parquet", k=3, lang="en")
    out = pd.read_parquet(run.path)
    assert len(out) == run.rows == len(pd.read_parquet(province.snapshot.path))
    assert (out["model_version"] == run.model_version).all()
    assert out["up_1_code"].isin({"", *CODES.values()}).all()
    up = out[["up_1_contribution", "up_2_contribution", "up_3_contribution"]].to_numpy()
    assert np.all(np.nan_to_num(up, nan=-np.inf)[:, 0] >= np.nan_to_num(up, nan=-np.inf)[:, 1])
    assert np.nanmin(up) > 0
    row = out.iloc[len(out) // 2]
    e = explain_enterprise(model, validated, row["credit_code"], as_of, k=3)
    assert [r.code for r in e.up] == [c for c in row[["up_1_code", "up_2_code", "up_3_code"]] if c]
    assert row["probability"] == pytest.approx(e.score.probability, abs=1e-12)
    assert row["up_1_text_en"] == e.up[0].text("en").split(", the latest")[0] or e.up[0].text(
        "en"
    ).startswith(row["up_1_text_en"])


def test_cli_explains_and_refuses_bad_input_without_changing_anything(
    trained: TrainResult, province: FeatureRun, mlruns: Path, validated: Path, tmp_path: Path
) -> None:
    workdir = str(Workspace(province.workspace).root)
    common = ["--workdir", workdir, "--mlruns", str(mlruns)]
    code = sample_enterprise(validated, province.snapshot.path, trained.model)
    ok = runner.invoke(app, ["explain", code, "--lang", "en", "--json", *common])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["credit_code"] == code

    before = hash_tree(Path(workdir)), hash_tree(mlruns)
    cases = [
        (["explain", "91330102MA2B3C4D7Y"], "no such enterprise"),
        (["explain", "not-a-code"], "not an 18-character"),
        (["explain", code, "--lang", "fr"], "--lang"),
        (["what-if", code, "--repair", "penalties"], "not SOURCE:RECORD_ID"),
        (["what-if", code, "--repair", "penalties:NOPE"], "no such record"),
        (["what-if", code, "--withdraw", "registry:x"], "cannot be repaired"),
        (["what-if", code, "--later", "2020-01-01"], "before the as-of"),
        (["explain-batch", "--lang", "fr"], "--lang"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    assert (hash_tree(Path(workdir)), hash_tree(mlruns)) == before


def test_shap_figures_leave_pyplot_interactive_mode_as_they_found_it() -> None:
    """SHAP's plots switch pyplot's interactive mode off; a notebook's inline plots need it on."""
    import matplotlib.pyplot as plt

    from training.explain import figures

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 3.0]})
    expl = figures.explanation(np.array([[0.5, -0.2], [0.1, 0.3]]), -1.0, frame)
    was = plt.isinteractive()
    try:
        for mode in (True, False):
            plt.interactive(mode)
            png = figures.waterfall_png(expl[0])
            assert png.startswith(b"\x89PNG") and plt.isinteractive() is mode
    finally:
        plt.interactive(was)
