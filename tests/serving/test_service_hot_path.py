"""The lean path's answers, as a client receives them, against BentoML's for the same request:
same status, body and headers (it sends its own ASGI messages and checks the key only once)."""

from __future__ import annotations

import json

import httpx

from serving.audit import AuditLog
from tests.serving.conftest import Live


def both(live: Live, body: str, headers: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
    """The same POST through the lean path (JSON) and through BentoML's endpoint (text/plain,
    which the lean path leaves to BentoML)."""
    sent = [
        httpx.post(live.url + "/v1/tiers", content=body, headers={**headers, "Content-Type": kind},
                   timeout=60)
        for kind in ("application/json", "text/plain")
    ]  # fmt: skip
    return sent[0], sent[1]


def shown(r: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.multi_items() if k != "date"]


def test_lean_answers_and_refusals_carry_bentomls_headers(live: Live) -> None:
    code = live.snapshot["credit_code"].iloc[0]
    cases = [
        (json.dumps({"codes": [code]}), "platform", 200),
        (json.dumps({"codes": [code], "reasons": 2, "lang": "en"}), "admin", 200),
        (json.dumps({"codes": [code]}), "auditor", 403),
        (json.dumps({"codes": ["x"]}), "platform", 400),
    ]
    for body, role, status in cases:
        lean, theirs = both(live, body, live.headers(role))
        assert lean.status_code == theirs.status_code == status, (role, lean.text)
        assert lean.content == theirs.content
        assert shown(lean) == shown(theirs), role
        assert ("server", "BentoML Service/credit-risk-supervision") in shown(lean)


def test_a_key_checked_once_still_answers_and_audits_as_its_role(live: Live) -> None:
    """KeyFirst's principal is the one the answer uses: the role decides masking and the
    audit row names that key and role."""
    log = AuditLog(live.db)
    person = live.snapshot["credit_code"][live.snapshot["credit_code"].str.startswith("92")]
    code = person.iloc[0]
    for role, masked in (("platform", True), ("admin", False)):
        before = log.head().seq if log.head() else 0
        r = httpx.post(live.url + "/v1/tiers", json={"codes": [code]}, headers=live.headers(role))
        assert r.status_code == 200
        assert (r.json()["results"][0]["credit_code"] != code) is masked
        (row,) = [e for e in log.entries(since=before) if e.action == "tiers"]
        assert row.role == role
        assert row.actor == live.keys[role].split("_")[1]
