"""PostgreSQL as the service database, for real (a server from ``tests/postgres.py``).

The audit-trail and API-key tests already run on both backends (``test_audit.py``,
``test_auth.py``: append, chain verification, tampering named, triggers, concurrent appends
from threads and processes). Here: what only PostgreSQL has — TRUNCATE, roles and privileges,
several workers creating the schema at once, 64-bit sequence numbers, libpq URLs — and the real
BentoML service started with ``RISK_DB`` on PostgreSQL: tiers, the audit trail verified with
``riskctl audit verify``, and a draw created, published, verified, its results ingested and
its lift measured, with what the draw desk stored read back from the database directly.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from features.pipeline import FeatureRun
from features.workspace import Workspace
from serving.audit import AuditLog, database_url
from serving.auth import KeyStore, Role
from serving.cli import app
from serving.draw_desk import DrawDesk, synthetic_roster
from tests.postgres import Database, PostgresServer, postgres_database
from tests.serving.conftest import Live
from tests.serving.server import bentoml_server

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[Database]:
    yield from postgres_database(postgres_server)


def test_truncate_is_refused_by_the_trigger(pg: Database) -> None:
    log = AuditLog(pg.url)
    log.append("k", "admin", "promote", payload={"i": 1})
    with pytest.raises(psycopg.Error, match="append-only: TRUNCATE refused"):
        pg.execute("TRUNCATE audit_log")
    assert log.verify().ok and log.verify().checked == 1


def test_sequence_numbers_are_64_bit(pg: Database) -> None:
    AuditLog(pg.url)
    (col,) = pg.query(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'audit_log' AND column_name = 'seq'"
    )
    assert col["data_type"] == "bigint"


def test_libpq_urls_mean_psycopg(pg: Database) -> None:
    assert pg.conninfo.startswith("postgresql://")
    assert database_url(pg.conninfo) == pg.url
    assert database_url("postgres://u:p@db:5432/risk") == "postgresql+psycopg://u:p@db:5432/risk"
    log = AuditLog(pg.conninfo)  # as a hosting provider hands it out
    assert log.engine.dialect.driver == "psycopg"
    assert log.append("k", "admin", "promote", payload={}).seq == 1


def test_a_least_privilege_role_appends_and_verifies_but_cannot_change_anything(
    pg: Database,
) -> None:
    """The owner creates the schema; the service's role gets SELECT and INSERT only. It can
    still open the log, append (concurrently, from two logs) and verify, but neither change rows
    nor remove the triggers — and ``LOCK TABLE … SHARE ROW EXCLUSIVE``, which appends used to
    take, is beyond it."""
    owner = AuditLog(pg.url)
    owner.append("owner", "admin", "setup", payload={})
    role = f"svc_{uuid.uuid4().hex[:12]}"
    pg.execute(
        f"CREATE ROLE {role} LOGIN",
        f"GRANT SELECT, INSERT ON audit_log TO {role}",
    )
    try:
        service_url = pg.url.replace("//postgres@", f"//{role}@")
        service_conninfo = pg.conninfo.replace("//postgres@", f"//{role}@")
        logs = [AuditLog(service_url), AuditLog(service_url)]
        errors: list[BaseException] = []

        def work(log: AuditLog, n: int) -> None:
            try:
                for i in range(25):
                    log.append(f"w{n}", "platform", "tiers", payload={"i": i})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(lg, n)) for n, lg in enumerate(logs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        report = logs[0].verify()
        assert report.ok and report.checked == 51
        with psycopg.connect(service_conninfo) as con:
            for statement in (
                "UPDATE audit_log SET actor = 'x' WHERE seq = 2",
                "DELETE FROM audit_log WHERE seq = 2",
                "DROP TRIGGER audit_log_no_change ON audit_log",
                "ALTER TABLE audit_log DISABLE TRIGGER USER",
                "LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                    con.execute(statement)
        assert owner.verify().checked == 51
    finally:
        pg.execute(f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_a_writer_that_skips_the_lock_cannot_fork_the_chain(pg: Database) -> None:
    """Between our append reading the head and inserting, another writer that ignores the
    append lock (say an older release, or a script) commits the next row. Our insert then
    collides on ``seq``, the transaction rolls back, and the retry chains after that row."""
    from sqlalchemy import event

    from serving.audit import _row_hash

    log = AuditLog(pg.url)
    first = log.append("k", "platform", "tiers", payload={"i": 1})
    intruded: list[dict] = []

    def other_writer_commits_first(conn, cursor, statement, *_args) -> None:
        if statement.startswith("INSERT INTO audit_log") and not intruded:
            row = {
                "seq": first.seq + 1,
                "at": "2026-11-23T00:00:00.000000+00:00",
                "actor": "script",
                "role": "admin",
                "action": "manual",
                "model_version": None,
                "snapshot_version": None,
                "input_hash": None,
                "payload": "{}",
                "prev_hash": first.hash,
            }
            row["hash"] = _row_hash(row)
            columns = ", ".join(row)
            with psycopg.connect(pg.conninfo, autocommit=True) as con:
                con.execute(
                    f"INSERT INTO audit_log ({columns}) VALUES ({', '.join(['%s'] * len(row))})",
                    list(row.values()),
                )
            intruded.append(row)

    event.listen(log.engine, "before_cursor_execute", other_writer_commits_first)
    mine = log.append("k", "platform", "tiers", payload={"i": 2})
    assert intruded, "the other writer never ran"
    assert (mine.seq, mine.prev_hash) == (first.seq + 2, intruded[0]["hash"])
    rows = pg.query("SELECT seq, actor FROM audit_log ORDER BY seq")
    assert [(r["seq"], r["actor"]) for r in rows] == [(1, "k"), (2, "script"), (3, "k")]
    assert log.verify().ok and log.verify().checked == 3


def test_workers_starting_together_create_the_schema_once(pg: Database) -> None:
    """Like the service's worker processes at start-up: every store opened at the same moment
    on an empty database (separate engines, so separate connections)."""
    start = threading.Barrier(6)
    opened: list[object] = []
    errors: list[BaseException] = []

    def open_all(n: int) -> None:
        try:
            start.wait()
            opened.append(AuditLog(pg.url))
            opened.append(KeyStore(pg.url))
            opened.append(DrawDesk(pg.url, Path("/nonexistent")))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_all, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 18
    tables = {r["tablename"] for r in pg.query("SELECT tablename FROM pg_tables")}
    assert {"audit_log", "api_keys", "draws", "drawn_targets", "inspection_results"} <= tables
    triggers = pg.query(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"
    )
    assert sorted(t["tgname"] for t in triggers) == ["audit_log_no_change", "audit_log_no_truncate"]


def test_keys_created_on_postgresql_authenticate_and_revoke(pg: Database) -> None:
    store = KeyStore(pg.url)
    key = store.create_key("auditor", "Provincial audit office")
    other = KeyStore(pg.url, ttl=0)  # another worker, no cache
    principal = other.authenticate(key)
    assert principal.role is Role.AUDITOR and principal.label == "Provincial audit office"
    assert store.revoke_key(principal.key_id)
    with pytest.raises(Exception, match="revoked"):
        other.authenticate(key)
    (row,) = pg.query("SELECT role, revoked_at FROM api_keys")
    assert row["role"] == "auditor" and row["revoked_at"] is not None


# -- the real service on PostgreSQL ----------------------------------------------------------


@pytest.fixture(scope="module")
def live_pg(
    province: FeatureRun,
    champion,
    champion_mlruns: Path,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """``bentoml serve`` (two workers) with ``RISK_DB`` on a fresh PostgreSQL database."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("service-postgres")
    for database in postgres_database(postgres_server):
        store = KeyStore(database.url)
        keys = {r: store.create_key(r, f"test {r}") for r in ("platform", "auditor", "admin")}
        workdir = Path(Workspace(province.workspace).root)
        synthetic_roster(workdir)
        env = {
            "RISK_WORKDIR": str(workdir),
            "RISK_MLRUNS": str(champion_mlruns),
            "RISK_DB": database.url,
        }
        with bentoml_server(env, folder / "server.log") as url:
            yield Live(url, database.url, keys, pd.read_parquet(province.snapshot.path), workdir)


def test_tiers_through_the_service_land_in_a_verified_chain_on_postgresql(
    live_pg: Live, champion
) -> None:
    from tests.serving.test_service import codes, post

    asked = codes(live_pg, 3)
    r = post(live_pg, "/v1/tiers", {"codes": asked, "lang": "en"})
    assert r.status_code == 200, r.text
    assert [x["credit_code"][:8] for x in r.json()["results"]] == [c[:8] for c in asked]
    log = AuditLog(live_pg.db)
    head = log.head()
    assert head is not None and head.action == "tiers" and head.role == "platform"
    assert head.model_version == champion.model_version
    assert head.payload["request"]["codes"][0][:8] == asked[0][:8]
    # a refusal changes no stored state (it goes to the application log only)
    assert post(live_pg, "/v1/tiers", {"codes": asked}, role="auditor").status_code == 403
    assert log.head() == head
    actions = [(e.action, e.role) for e in log.entries()]
    result = CliRunner().invoke(app, ["audit", "verify", "--db", live_pg.db])
    assert result.exit_code == 0, result.output
    assert f"audit chain intact: {len(actions)} entries" in result.output


def test_a_draw_on_postgresql_from_commitment_to_lift(live_pg: Live) -> None:
    from tests.serving.test_draw_endpoints import create, post

    draw_id = "2026-PG-01"
    r = create(live_pg, draw_id, seed="a secret seed of the postgres office")
    assert r.status_code == 200, r.text
    drawn = r.json()
    assert drawn["status"] == "committed" and "seed" not in drawn
    assert create(live_pg, draw_id).status_code == 409  # the database knows it
    (stored,) = Database("postgresql", live_pg.db, conninfo=_libpq(live_pg.db)).query(
        f"SELECT draw_date::text AS day, targets, published_at FROM draws WHERE draw_id = '{draw_id}'"
    )
    assert stored == {"day": "2026-07-15", "targets": len(drawn["targets"]), "published_at": None}

    published = post(live_pg, "/v1/draws/publish", {"draw_id": draw_id}).json()
    assert published["status"] == "published" and published["seed"]
    checked = post(live_pg, "/v1/draws/verify", {"draw_id": draw_id}).json()
    assert checked["ok"] and checked["commitment"] == drawn["commitment"]

    rows = [
        {
            "draw_id": draw_id,
            "credit_code": t["credit_code"],
            "inspected_on": "2026-08-01",
            "problem_found": t["tier"] in ("C", "D"),
        }
        for t in drawn["targets"]
    ]
    early = {**rows[0], "inspected_on": "2026-07-01"}
    assert post(live_pg, "/v1/results", {"results": [early]}, role="admin").status_code == 400
    r = post(live_pg, "/v1/results", {"results": rows}, role="admin")
    assert r.status_code == 200, r.text
    lift = r.json()["lift"][draw_id]
    assert lift["inspected"] == len(rows)
    assert lift["lift"]["difference"] == pytest.approx(
        lift["risk"]["rate"] - lift["control"]["rate"]
    )
    assert post(live_pg, "/v1/results", {"results": rows[:1]}, role="admin").status_code == 409
    again = post(live_pg, "/v1/draws/lift", {"draw_id": draw_id}).json()
    assert again == lift
    found = Database("postgresql", live_pg.db, conninfo=_libpq(live_pg.db)).query(
        f"SELECT problem_found, inspected_on::text AS day FROM inspection_results "
        f"WHERE draw_id = '{draw_id}'"
    )
    assert len(found) == len(rows) and {f["day"] for f in found} == {"2026-08-01"}
    assert sum(f["problem_found"] is True for f in found) == sum(r["problem_found"] for r in rows)
    assert AuditLog(live_pg.db).verify().ok


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
