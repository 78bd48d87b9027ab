"""Audit trail: the chain verifies, every kind of tampering is named, appends are serialised.

Every test runs twice: on a SQLite file and on a real PostgreSQL server (``tests/postgres.py``).
Tampering goes around the project's code — ``sqlite3`` on the file, ``psycopg`` as the
PostgreSQL superuser — after dropping the append-only triggers, exactly as someone with the
file or the superuser's password would do it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from serving.audit import GENESIS, AuditLog, canonical_json, input_hash
from tests.postgres import Database

PERSON = "92371000MA3MXH0E3W"  # an individual business: personal data
COMPANY = "9144030071526726XG"


def fill(log: AuditLog, n: int) -> list:
    return [
        log.append(
            f"key{i % 3}",
            "platform",
            "tiers" if i % 2 else "explain",
            payload={"i": i, "codes": [COMPANY]},
            model_version="3",
            snapshot_version="2026-06-30",
            input_hash=input_hash({"i": i}),
        )
        for i in range(n)
    ]


_DROP_TRIGGERS = {
    "sqlite": ("DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"),
    "postgresql": (
        "DROP TRIGGER audit_log_no_change ON audit_log",
        "DROP TRIGGER audit_log_no_truncate ON audit_log",
    ),
}


def tamper(db: Database, *statements: str) -> None:
    """Drop the triggers and run ``statements`` directly, as an intruder would."""
    db.execute(*_DROP_TRIGGERS[db.kind], *statements)


def rehash(row: dict) -> str:
    fields = {k: row[k] for k in row if k != "hash"}
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def raw_rows(db: Database) -> list[dict]:
    return db.query("SELECT * FROM audit_log ORDER BY seq")


@pytest.fixture
def db(database: Database) -> Database:
    """An empty SQLite file, then an empty PostgreSQL database (see ``tests/postgres.py``)."""
    return database


def test_chain_links_every_row_and_verifies(db: Database) -> None:
    log = AuditLog(db.url)
    entries = fill(log, 20)
    assert [e.seq for e in entries] == list(range(1, 21))
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = log.verify()
    assert report.ok and report.checked == 20 and report.first_broken_seq is None


def test_hash_covers_every_field_including_prev_hash(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 2)
    row = raw_rows(db)[1]
    assert row["hash"] == rehash(row)
    for name, other in [("prev_hash", GENESIS), ("actor", "x"), ("payload", "{}"), ("seq", 9)]:
        assert rehash({**row, name: other}) != row["hash"], name


def test_empty_log_verifies_and_has_no_head(db: Database) -> None:
    log = AuditLog(db.url)
    assert log.head() is None
    assert log.verify().ok and log.verify().checked == 0


def test_head_changes_with_each_append(db: Database) -> None:
    log = AuditLog(db.url)
    seen = set()
    for i in range(5):
        e = log.append("k", "admin", "promote", payload={"i": i})
        head = log.head()
        assert head is not None and head.seq == e.seq and head.hash == e.hash
        seen.add(head.hash)
    assert len(seen) == 5


def test_identical_appends_still_get_distinct_hashes(db: Database) -> None:
    log = AuditLog(db.url)
    a = log.append("k", "platform", "tiers", payload={"same": 1})
    b = log.append("k", "platform", "tiers", payload={"same": 1})
    assert a.hash != b.hash and log.verify().ok


def test_reopening_the_file_keeps_the_chain(db: Database) -> None:
    first = fill(AuditLog(db.url), 5)
    log = AuditLog(db.url)
    assert log.head().hash == first[-1].hash
    e = log.append("k", "auditor", "audit", payload={})
    assert e.seq == 6 and e.prev_hash == first[-1].hash
    assert log.verify().ok and log.verify().checked == 6


def test_entries_filter_and_page(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 10)
    assert [e.seq for e in log.entries(action="tiers")] == [2, 4, 6, 8, 10]
    assert [e.seq for e in log.entries(since=7)] == [8, 9, 10]
    assert [e.seq for e in log.entries(limit=3)] == [1, 2, 3]
    assert [e.seq for e in log.entries(since=2, action="explain", limit=2)] == [3, 5]
    assert [e.seq for e in log.entries(actor="key0")] == [1, 4, 7, 10]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert log.entries(since=future) == []
    assert len(log.entries(since=datetime.now(UTC) - timedelta(hours=1))) == 10
    e = log.entries(since=0, limit=1)[0]
    assert e.payload == {"codes": [COMPANY], "i": 0}
    assert e.model_version == "3" and e.snapshot_version == "2026-06-30"
    assert e.input_hash == input_hash({"i": 0})
    assert e.to_dict()["payload"] == e.payload


def test_payloads_are_masked_by_default(db: Database) -> None:
    log = AuditLog(db.url)
    e = log.append("k", "admin", "explain", payload={"code": PERSON, "note": f"asked {PERSON}"})
    assert e.payload == {"code": "92371000*********W", "note": "asked 92371000*********W"}
    assert PERSON not in _stored(db)
    assert log.verify().ok


def test_mask_none_writes_the_payload_as_given(db: Database) -> None:
    log = AuditLog(db.url, mask=None)
    e = log.append("k", "admin", "explain", payload={"code": PERSON})
    assert e.payload == {"code": PERSON}


def test_a_custom_mask_is_applied(db: Database) -> None:
    log = AuditLog(db.url, mask=lambda p: {k: "x" for k in p})
    assert log.append("k", "admin", "a", payload={"secret": 1}).payload == {"secret": "x"}


def _stored(db: Database) -> str:
    """What the database holds: the SQLite file and its WAL byte for byte; on PostgreSQL, every
    column of every row as text (its files are the server's)."""
    if db.kind == "postgresql":
        return json.dumps(raw_rows(db), ensure_ascii=False)
    wal = db.path.with_name(db.path.name + "-wal")
    return (db.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")).decode("latin-1")


def test_canonical_json_is_stable_and_handles_numpy_dates_nan() -> None:
    a = {"b": np.float64(1.5), "a": [np.int64(2), datetime(2026, 1, 2, tzinfo=UTC)], "n": np.nan}
    b = {"n": float("nan"), "a": [2, datetime(2026, 1, 2, tzinfo=UTC)], "b": 1.5}
    assert canonical_json(a) == canonical_json(b)
    assert json.loads(canonical_json(a)) == {
        "a": [2, "2026-01-02T00:00:00+00:00"],
        "b": 1.5,
        "n": None,
    }
    assert input_hash({"x": 1, "y": "信用"}) == input_hash({"y": "信用", "x": 1})
    assert input_hash({"x": 1}) != input_hash({"x": 2})
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


# -- append-only ----------------------------------------------------------------------------


def test_update_and_delete_are_refused_by_triggers(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 3)
    with pytest.raises(db.driver_error, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
    with pytest.raises(db.driver_error, match="append-only"):
        db.execute("DELETE FROM audit_log WHERE seq = 3")
    with pytest.raises(DatabaseError, match="append-only"), log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
    assert log.verify().ok and log.verify().checked == 3
    assert not any(hasattr(log, m) for m in ("update", "delete", "remove", "truncate"))


def test_reopening_restores_dropped_triggers(db: Database) -> None:
    fill(AuditLog(db.url), 2)
    tamper(db)
    AuditLog(db.url)
    with pytest.raises(db.driver_error, match="append-only"):
        db.execute("DELETE FROM audit_log")


# -- tampering is named ----------------------------------------------------------------------


def test_changed_payload_is_named(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 8)
    tamper(db, """UPDATE audit_log SET payload = '{"codes":[],"i":4}' WHERE seq = 5""")
    report = log.verify()
    assert not report.ok
    assert report.first_broken_seq == 5 and report.checked == 4
    assert "hash mismatch on row 5" in report.reason


def test_changed_hash_is_named(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 8)
    tamper(db, f"UPDATE audit_log SET hash = '{'f' * 64}' WHERE seq = 6")
    report = log.verify()
    assert (report.ok, report.first_broken_seq) == (False, 6)
    assert "hash mismatch on row 6" in report.reason


def test_forged_row_with_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 8)
    row = raw_rows(db)[2]  # seq 3
    row["actor"] = "innocent"
    forged = rehash(row)
    tamper(db, f"UPDATE audit_log SET actor = 'innocent', hash = '{forged}' WHERE seq = 3")
    report = log.verify()
    assert (report.ok, report.first_broken_seq, report.checked) == (False, 4, 3)
    assert "prev_hash of row 4 does not match the hash of row 3" in report.reason


def test_forged_first_row_is_named(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 3)
    row = raw_rows(db)[0]
    row["prev_hash"] = "1" * 64
    tamper(
        db, f"UPDATE audit_log SET prev_hash = '{'1' * 64}', hash = '{rehash(row)}' WHERE seq = 1"
    )
    report = log.verify()
    assert (report.ok, report.first_broken_seq) == (False, 1)
    assert "genesis" in report.reason


@pytest.mark.parametrize("gone", [1, 4, 7])
def test_deleted_row_is_named(db: Database, gone: int) -> None:
    log = AuditLog(db.url)
    fill(log, 8)
    tamper(db, f"DELETE FROM audit_log WHERE seq = {gone}")
    report = log.verify()
    assert (report.ok, report.first_broken_seq, report.checked) == (False, gone, gone - 1)
    assert f"row {gone} is missing" in report.reason


def test_reordered_rows_are_named(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 8)
    # Swap rows 4 and 5 wholesale (every column, stored hashes included) but keep seq order.
    cols = "at, actor, role, action, model_version, snapshot_version, input_hash, payload, prev_hash, hash"
    tamper(
        db,
        f"CREATE TABLE t AS SELECT seq, {cols} FROM audit_log WHERE seq IN (4, 5)",
        "UPDATE t SET seq = 9 - seq",
        "DELETE FROM audit_log WHERE seq IN (4, 5)",
        f"INSERT INTO audit_log (seq, {cols}) SELECT seq, {cols} FROM t",
    )
    rows = raw_rows(db)
    assert json.loads(rows[3]["payload"])["i"] == 4  # row 4 now holds entry 5's content
    report = log.verify()
    assert (report.ok, report.first_broken_seq) == (False, 4)
    assert "hash mismatch on row 4" in report.reason


def test_rechained_rewrite_and_truncation_are_caught_against_a_published_head(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 6)
    published = log.head().anchor
    # Rewrite row 3 and re-hash every later row: a self-consistent chain again ...
    rows = raw_rows(db)
    rows[2]["actor"] = "innocent"
    prev = rows[1]["hash"]
    statements = []
    for r in rows[2:]:
        r["prev_hash"] = prev
        r["hash"] = prev = rehash(r)
        statements.append(
            f"UPDATE audit_log SET actor = '{r['actor']}', prev_hash = '{r['prev_hash']}', "
            f"hash = '{r['hash']}' WHERE seq = {r['seq']}"
        )
    tamper(db, *statements)
    assert log.verify().ok  # ... which the chain alone cannot tell from the original
    report = log.verify(published=published)
    assert (report.ok, report.first_broken_seq) == (False, 6)
    assert "no longer has the published hash" in report.reason


def test_truncated_tail_is_caught_against_a_published_head(db: Database) -> None:
    log = AuditLog(db.url)
    fill(log, 6)
    published = log.head().anchor
    tamper(db, "DELETE FROM audit_log WHERE seq > 4")
    assert log.verify().ok
    report = log.verify(published=published)
    assert (report.ok, report.first_broken_seq) == (False, 5)
    assert "published row 6 is gone" in report.reason
    assert log.verify(published=log.head().anchor).ok


def test_verify_walks_more_rows_than_one_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.audit as audit

    monkeypatch.setattr(audit, "VERIFY_BATCH", 3)
    log = AuditLog(db.url)
    fill(log, 10)
    assert log.verify().checked == 10
    tamper(db, "DELETE FROM audit_log WHERE seq = 7")
    assert log.verify().first_broken_seq == 7


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_appends_keep_the_chain_valid(db: Database) -> None:
    """Threads on one log, and on separate logs (separate connections, like other workers)."""
    shared = AuditLog(db.url)
    others = [AuditLog(db.url) for _ in range(2)]
    logs = [shared, shared, shared, *others]
    per_thread = 40
    errors: list[BaseException] = []
    start = threading.Barrier(len(logs))

    def work(n: int, log: AuditLog) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                log.append(f"t{n}", "platform", "tiers", payload={"thread": n, "i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, lg)) for n, lg in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = per_thread * len(logs)
    rows = raw_rows(db)
    assert [r["seq"] for r in rows] == list(range(1, total + 1))
    report = shared.verify()
    assert report.ok and report.checked == total
    # every thread's entries are there, in the order that thread wrote them
    for n in range(len(logs)):
        mine = [json.loads(r["payload"])["i"] for r in rows if r["actor"] == f"t{n}"]
        assert mine == list(range(per_thread))


# -- fast paths -------------------------------------------------------------------------------


def test_row_hash_is_the_canonical_json_hash_of_the_row(db: Database) -> None:
    from serving.audit import _row_hash

    log = AuditLog(db.url)
    fill(log, 5)
    for row in raw_rows(db):
        assert _row_hash(row) == rehash(row) == row["hash"]
    odd = {**raw_rows(db)[0], "actor": np.str_("k"), "seq": np.int64(1)}  # not plain types
    assert _row_hash(odd) == rehash(odd)


def test_plain_fast_paths_spell_values_as_before() -> None:
    from serving.audit import _plain

    class Tier(str):
        pass

    value = {
        "codes": [PERSON, COMPANY],
        "mixed": [PERSON, 1, None, 2.5, float("nan"), np.int64(3)],
        "nested": {"a": [{"b": None}], 1: "x", Tier("t"): Tier("v")},
        "flag": True,
        "n": 7,
    }
    assert _plain(value) == {
        "codes": [PERSON, COMPANY],
        "mixed": [PERSON, 1, None, 2.5, None, 3],
        "nested": {"a": [{"b": None}], "1": "x", "t": "v"},
        "flag": True,
        "n": 7,
    }


def _append_rows(db: str, tag: str, n: int) -> None:
    log = AuditLog(db)
    for i in range(n):
        log.append_many([{"actor": tag, "role": "platform", "action": "tiers",
                          "payload": {"i": i}}])  # fmt: skip


def test_appends_from_several_processes_keep_one_chain(db: Database) -> None:
    """Worker processes each append to the same database (serialised by the append lock file
    on SQLite, by ``LOCK TABLE`` on PostgreSQL)."""
    import multiprocessing

    AuditLog(db.url)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_rows, args=(db.url, f"p{k}", 30)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = raw_rows(db)
    assert [r["seq"] for r in rows] == list(range(1, 91))
    assert AuditLog(db.url).verify().ok
    if db.kind == "sqlite":
        assert Path(f"{db.path}.append-lock").exists()


def test_group_commit_answers_every_request_after_its_row_is_written(db: Database) -> None:
    import asyncio

    from serving.audit import GroupCommit

    log = AuditLog(db.url)
    group = GroupCommit(log)

    async def many() -> list:
        return await asyncio.gather(
            *(group.append(f"k{i % 4}", "platform", "tiers", payload={"i": i}) for i in range(300))
        )

    entries = asyncio.run(many())
    assert sorted(e.seq for e in entries) == list(range(1, 301))
    stored = {r["seq"]: r for r in raw_rows(db)}
    for i, e in enumerate(entries):  # each request got its own row, already in the file
        assert json.loads(stored[e.seq]["payload"]) == {"i": i} and stored[e.seq]["hash"] == e.hash
    assert log.verify().ok

    class Broken(AuditLog):
        def append_many(self, items):
            raise RuntimeError("disk full")

    broken = GroupCommit(Broken(db.url))

    async def refused() -> list:
        calls = (broken.append("k", "platform", "tiers", payload={}) for _ in range(5))
        return await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(x, RuntimeError) for x in asyncio.run(refused()))


def test_with_background_checkpoints_commits_leave_the_wal_to_the_checkpointer(
    tmp_path: Path,
) -> None:
    """In the service, no commit copies the WAL into the database file (that stalled every
    request behind the append lock); the group writer's own thread does, off the append path."""
    import sqlite3
    import time

    from serving.audit import GroupCommit

    path = tmp_path / "audit.db"
    log = AuditLog(path, checkpoint_in_background=True)
    with log.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    for i in range(3_000):  # well past SQLite's default auto-checkpoint of 1,000 pages
        log.append("u", "platform", "tiers", payload={"i": i, "pad": "x" * 300})
    wal = Path(f"{path}-wal")
    size = path.stat().st_size
    assert wal.stat().st_size > 1_000 * 4096  # nothing was copied out of the WAL by a commit
    log.checkpoint()
    assert path.stat().st_size > size
    assert log.verify().ok and sqlite3.connect(path).execute(
        "SELECT count(*) FROM audit_log"
    ).fetchone() == (3_000,)

    other = tmp_path / "other.db"
    background = AuditLog(other, checkpoint_in_background=True)
    before = other.stat().st_size
    GroupCommit(background, checkpoint_every=0.05)
    for i in range(300):
        background.append("u", "platform", "tiers", payload={"i": i, "pad": "x" * 300})
    deadline = time.monotonic() + 30
    while other.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other.stat().st_size > before  # the writer's checkpoint thread did it


def test_group_commit_serves_several_event_loops_in_groups_of_at_most_max_batch(
    db: Database,
) -> None:
    """Each loop hands its requests over once per turn; the writer splits what it was handed
    into groups of ``max_batch``. Every request still gets its own row, and one loop's
    requests are chained in the order it made them."""
    import asyncio

    from serving.audit import GroupCommit

    log = AuditLog(db.url)
    group = GroupCommit(log, max_batch=7)
    got: dict[int, list] = {}

    def loop_of(t: int) -> None:
        async def many() -> list:
            calls = (group.append(f"t{t}", "platform", "tiers", payload={"t": t, "i": i})
                     for i in range(150))  # fmt: skip
            return await asyncio.gather(*calls)

        got[t] = asyncio.run(many())

    threads = [threading.Thread(target=loop_of, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stored = {r["seq"]: r for r in raw_rows(db)}
    assert sorted(stored) == list(range(1, 301))
    for t, entries in got.items():
        assert [json.loads(stored[e.seq]["payload"]) for e in entries] == [
            {"t": t, "i": i} for i in range(150)
        ]
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
        assert all(stored[e.seq]["hash"] == e.hash for e in entries)
    assert log.verify().ok


def test_a_log_opened_before_a_fork_appends_from_both_processes(tmp_path: Path) -> None:
    """A log keeps its append connection and lock file per process: a forked child opens its
    own instead of using the parent's (a SQLite connection must not cross a fork)."""
    import multiprocessing

    log = AuditLog(tmp_path / "audit.db")
    log.append("parent", "platform", "tiers", payload={"i": -1})  # opens the parent's
    child = multiprocessing.get_context("fork").Process(target=_append_with, args=(log, 40))
    child.start()
    for i in range(40):
        log.append("parent", "platform", "tiers", payload={"i": i})
    child.join(120)
    assert child.exitcode == 0
    rows = log.entries(limit=1000)
    assert [e.seq for e in rows] == list(range(1, 82))
    assert [e.payload["i"] for e in rows if e.actor == "child"] == list(range(40))
    assert log.verify().ok


def _append_with(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("child", "platform", "tiers", payload={"i": i})


def test_an_appended_entry_is_the_row_as_stored_and_stays_frozen(db: Database) -> None:
    import dataclasses

    log = AuditLog(db.url)
    e = log.append("k", "platform", "tiers", payload={"codes": [COMPANY]}, model_version="3",
                   snapshot_version="2026-06-30", input_hash="ab")  # fmt: skip
    assert e == log.head() and repr(e) == repr(log.head())
    assert e.payload == {"codes": [COMPANY]} and e.anchor == (1, e.hash)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.seq = 9  # type: ignore[misc]
