"""The real service on loopback: tiers, scores, explanations, roles, masking, bad input, audit."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest

from features.catalogue import FEATURE_NAMES
from serving.audit import AuditLog
from tests.serving.conftest import Live
from tests.serving.server import bentoml_server


def post(live: Live, path: str, body, role: str | None = "platform", **kw) -> httpx.Response:
    headers = live.headers(role) if role else {}
    if isinstance(body, str | bytes):
        headers["Content-Type"] = "application/json"
        return httpx.post(live.url + path, content=body, headers=headers, timeout=60, **kw)
    return httpx.post(live.url + path, json=body, headers=headers, timeout=60, **kw)


def codes(live: Live, n: int, individual: bool | None = None) -> list[str]:
    s = live.snapshot["credit_code"]
    if individual is not None:
        s = s[s.str.startswith("92") == individual]
    return s.head(n).tolist()


def test_tiers_answer_every_code_in_order_with_versions(live: Live, champion) -> None:
    asked = [*codes(live, 3, individual=False), "91330102MA2B3C4D7Y"]
    r = post(live, "/v1/tiers", {"codes": asked, "lang": "en"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_version"] == champion.model_version
    assert doc["snapshot_version"] == str(live.snapshot["as_of"].iloc[0])[:10]
    assert [x["credit_code"] for x in doc["results"]] == asked
    assert [x["found"] for x in doc["results"]] == [True, True, True, False]
    frame = live.snapshot.set_index("credit_code").loc[asked[:3]]
    expected = champion.model.predict(frame.reset_index())
    got = [x["probability"] for x in doc["results"][:3]]
    np.testing.assert_allclose(got, expected["probability"], rtol=0, atol=1e-12)
    active = champion.model.policy.active
    assert [x["tier"] for x in doc["results"][:3]] == list(expected[f"tier_{active}"])


def test_reasons_come_in_the_language_asked_and_agree_in_sign(live: Live) -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for lang, probe in (("en", lambda t: not cjk.search(t)), ("zh", cjk.search)):
        r = post(live, "/v1/tiers", {"codes": codes(live, 2), "reasons": 3, "lang": lang})
        assert r.status_code == 200, r.text
        for item in r.json()["results"]:
            up, down = item["reasons_raising_risk"], item["reasons_lowering_risk"]
            assert 0 < len(up) <= 3 and len(down) <= 3
            assert all(x["contribution"] > 0 for x in up)
            assert all(x["contribution"] < 0 for x in down)
            assert all(probe(x["text"]) for x in up), up


def test_individual_business_codes_are_masked_for_platforms_not_admins(live: Live) -> None:
    code = codes(live, 1, individual=True)[0]
    platform = post(live, "/v1/tiers", {"codes": [code]}).json()["results"][0]
    admin = post(live, "/v1/tiers", {"codes": [code]}, role="admin").json()["results"][0]
    assert admin["credit_code"] == code
    assert platform["credit_code"] != code and "*" in platform["credit_code"]
    assert platform["probability"] == admin["probability"]


def test_scoring_supplied_features_matches_the_snapshot_path(live: Live) -> None:
    rows = live.snapshot.head(5)
    payload = [
        {
            n: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
            for n, v in r.items()
        }
        for r in rows[list(FEATURE_NAMES)].astype(object).to_dict("records")
    ]
    scored = post(live, "/v1/score", {"rows": payload, "reasons": 2, "lang": "en"})
    assert scored.status_code == 200, scored.text
    looked_up = post(live, "/v1/tiers", {"codes": rows["credit_code"].tolist()}).json()
    np.testing.assert_allclose(
        [x["probability"] for x in scored.json()["results"]],
        [x["probability"] for x in looked_up["results"]],
        rtol=0,
        atol=1e-12,
    )


def test_explanation_for_auditors_with_records_and_forbidden_to_platforms(live: Live) -> None:
    code = codes(live, 1, individual=False)[0]
    r = post(live, "/v1/explain", {"credit_code": code, "lang": "en"}, role="auditor")
    assert r.status_code == 200, r.text
    e = r.json()
    total = e["base_value"] + sum(e["contributions"].values())
    assert total == pytest.approx(e["raw_score"], abs=1e-9)
    assert "records" in e and e["contribution_space"].startswith("log-odds")
    denied = post(live, "/v1/explain", {"credit_code": code}, role="platform")
    assert denied.status_code == 403 and denied.json()["field"] == "authorization"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"X-API-Key": "rk_" + "0" * 16 + "_" + "a" * 43}, 401),
    ],
)
def test_missing_or_wrong_keys_are_refused(live: Live, headers: dict, status: int) -> None:
    r = httpx.post(live.url + "/v1/tiers", json={"codes": codes(live, 1)}, headers=headers)
    assert r.status_code == status
    assert "probability" not in r.text
    # The key is checked before the body: an anonymous caller learns nothing about inputs.
    bad = httpx.post(live.url + "/v1/tiers", json={"codes": ["x"]}, headers=headers)
    assert bad.status_code == 401 and "codes" not in bad.text


BAD = [
    ("/v1/tiers", {"codes": ["not-a-code"]}, 400, "codes[0]"),
    ("/v1/tiers", {"codes": []}, 400, "codes"),
    ("/v1/tiers", {"codes": ["9133010203DC102BL8"] * 1001}, 400, "codes"),
    ("/v1/tiers", {"codes": ["9133010203DC102BL8"], "lang": "fr"}, 400, "lang"),
    ("/v1/tiers", {"codes": ["9133010203DC102BL8"], "scheme": "stars"}, 400, "scheme"),
    ("/v1/tiers", {"codes": ["9133010203DC102BL8"], "reasons": 11}, 400, "reasons"),
    ("/v1/tiers", {"codes": ["9133010203DC102BL8"], "colour": "red"}, 400, "colour"),
    ("/v1/tiers", '{"codes": [', 400, "JSON"),
    ("/v1/score", {"rows": [{"industry": "ZZ"}]}, 400, "rows[0].industry"),
    ("/v1/score", {"rows": [{"penalty_count_5y": -1}]}, 400, "penalty_count_5y"),
    ("/v1/score", {"rows": [{"shoe_size": 3}]}, 400, "shoe_size"),
    ("/v1/explain", {"credit_code": "91330102MA2B3C4D7Y"}, 404, "credit_code"),
]


@pytest.mark.parametrize(("path", "body", "status", "named"), BAD, ids=lambda x: str(x)[:40])
def test_bad_input_gets_a_4xx_naming_the_field_and_changes_nothing(
    live: Live, path: str, body, status: int, named: str
) -> None:
    log = AuditLog(live.db)
    head = log.head()
    r = post(live, path, body, role="admin")
    assert r.status_code == status, r.text
    assert named in r.text, r.text
    assert log.head() == head  # nothing stored for a refused request


def test_every_answer_is_in_the_hash_chained_audit_trail(live: Live, champion) -> None:
    log = AuditLog(live.db)
    before = log.head().seq if log.head() else 0
    asked = codes(live, 2)
    post(live, "/v1/tiers", {"codes": asked})
    entries = log.entries(since=before)
    mine = [e for e in entries if e.action == "tiers"]
    assert mine, entries
    e = mine[-1]
    assert e.role == "platform" and e.model_version == champion.model_version
    assert e.payload["request"]["codes"][0][:8] == asked[0][:8]
    assert log.verify().ok


def test_health_metrics_and_openapi(live: Live) -> None:
    assert httpx.get(live.url + "/readyz").status_code == 200
    assert httpx.get(live.url + "/livez").status_code == 200
    metrics = httpx.get(live.url + "/metrics", timeout=30)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text
    spec = httpx.get(live.url + "/docs.json").json()
    assert {"/v1/tiers", "/v1/score", "/v1/explain"} <= set(spec["paths"])


def test_without_a_champion_the_service_is_alive_but_not_ready(tmp_path, live: Live) -> None:
    env = {
        "RISK_WORKDIR": str(live.workdir),
        "RISK_MLRUNS": str(tmp_path / "empty-mlruns"),
        "RISK_DB": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    with bentoml_server(env, tmp_path / "server.log", ready=False) as url:
        assert httpx.get(url + "/readyz").status_code == 503
        from serving.auth import KeyStore

        key = KeyStore(env["RISK_DB"]).create_key("platform", "t")
        r = httpx.post(url + "/v1/tiers", json={"codes": codes(live, 1)},
                       headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 503 and "no MLflow registry" in r.json()["error"]
