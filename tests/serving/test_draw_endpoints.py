"""Draws through the real service: commit, draw, fetch (no seed), publish (seed), verify from the
published files with the CLI, results ingestion and the measured lift, and refusals."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from serving.audit import AuditLog
from serving.cli import app
from serving.draws import seed_hash
from serving.masking import INDIVIDUAL_CODE_IN_TEXT
from serving.public_refs import is_public_ref
from tests.serving.conftest import Live

runner = CliRunner()


def post(live: Live, path: str, body: dict, role: str = "platform") -> httpx.Response:
    return httpx.post(live.url + path, json=body, headers=live.headers(role), timeout=120)


def policy(**overrides) -> dict:
    base = {
        "allocation": {
            "kind": "ratios",
            "tiers": ["A", "B", "C", "D"],
            "ratios": {"A": 0.02, "B": 0.05, "C": 0.2, "D": 0.6},
        },
        "control_fraction": 0.25,
        "stratify_by": "region",
        "exclusions": {"inspected_within_days": 90},
        "teams": {"team_size": 2, "load_cap": 40},
    }
    return {**base, **overrides}


def create(live: Live, draw_id: str, **kw) -> httpx.Response:
    body = {
        "draw_id": draw_id,
        "draw_date": "2026-07-15",
        "department": "MR",
        "policy": policy(),
        "scheme": "national4",
        **kw,
    }
    return post(live, "/v1/draws/create", body)


@pytest.fixture(scope="module")
def drawn(live: Live) -> dict:
    r = create(live, "2026-MR-07", seed="a secret seed of the county office")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_draw_commits_before_revealing_its_seed(live: Live, drawn: dict) -> None:
    assert "seed" not in drawn and drawn["status"] == "committed"
    assert drawn["seed_hash"] == seed_hash("a secret seed of the county office")
    arms = {t["arm"] for t in drawn["targets"]}
    assert {"risk", "control"} <= arms
    for t in drawn["targets"]:
        team = drawn["teams"][t["credit_code"]]
        assert len(team) == 2 and len(set(team)) == 2
        assert all(member.split("-")[1] == t["region"] for member in team)
        assert 0 < t["pi"] <= 1
    fetched = post(live, "/v1/draws/get", {"draw_id": "2026-MR-07"}).json()
    assert fetched["commitment"] == drawn["commitment"] and "seed" not in fetched


def test_individual_businesses_are_drawn_under_public_references_resolved_for_the_platform(
    live: Live, drawn: dict
) -> None:
    individuals = [t for t in drawn["targets"] if t["credit_code"].startswith("92")]
    companies = [t for t in drawn["targets"] if not t["credit_code"].startswith("92")]
    assert individuals and companies
    for t in individuals:  # the real code for whoever inspects, the reference as published
        assert is_public_ref(t["public_ref"]) and t["public_ref"][1:8] == t["credit_code"][1:8]
        assert t["credit_code"] in live.snapshot["credit_code"].to_numpy()
        assert t["credit_code"] in drawn["teams"]
    assert all(t["public_ref"] == t["credit_code"] for t in companies)
    assert len({t["public_ref"] for t in drawn["targets"]}) == len(drawn["targets"])
    # The draw's private record names nobody either; only its private mapping file does.
    private = live.workdir / "draws" / "2026-MR-07"
    mapping = private / "public_refs.csv"
    assert scan(*[p for p in private.iterdir() if p.is_file() and p != mapping]) == []
    assert {f"{t['public_ref']},{t['credit_code']}" for t in individuals} <= set(
        mapping.read_text().splitlines()
    )
    for secret in (mapping, live.workdir / "keys" / "public_refs.key"):
        assert secret.stat().st_mode & 0o077 == 0


def scan(*paths: Path) -> list[str]:
    """Every individual business's code in the files (byte by byte, as UTF-8 text)."""
    return [
        f"{p.name}: {m.group(0)}"
        for p in paths
        for m in INDIVIDUAL_CODE_IN_TEXT.finditer(p.read_bytes().decode("utf-8"))
    ]


def test_nothing_published_and_no_answer_but_the_targets_names_an_individual_business(
    live: Live, drawn: dict
) -> None:
    published = post(live, "/v1/draws/publish", {"draw_id": "2026-MR-07"})
    folder = live.workdir / "draws" / "2026-MR-07" / "public"
    files = sorted(folder.iterdir())
    assert {p.name for p in files} == set(published.json()["files"])
    assert scan(*files) == []
    listed = (folder / "targets.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in listed} == {t["public_ref"] for t in drawn["targets"]}
    answers = {
        "publish": published,
        "verify": post(live, "/v1/draws/verify", {"draw_id": "2026-MR-07"}),
        "lift": post(live, "/v1/draws/lift", {"draw_id": "2026-MR-07"}),
        "auditor get": post(live, "/v1/draws/get", {"draw_id": "2026-MR-07"}, role="auditor"),
    }
    assert answers["auditor get"].status_code == 403
    for name, r in answers.items():
        assert not INDIVIDUAL_CODE_IN_TEXT.search(r.content.decode("utf-8")), name
    assert set(published.json()["targets"][0]) >= {"credit_code", "arm"}
    assert all("public_ref" not in t for t in published.json()["targets"])


def test_published_draw_verifies_in_the_service_and_from_its_files(live: Live, drawn: dict) -> None:
    published = post(live, "/v1/draws/publish", {"draw_id": "2026-MR-07"}).json()
    assert published["seed"] == "a secret seed of the county office"
    assert {"record.json", "targets.csv", "teams.csv", "pool.csv"} <= set(published["files"])
    checked = post(live, "/v1/draws/verify", {"draw_id": "2026-MR-07"}).json()
    assert checked["ok"] and checked["commitment"] == drawn["commitment"]
    folder = live.workdir / "draws" / "2026-MR-07" / "public"
    result = runner.invoke(app, ["draw", "verify", str(folder)])
    assert result.exit_code == 0 and "verified" in result.output


def test_a_tampered_published_copy_fails_verification(
    live: Live, drawn: dict, tmp_path: Path
) -> None:
    import json
    import shutil

    post(live, "/v1/draws/publish", {"draw_id": "2026-MR-07"})
    source = live.workdir / "draws" / "2026-MR-07" / "public"
    csv_copy = shutil.copytree(source, tmp_path / "csv")
    lines = (csv_copy / "targets.csv").read_text().splitlines()
    first = lines[1].split(",")
    first[1] = "control" if first[1] != "control" else "risk"
    lines[1] = ",".join(first)
    (csv_copy / "targets.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["draw", "verify", str(csv_copy)])
    assert result.exit_code == 1 and "targets.csv row 1" in " ".join(result.output.split())
    seed_copy = shutil.copytree(source, tmp_path / "seed")
    doc = json.loads((seed_copy / "record.json").read_text())
    doc["seed"] = "not the seed that was committed"
    (seed_copy / "record.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["draw", "verify", str(seed_copy)])
    assert result.exit_code == 1 and "seed" in result.output


def test_same_seed_gives_companies_the_same_keys_and_individuals_new_references(
    live: Live, drawn: dict
) -> None:
    again = create(live, "2026-MR-07-again", seed="a secret seed of the county office").json()
    assert again["commitment"] != drawn["commitment"]
    # A unit's key depends on the seed and the unit only: a company drawn both times has the
    # same keys. An individual business's unit is its reference, which depends on the draw id
    # (SPEC §10: unlinkable across draws), so its keys — and the selection — may differ.
    keys = lambda d: {t["credit_code"]: (t["key_risk"], t["key_control"]) for t in d["targets"]}  # noqa: E731
    a, b = keys(drawn), keys(again)
    companies = [c for c in a.keys() & b.keys() if not c.startswith("92")]
    assert companies and all(a[c] == b[c] for c in companies)
    refs = lambda d: {t["public_ref"] for t in d["targets"] if t["credit_code"].startswith("92")}  # noqa: E731
    assert refs(drawn) and refs(again) and not refs(drawn) & refs(again)
    other = create(live, "2026-MR-07-other", seed="another secret seed entirely").json()
    b = keys(other)
    assert all(a[c] != b[c] for c in a.keys() & b.keys() if not c.startswith("92"))


def test_results_feed_the_lift_of_the_risk_arm_over_the_control_arm(
    live: Live, drawn: dict
) -> None:
    rows = [
        {
            "draw_id": "2026-MR-07",
            "credit_code": t["credit_code"],
            "inspected_on": "2026-08-01",
            "problem_found": t["tier"] in ("C", "D"),
        }
        for t in drawn["targets"]
    ]
    denied = post(live, "/v1/results", {"results": rows[:1]}, role="platform")
    assert denied.status_code == 403
    r = post(live, "/v1/results", {"results": rows}, role="admin")
    assert r.status_code == 200, r.text
    lift = r.json()["lift"]["2026-MR-07"]
    assert lift["inspected"] == len(rows)
    risk, control = lift["risk"]["rate"], lift["control"]["rate"]
    assert lift["lift"]["difference"] == pytest.approx(risk - control)
    lo, hi = lift["lift"]["interval_95"]
    assert lo < risk - control < hi
    again = post(live, "/v1/results", {"results": rows[:1]}, role="admin")
    assert again.status_code == 409


def test_results_may_name_a_target_by_its_public_reference(live: Live, drawn: dict) -> None:
    again = post(live, "/v1/draws/get", {"draw_id": "2026-MR-07-again"}).json()
    target = next(t for t in again["targets"] if t["credit_code"].startswith("92"))
    row = {
        "draw_id": "2026-MR-07-again",
        "credit_code": target["public_ref"],
        "inspected_on": "2026-08-01",
        "problem_found": True,
    }
    r = post(live, "/v1/results", {"results": [row]}, role="admin")
    assert r.status_code == 200, r.text
    assert r.json()["lift"]["2026-MR-07-again"]["inspected"] == 1
    by_code = {**row, "credit_code": target["credit_code"]}
    assert post(live, "/v1/results", {"results": [by_code]}, role="admin").status_code == 409
    elsewhere = next(t["public_ref"] for t in drawn["targets"] if t["public_ref"][0] == "X")
    r = post(live, "/v1/results", {"results": [{**row, "credit_code": elsewhere}]}, role="admin")
    assert r.status_code == 422 and "no public reference" in r.text


BAD = [
    (
        {
            "policy": policy(
                allocation={
                    "kind": "ratios",
                    "tiers": ["A", "B", "C", "D"],
                    "ratios": {"A": 1.5, "B": 0.1, "C": 0.2, "D": 0.6},
                }
            )
        },
        400,
        "outside [0, 1]",
    ),
    (
        {
            "policy": policy(
                allocation={
                    "kind": "ratios",
                    "tiers": ["A", "B", "C", "Z"],
                    "ratios": {"A": 0.1, "B": 0.1, "C": 0.2, "Z": 0.6},
                }
            )
        },
        400,
        "not the tiers of scheme",
    ),
    ({"policy": policy(filters={"regions": ["999999"]})}, 400, "empty"),
    ({"policy": policy(teams={"team_size": 20})}, 422, "refused"),
    ({"draw_id": "2026-MR-07"}, 409, "already exists"),
    ({"draw_id": "objection-92371000MA3MXH0E3W"}, 400, "individual business's credit code"),
    ({"scheme": "stars"}, 400, "scheme"),
    ({"draw_date": "2026-02-30"}, 400, "draw_date"),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD, ids=lambda x: str(x)[:30])
def test_bad_draw_requests_are_refused_and_store_nothing(
    live: Live, drawn: dict, change: dict, status: int, message: str
) -> None:
    head = AuditLog(live.db).head()
    draws_before = sorted(p.name for p in (live.workdir / "draws").iterdir())
    body = {"draw_id": "refused-draw", **change}
    r = create(live, **body)
    assert r.status_code == status, r.text
    assert message in r.text, r.text
    assert AuditLog(live.db).head() == head
    assert sorted(p.name for p in (live.workdir / "draws").iterdir()) == draws_before


def test_unknown_draws_and_results_for_undrawn_enterprises_are_refused(
    live: Live, drawn: dict
) -> None:
    assert post(live, "/v1/draws/get", {"draw_id": "nope"}).status_code == 404
    undrawn = next(c for c in live.snapshot["credit_code"] if c not in drawn["teams"])
    r = post(
        live,
        "/v1/results",
        {"results": [{"draw_id": "2026-MR-07", "credit_code": undrawn,
                      "inspected_on": str(date(2026, 8, 2)), "problem_found": True}]},
        role="admin",
    )  # fmt: skip
    assert r.status_code == 422 and "results[0]" in r.text


def test_the_draw_cli_refuses_a_folder_without_a_record(tmp_path: Path) -> None:
    result = runner.invoke(app, ["draw", "verify", str(tmp_path)])
    assert result.exit_code == 2 and "record.json" in result.output
