"""The lean path (``serving.service.KeyFirst`` answering ``/v1/tiers`` and ``/v1/score``): the
same bytes, status codes and audit rows as BentoML's own path for the same request.

Two ways in: (1) in-process, the middleware alone in front of an app that fails the test if it
is reached, around a service instance on the live server's workspace and database — this
proves the lean path answered; (2) over HTTP against the live server, where a JSON body sent
as ``text/plain`` goes to BentoML's endpoint (its JSON parser reads any type but its own) and
the same body as ``application/json`` takes the lean path.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from serving import service
from serving.audit import AuditLog
from tests.serving.conftest import Live


class Downstream:
    """Stands in for BentoML's app behind the middleware: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, scope, receive, send) -> None:
        self.calls.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"downstream"})


@pytest.fixture(scope="module")
def lean(live: Live, champion_mlruns) -> Iterator[Downstream]:
    """A service instance in this process on the live server's workspace and database."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RISK_WORKDIR", str(live.workdir))
        mp.setenv("RISK_MLRUNS", str(champion_mlruns))
        mp.setenv("RISK_DB", live.db)
        before = service._live
        service.RiskService.inner()  # registers itself as this process's service
        try:
            yield Downstream()
        finally:
            service._live = before


def call(downstream: Downstream, path: str, body, role: str | None, live: Live, **kw):
    """POST through ``KeyFirst`` alone (in-process ASGI)."""
    headers = dict(live.headers(role)) if role else {}
    headers["Content-Type"] = kw.pop("content_type", "application/json")
    content = body if isinstance(body, str | bytes) else json.dumps(body)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=service.KeyFirst(downstream))
        async with httpx.AsyncClient(transport=transport, base_url="http://lean") as client:
            return await client.request(kw.pop("method", "POST"), path, content=content,
                                        headers=headers)  # fmt: skip

    return asyncio.run(go())


def bentoml_path(live: Live, path: str, body, role: str | None) -> httpx.Response:
    """The same request through BentoML's endpoint on the live server."""
    headers = dict(live.headers(role)) if role else {}
    headers["Content-Type"] = "text/plain"
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return httpx.post(live.url + path, content=content, headers=headers, timeout=60)


def some_codes(live: Live) -> tuple[list[str], list[str]]:
    s = live.snapshot["credit_code"]
    return s[~s.str.startswith("92")].head(4).tolist(), s[s.str.startswith("92")].head(2).tolist()


def cases(live: Live) -> list[tuple[str, object, str | None]]:
    companies, persons = some_codes(live)
    unknown = "91330102MA2B3C4D7Y"
    good = {"codes": [*companies, *persons, unknown]}
    return [
        ("/v1/tiers", good, "platform"),
        ("/v1/tiers", good, "admin"),
        ("/v1/tiers", {"codes": companies[:2] + persons[:1], "reasons": 3, "lang": "en"}, "platform"),
        ("/v1/tiers", {"codes": companies[:1], "scheme": None, "reasons": 0, "lang": "zh"}, "platform"),
        ("/v1/tiers", {"codes": companies * 5}, "platform"),  # the >8-code (numpy) branch
        ("/v1/tiers", good, "auditor"),  # 403
        ("/v1/tiers", {"codes": ["not-a-code"]}, "platform"),
        ("/v1/tiers", {"codes": []}, "auditor"),  # validation comes before the role check
        ("/v1/tiers", {"codes": companies[:1], "scheme": "stars"}, "platform"),
        ("/v1/tiers", {"codes": companies[:1], "lang": "fr", "reasons": 11}, "platform"),
        ("/v1/tiers", {"codes": companies[:1], "colour": "red"}, "platform"),
        ("/v1/tiers", {"codes": ["9133010203DC102BL8"] * 1001}, "platform"),
        ("/v1/tiers", '{"codes": [', "platform"),
        ("/v1/tiers", "", "platform"),
        ("/v1/tiers", "[1, 2]", "platform"),
        ("/v1/score", {"rows": [{"industry": "ZZ"}]}, "admin"),
        ("/v1/score", {"rows": [{"penalty_count_5y": -1}]}, "admin"),
        ("/v1/score", {"rows": [{"shoe_size": 3}]}, "platform"),
    ]  # fmt: skip


def test_the_lean_path_answers_byte_for_byte_as_bentoml(live: Live, lean: Downstream) -> None:
    for path, body, role in cases(live):
        mine = call(lean, path, body, role, live)
        theirs = bentoml_path(live, path, body, role)
        where = f"{path} {role} {str(body)[:80]}"
        assert mine.status_code == theirs.status_code, (where, mine.text, theirs.text)
        assert mine.content == theirs.content, where
        assert mine.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert lean.calls == []  # every one of them was answered by the lean path


def test_scoring_rows_on_the_lean_path_matches_bentoml(live: Live, lean: Downstream) -> None:
    from features.catalogue import FEATURE_NAMES

    rows = live.snapshot.head(3)[list(FEATURE_NAMES)].astype(object)
    payload = [
        {k: (None if v is None or v != v else v) for k, v in r.items()}
        for r in rows.to_dict("records")
    ]
    body = {"rows": payload, "reasons": 2, "lang": "en"}
    mine = call(lean, "/v1/score", body, "platform", live)
    theirs = bentoml_path(live, "/v1/score", body, "platform")
    assert mine.status_code == theirs.status_code == 200, mine.text
    assert mine.content == theirs.content
    assert lean.calls == []


def test_the_lean_path_audits_the_same_row_and_refusals_none(live: Live, lean: Downstream) -> None:
    log = AuditLog(live.db)
    companies, persons = some_codes(live)
    for body in ({"codes": [*companies[:2], *persons]}, {"codes": persons, "reasons": 2}):
        seq = log.head().seq
        assert call(lean, "/v1/tiers", body, "platform", live).status_code == 200
        assert bentoml_path(live, "/v1/tiers", body, "platform").status_code == 200
        mine, theirs = log.entries(since=seq)
        for field in ("actor", "role", "action", "model_version", "snapshot_version",
                      "input_hash", "payload_json"):  # fmt: skip
            assert getattr(mine, field) == getattr(theirs, field), field
        assert persons[0] not in mine.payload_json  # the trail is masked whoever asked
        assert mine.payload["request"]["codes"][-1][:8] == persons[-1][:8]
    refused = [c for c in cases(live) if c[2] == "auditor" or c[1] in ("", "[1, 2]")]
    head = log.head()
    for path, body, role in refused:
        assert call(lean, path, body, role, live).status_code in (400, 403)
    assert log.head() == head  # nothing stored for a refused request
    assert log.verify().ok


def test_other_requests_go_on_to_bentoml_and_anonymous_ones_stop_first(
    live: Live, lean: Downstream
) -> None:
    companies, _ = some_codes(live)
    body = {"codes": companies[:1]}
    lean.calls.clear()
    assert (
        call(lean, "/v1/tiers", body, "platform", live, content_type="text/plain").status_code
        == 299
    )
    assert call(lean, "/v1/tiers", body, "platform", live, method="PUT").status_code == 299
    assert call(lean, "/v1/explain", body, "platform", live).status_code == 299
    assert lean.calls == [("POST", "/v1/tiers"), ("PUT", "/v1/tiers"), ("POST", "/v1/explain")]
    lean.calls.clear()
    r = call(lean, "/v1/tiers", {"codes": ["x"]}, None, live)
    assert r.status_code == 401 and "codes" not in r.text
    r = call(
        lean, "/v1/tiers", body, "platform", live, content_type="application/json; charset=utf-8"
    )
    assert r.status_code == 200 and lean.calls == []  # fmt: skip


def test_live_json_requests_equal_bentoml_path_and_are_counted_in_metrics(live: Live) -> None:
    for path, body, role in cases(live)[:8]:
        headers = {**live.headers(role), "Content-Type": "application/json"} if role else {}
        content = body if isinstance(body, str) else json.dumps(body)
        r = httpx.post(live.url + path, content=content, headers=headers, timeout=60)
        theirs = bentoml_path(live, path, body, role)
        assert (r.status_code, r.content) == (theirs.status_code, theirs.content), (path, role)
    metrics = httpx.get(live.url + "/metrics", timeout=30).text
    assert any(
        'endpoint="/v1/tiers"' in line and 'http_response_code="200"' in line
        and not line.rstrip().endswith(" 0.0")
        for line in metrics.splitlines() if line.startswith("bentoml_service_request_total")
    )  # fmt: skip


# -- BentoML's traffic timeout, patched -------------------------------------------------------


def test_the_traffic_timeout_still_answers_504_and_lets_go_of_answered_requests() -> None:
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    async def quick(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)

    async def silent(scope, receive, send) -> None:
        return None

    async def run(app, timeout: float) -> tuple[list[int], float, int]:
        sent: list[int] = []

        async def send(message) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        async def receive():
            return {"type": "http.request", "body": b""}

        loop = asyncio.get_running_loop()
        t = time.monotonic()
        await TimeoutMiddleware(app, timeout=timeout)({"type": "http"}, receive, send)
        await asyncio.sleep(0)
        pending = sum(1 for h in getattr(loop, "_scheduled", []) if not h.cancelled())
        return sent, time.monotonic() - t, pending

    sent, took, pending = asyncio.run(run(quick, 60))
    assert sent == [200] and pending == 0  # no 60 s timer left behind
    sent, took, _ = asyncio.run(run(slow, 0.2))
    assert sent == [504] and took < 2
    sent, took, _ = asyncio.run(run(silent, 30))
    assert sent == [] and took < 2  # a handler that ends without answering does not hang


# -- the tier answer's text ---------------------------------------------------------------------


def test_tier_text_is_the_json_of_the_snapshot_values(live: Live, lean: Downstream) -> None:
    """``runtime.tiers`` builds JSON text from precomputed spellings; it must say exactly what
    the arrays hold, for one code (item-by-item branch) and many (numpy branch)."""
    from features.credit_code import mask
    from serving import runtime

    state = service._live.state
    codes = live.snapshot["credit_code"].tolist()
    asked = [*codes[:40], "91330102MA2B3C4D7Y", *[c for c in codes if c.startswith("92")][:3]]
    for scheme in (None, *state.model.scheme_names):
        active = runtime.scheme_of(state.model, scheme)
        for batch in ([asked[0]], [asked[-1]], ["91330102MA2B3C4D7Y"], asked):
            for masked in (False, True):
                text, summary = runtime.tiers(
                    state, batch, scheme=scheme, reasons=0, lang="zh", masked=masked
                )
                doc = json.loads(text)
                assert doc["model_version"] == state.model_version
                for code, item, tier in zip(batch, doc["results"], summary, strict=True):
                    assert item["credit_code"] == (mask(code) if masked else code)
                    i = state.index.get(code)
                    if i is None:
                        assert item == {"credit_code": item["credit_code"], "found": False}
                        assert tier is None
                        continue
                    assert item["probability"] == float(state.probability[i])
                    assert item["scheme"] == active
                    assert item["tier"] == tier == state.tiers[active][i]
                    assert item["rule"] == state.rules[active][i]
                    assert item["tiers"] == {s: state.tiers[s][i] for s in state.tiers}
                    assert list(item) == ["credit_code", "found", "probability", "scheme",
                                          "tier", "rule", "tiers"]  # fmt: skip


def test_the_batch_code_check_accepts_and_names_exactly_what_the_code_by_code_check_does() -> None:
    import random

    from pydantic import ValidationError

    from features.credit_code import is_well_formed
    from serving.schemas import TiersRequest

    good = "9133010203DC102BL8"
    tricky = [good, "92371000MA3MXH0E3W", f"{good},{good}", f"{good}\n", good.lower(), "",
              good[:17], f"{good}X", ",", f"{good[:9]},{good[10:]}", "913301020IDC102BL8"]  # fmt: skip
    rng = random.Random(5)
    for _ in range(400):
        codes = [rng.choice(tricky) for _ in range(rng.randint(1, 6))]
        bad = [i for i, c in enumerate(codes) if not is_well_formed(c)]
        try:
            TiersRequest(codes=codes)
            assert bad == [], codes
        except ValidationError as exc:
            assert bad and f"codes[{bad[0]}]:" in exc.errors()[0]["msg"], codes
