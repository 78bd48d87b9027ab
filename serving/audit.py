"""Append-only, hash-chained audit trail of every answer (and refusal) the service gives.

Why a hash chain: an auditor must be able to show that the log of tier, draw and explanation
requests was not edited after the fact. Every row carries ``prev_hash`` (the previous row's
``hash``) and ``hash = SHA-256(canonical JSON of every other column)``, so changing, deleting,
inserting or reordering any row breaks the chain at that row and :meth:`AuditLog.verify` names
it. Editing a row *and re-hashing every later row* yields a self-consistent chain again; that is
caught only against a head hash published earlier (``verify(published=(seq, hash))``) — publish
:meth:`AuditLog.head` regularly (e.g. in the daily report) to anchor the chain outside the
database.

Storage: a real SQL database through SQLAlchemy Core. By default a SQLite file
(``sqlite:///path/service.db``, or simply a filesystem path); PostgreSQL by URL
(``postgresql+psycopg://user:password@host:5432/db``; psycopg 3 is installed with the project,
and libpq's ``postgresql://…`` / ``postgres://…`` spellings are taken to mean it). Both are
tested: every test of ``tests/serving/test_audit.py`` (append, chain verification, each kind of
tampering named, the triggers, concurrent appends from threads and from processes) runs on a
SQLite file and on a real PostgreSQL 16 server started by the tests (``tests/postgres.py``), and
``tests/serving/test_postgres.py`` covers what only PostgreSQL has (TRUNCATE, a least-privilege
role, workers creating the schema at once) and the whole service running on it.

Append-only is enforced three ways: this class has no update or delete method; SQLite gets
triggers that ``RAISE(ABORT)`` on ``UPDATE``/``DELETE`` of ``audit_log`` (PostgreSQL gets an
equivalent trigger function, also on ``TRUNCATE``); and whoever bypasses both — e.g. opens the
file with ``sqlite3``, or connects as the PostgreSQL superuser, drops the triggers and edits
rows — is still caught by :meth:`verify`, because the triggers protect against accidents and the
chain proves integrity. Opening an ``AuditLog`` re-creates missing triggers — on PostgreSQL only
when the connecting role owns ``audit_log``. There the recommended set-up is least privilege: an
owner role creates the schema (open an ``AuditLog``, ``KeyStore`` and ``DrawDesk`` once with its
URL), and the service's role gets ``SELECT, INSERT`` on ``audit_log`` (plus what it needs on the
other tables); it can then neither change nor delete rows nor touch the triggers, and appends
and verifies as usual (tested).

Concurrency: the service runs several worker threads (and maybe processes). An append reads the
head and inserts the next row in one write transaction — ``BEGIN IMMEDIATE`` on SQLite (the
write lock is taken before the head is read, so two writers cannot both extend the same head),
a transaction-scoped advisory lock (``pg_advisory_xact_lock``) on PostgreSQL, taken before the
head is read in a ``READ COMMITTED`` transaction (pinned on the engine). Not ``LOCK TABLE``: its
exclusive modes need ``UPDATE``/``DELETE``/``TRUNCATE`` rights, which an append-only log's
writer should not hold. ``seq`` is the primary key (64-bit), so even a writer that skips the lock
could never fork the chain: the loser gets an integrity error and retries. Schema creation on
PostgreSQL is serialised the same way, as workers starting together would otherwise collide on
``CREATE TABLE`` / ``CREATE OR REPLACE FUNCTION``.

Durability: the service answers a request only once the transaction holding its audit row has
committed (:class:`GroupCommit` resolves the request's future after ``COMMIT`` returns). SQLite
runs in WAL mode with ``synchronous=NORMAL`` (``RISK_SQLITE_SYNCHRONOUS``, default ``NORMAL``):
a committed row is in the WAL file before the answer leaves, so it survives a crash, kill or
restart of the service; the WAL is fsynced at checkpoints, not at each commit — in the service
every second, by a thread of :class:`GroupCommit` rather than by whichever commit crosses the
WAL size limit — so an operating
system crash or power loss can lose the transactions committed since the last checkpoint — the
file then ends at an earlier, intact row (SQLite's rollback is atomic and the chain still
verifies), which only a published head (see above) reveals. ``RISK_SQLITE_SYNCHRONOUS=FULL``
fsyncs every group commit instead (one fsync shared by every request in the group). On
PostgreSQL the server's own ``synchronous_commit`` setting applies.

Personal data: payloads are passed through ``mask`` before they are written. The default masks
every individual business's code (codes starting with 92, see :mod:`serving.masking`)
regardless of who asked, because the log outlives the request and is read by auditors, who see
codes masked. Pass ``mask=None`` only if the caller has already masked the payload (masking is
idempotent, so masking twice is harmless). ``input_hash`` is *not* masked: it is a SHA-256 of the
unmasked request so an auditor holding a request can prove it is the one logged; for a single
code it is a pseudonym, not an anonymisation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import enum
import hashlib
import json
import math
import operator
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: appends queue on SQLite's lock alone
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

GENESIS = "0" * 64
#: Rows read per round trip by :meth:`AuditLog.verify` (the log grows to millions of rows).
VERIFY_BATCH = 5_000
#: Append retries when another process won the race for the next ``seq`` (PostgreSQL only).
APPEND_RETRIES = 5

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    # 64-bit on PostgreSQL (its INTEGER ends at 2**31 rows); SQLite's INTEGER is 64-bit already
    # and must stay spelled INTEGER there (the rowid alias).
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("model_version", Text),
    Column("snapshot_version", Text),
    Column("input_hash", Text),
    Column("payload", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False, unique=True),
)
Index("ix_audit_log_action", audit_log.c.action)
Index("ix_audit_log_at", audit_log.c.at)

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END""",
)

# CREATE OR REPLACE TRIGGER needs PostgreSQL 14+ (the tests run 16).
_POSTGRES_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP; END
    $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
)
#: On PostgreSQL the trigger DDL runs only for a role that owns ``audit_log`` (or a superuser):
#: a least-privilege service role (SELECT and INSERT only) may not change triggers, and need not.
_POSTGRES_TRIGGERS_GUARD = (
    "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
    "WHERE c.oid = to_regclass('audit_log')"
)


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` (the same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


#: Serialises schema creation of concurrently starting workers on PostgreSQL.
_SCHEMA_LOCK = _advisory_key("serving.audit:schema")
#: Serialises appends on PostgreSQL (see the module docstring, *Concurrency*).
_APPEND_LOCK = _advisory_key("serving.audit:append")

# -- canonical JSON --------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON types, deterministically (the same value always hashes the same).

    Non-finite floats (NaN, ±inf) and pandas/numpy missing values become ``null``: JSON has no
    NaN and PostgreSQL's JSON types reject it. Sets are sorted by their canonical form; dates are
    ISO strings; numpy scalars and arrays become Python numbers and lists.
    """
    kind = type(obj)
    if kind is str or kind is int or obj is None or kind is bool:  # exact types: the hot path
        return obj
    if kind is list:  # e.g. a batch's codes: skip the per-item call when they are all strings
        for v in obj:
            if type(v) is not str:
                return [_plain(v) for v in obj]
        return obj
    if kind is dict:
        return {
            (k if type(k) is str else str(_plain(k))): (
                v if type(v) is str or v is None else _plain(v)
            )
            for k, v in obj.items()
        }
    if obj is None or isinstance(obj, bool | int | str):
        return obj.value if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return _plain(obj.value)
    if isinstance(obj, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_plain(v) for v in obj), key=canonical_json)
    if isinstance(obj, datetime | date):
        pd = sys.modules.get("pandas")
        if pd is not None and obj is pd.NaT:
            return None
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return str(obj) if obj.is_finite() else None
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _plain(obj.tolist())
        if isinstance(obj, np.generic):
            return _plain(obj.item())
    pd = sys.modules.get("pandas")
    if pd is not None and (obj is pd.NA or obj is pd.NaT):
        return None
    if hasattr(obj, "model_dump"):  # pydantic models
        return _plain(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    raise TypeError(f"cannot write {type(obj).__name__} to the audit log as JSON")


#: ``json.dumps(…, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
#: allow_nan=False)``, built once: ``dumps`` builds a new encoder on every call, which cost as
#: much as encoding a small request. Encoders keep no state between calls.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
#: How that encoder spells a ``str`` (a C function; it also escapes ``payload`` in the chain).
_QUOTE = json.encoder.encode_basestring


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: one spelling per value, so hashes are stable."""
    return _CANONICAL.encode(_plain(obj))


def input_hash(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a request: proves which input an answer was for."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


_HASHED = tuple(sorted(c.name for c in audit_log.columns if c.name != "hash"))


#: ``"name":`` of each hashed column, in the (sorted) order the canonical form writes them.
_HASHED_KEYS = tuple((name, f'"{name}":') for name in _HASHED)


def _row_hash(row: Mapping[str, Any]) -> str:
    """The chain hash: every column but ``hash`` itself; ``payload`` as its stored JSON text.

    ``canonical_json`` of the columns, spelled directly: every column is text, an integer
    (``seq``) or null, whose canonical spellings are the encoder's string quoting, ``repr``
    and ``null``, so the object is joined here rather than walked by the encoder (half the
    time; ``tests/serving/test_audit.py`` checks the two agree). Other types take
    ``canonical_json`` itself."""
    parts = []
    for name, key in _HASHED_KEYS:
        v = row[name]
        kind = type(v)
        if kind is str:
            parts.append(key + _QUOTE(v))
        elif v is None:
            parts.append(key + "null")
        elif kind is int:
            parts.append(key + int.__repr__(v))
        else:
            fields = {name: row[name] for name in _HASHED}
            return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode("utf-8")).hexdigest()


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One audit row. ``payload`` is parsed; ``payload_json`` is the exact text that was hashed."""

    seq: int
    at: str
    actor: str
    role: str
    action: str
    model_version: str | None
    snapshot_version: str | None
    input_hash: str | None
    payload_json: str = field(repr=False)
    prev_hash: str
    hash: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_json)

    @property
    def anchor(self) -> tuple[int, str]:
        """``(seq, hash)``: what to publish so a later :meth:`AuditLog.verify` can check it."""
        return self.seq, self.hash

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit API (payload parsed)."""
        d = {c.name: getattr(self, c.name) for c in audit_log.columns if c.name != "payload"}
        d["payload"] = self.payload
        return d

    @classmethod
    def _from_row(cls, row: Any) -> Entry:
        m = row._mapping
        fields = {c.name: m[c.name] for c in audit_log.columns if c.name != "payload"}
        return cls(**fields, payload_json=m["payload"])


@dataclass(frozen=True)
class ChainReport:
    """Outcome of :meth:`AuditLog.verify`.

    ``checked`` counts rows found intact before the first broken link (all rows when ``ok``);
    ``first_broken_seq`` is the seq of the first row whose link is broken — for a gap, the first
    missing seq — and ``reason`` says what is wrong in words an auditor can act on.
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""


# -- database plumbing (shared with serving.auth) --------------------------------------------


def database_url(url: str | Path) -> str:
    """A SQLAlchemy URL; a bare filesystem path means a SQLite file there.

    ``postgresql://…`` and ``postgres://…`` (libpq's spellings, as hosting providers hand them
    out) mean psycopg 3, the driver installed with the project; SQLAlchemy would otherwise look
    for psycopg2."""
    s = str(url)
    if "://" in s:
        scheme, rest = s.split("://", 1)
        if scheme in ("postgresql", "postgres"):
            return f"postgresql+psycopg://{rest}"
        return s
    return f"sqlite:///{Path(s).expanduser().resolve()}"


def sqlite_synchronous() -> str:
    """``RISK_SQLITE_SYNCHRONOUS``: ``NORMAL`` (default) or ``FULL`` (see the module docstring)."""
    value = os.environ.get("RISK_SQLITE_SYNCHRONOUS", "NORMAL").strip().upper()
    if value not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"RISK_SQLITE_SYNCHRONOUS={value!r}: NORMAL, FULL or EXTRA")
    return value


def make_engine(url: str | Path, *, wal_autocheckpoint: int | None = None) -> Engine:
    """An engine with SQLite made transactional and lock-aware.

    Python 3.11's sqlite3 driver emits BEGIN lazily (only before DML), which breaks read-then-
    write transactions; we switch that off and emit BEGIN ourselves — ``BEGIN IMMEDIATE`` when a
    connection asked for it with ``execution_options(sqlite_immediate=True)``, so appends take the
    write lock before reading the head. WAL lets readers (verify, the audit API) run while one
    writer appends; the 30 s busy timeout makes writers queue instead of failing.
    """
    url = database_url(url)
    if url.startswith("postgresql"):
        # Our transactions are written for READ COMMITTED (an append reads the head *after*
        # its lock is granted, in a fresh snapshot): pinned, whatever the server's default.
        return create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if memory:  # one shared connection, or every pooled connection sees its own empty database
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if not memory:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous()}")
            if wal_autocheckpoint is not None:
                cur.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_schema(
    engine: Engine,
    table_metadata: MetaData,
    extra_ddl: tuple[str, ...] = (),
    *,
    ddl_guard: str | None = None,
) -> None:
    """Create tables (and triggers) if missing; safe when several workers start at once.

    On PostgreSQL the transaction first takes an advisory lock, so workers starting together
    create the schema one after the other (concurrent ``CREATE TABLE`` or ``CREATE OR REPLACE
    FUNCTION`` of the same object fail there); ``ddl_guard``, a query returning one boolean, is
    asked after the tables exist and ``extra_ddl`` runs only when it answers true."""
    postgres = engine.dialect.name == "postgresql"
    for attempt in range(3):
        try:
            with engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    if postgres:
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK}
                        )
                    table_metadata.create_all(conn, checkfirst=True)
                    if ddl_guard is None or conn.execute(text(ddl_guard)).scalar():
                        for ddl in extra_ddl:
                            conn.execute(text(ddl))
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            # Another worker created the same objects between our check and our CREATE.
            if attempt == 2:
                raise


def _append_lock_path(engine: Engine) -> Path | None:
    """``<database file>.append-lock`` for a SQLite file (None otherwise, or where the lock file
    cannot be created: appends then queue on SQLite's own lock, as before)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    db = engine.url.database
    if db == ":memory:" or "mode=memory" in str(engine.url):
        return None
    path = Path(db).with_name(Path(db).name + ".append-lock")
    try:
        path.touch(exist_ok=True)
    except OSError:
        return None
    return path


_COLUMNS = tuple(c.name for c in audit_log.columns)
#: A chained row's values in ``_COLUMNS`` order (the parameters of ``_SQLITE_INSERT``).
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
_ENTRY_FIELDS = tuple(c for c in _COLUMNS if c != "payload")


def _entry_of(row: dict[str, Any]) -> Entry:
    """The :class:`Entry` of a chained row, filled in directly: the frozen dataclass's own
    ``__init__`` (one guarded ``setattr`` per field) cost as much as hashing the row."""
    entry = object.__new__(Entry)
    values = entry.__dict__
    for name in _ENTRY_FIELDS:
        values[name] = row[name]
    values["payload_json"] = row["payload"]
    return entry


_SQLITE_INSERT = (
    f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class _Default:
    """Sentinel: "use the default mask" (``None`` means "caller already masked")."""


_DEFAULT = _Default()


class AuditLog:
    """The audit trail: :meth:`append`, :meth:`head`, :meth:`entries`, :meth:`verify`.

    ``url`` is a SQLAlchemy URL or a SQLite file path. There is deliberately no method that
    changes or removes a row.
    """

    def __init__(
        self,
        url: str | Path,
        *,
        mask: Callable[[Any], Any] | _Default | None = _DEFAULT,
        checkpoint_in_background: bool = False,
    ) -> None:
        """``checkpoint_in_background`` (SQLite): commits never checkpoint the WAL themselves;
        :meth:`checkpoint` must be called (``GroupCommit`` does, from its own thread)."""
        if isinstance(mask, _Default):
            from serving.masking import mask_personal

            mask = mask_personal
        self._mask = mask
        self.url = database_url(url)
        self.engine = make_engine(
            self.url, wal_autocheckpoint=0 if checkpoint_in_background else None
        )
        #: Somebody else (``GroupCommit``) must call :meth:`checkpoint` (SQLite only).
        self.checkpoints_deferred = (
            checkpoint_in_background and self.engine.dialect.name == "sqlite"
        )
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._postgres = self.engine.dialect.name == "postgresql"
        ddl = _SQLITE_TRIGGERS if self._sqlite else _POSTGRES_TRIGGERS if self._postgres else ()
        guard = _POSTGRES_TRIGGERS_GUARD if self._postgres else None
        create_schema(self.engine, metadata, ddl, ddl_guard=guard)
        # Threads of one process queue here rather than on the database lock (cheaper, fair).
        self._lock = threading.Lock()
        self._file_lock = _append_lock_path(self.engine)
        # process id → (SQLite connection, open lock file) that appends use; see _held
        self._per_process: dict[int, tuple[Any, Any]] = {}

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database file and fsync it (SQLite, ``PASSIVE``:
        never waits for, nor blocks, a writer). A no-op on other databases."""
        if not self._sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        *,
        payload: dict[str, Any],
        model_version: str | None = None,
        snapshot_version: str | None = None,
        input_hash: str | None = None,
    ) -> Entry:
        """Write the next row of the chain and return it (with its seq and hash)."""
        return self.append_many(
            [
                {
                    "actor": actor,
                    "role": role,
                    "action": action,
                    "payload": payload,
                    "model_version": model_version,
                    "snapshot_version": snapshot_version,
                    "input_hash": input_hash,
                }
            ]
        )[0]

    def append_many(self, items: list[dict[str, Any]]) -> list[Entry]:
        """Write several rows, chained in order, in one transaction (a group commit: one
        write lock and one sync for many requests). Each item has the keywords of ``append``."""
        rows = [self._values(**item) for item in items]
        if not rows:
            return []
        with self._lock, self._append_lock():
            for attempt in range(APPEND_RETRIES):
                try:
                    return self._append_once(rows)
                except IntegrityError:
                    if attempt == APPEND_RETRIES - 1:
                        raise
        raise AssertionError("unreachable")

    def _values(
        self,
        actor: str,
        role: str,
        action: str,
        *,
        payload: dict[str, Any],
        model_version: str | None = None,
        snapshot_version: str | None = None,
        input_hash: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(payload, Mapping):
            raise TypeError("payload must be a dict")
        masked = self._mask(payload) if self._mask is not None else payload
        return {
            "actor": str(actor),
            "role": str(role.value if isinstance(role, enum.Enum) else role),
            "action": str(action),
            "model_version": None if model_version is None else str(model_version),
            "snapshot_version": None if snapshot_version is None else str(snapshot_version),
            "input_hash": input_hash,
            "payload": canonical_json(masked),
        }

    @staticmethod
    def _chain(values: list[dict[str, Any]], seq: int, prev: str) -> list[dict[str, Any]]:
        """The rows after ``(seq, prev)``: numbered, timed, linked and hashed in order."""
        rows = []
        for v in values:
            seq += 1
            row = dict(v)
            row["seq"] = seq
            row["prev_hash"] = prev
            row["at"] = datetime.now(UTC).isoformat(timespec="microseconds")
            row["hash"] = prev = _row_hash(row)
            rows.append(row)
        return rows

    def _append_once(self, values: list[dict[str, Any]]) -> list[Entry]:
        if self._sqlite:
            rows = self._append_sqlite(values)
        else:
            with self.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    if self._postgres:
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK}
                        )
                    last = conn.execute(
                        select(audit_log.c.seq, audit_log.c.hash)
                        .order_by(audit_log.c.seq.desc())
                        .limit(1)
                    ).first()
                    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
                    rows = self._chain(values, seq, prev)
                    conn.execute(audit_log.insert(), rows)
        return [_entry_of(row) for row in rows]

    def _held(self) -> tuple[Any, Any]:
        """This process's connection for appends (SQLite) and its open append-lock file.

        Why kept open: checking a connection out of the pool (and its reset on return) and
        opening the lock file cost more than a small group's own insert. Appends are
        serialised by ``self._lock``, so one of each per process is enough; per process id,
        so a forked child never shares its parent's connection or lock (a ``flock`` is held
        per open file, which a child would inherit)."""
        pid = os.getpid()
        held = self._per_process.get(pid)
        if held is None:
            conn = self.engine.raw_connection() if self._sqlite else None
            lock = open(self._file_lock, "rb") if self._file_lock and fcntl else None  # noqa: SIM115
            held = self._per_process[pid] = (conn, lock)
        return held

    @contextlib.contextmanager
    def _append_lock(self) -> Iterator[None]:
        """Hold an exclusive ``flock`` on this process's open append-lock file (a no-op where
        there is none: not SQLite, an in-memory database, or no ``fcntl``).

        Why: the service's worker processes each run a group-commit writer on one SQLite file.
        On ``BEGIN IMMEDIATE`` against a held write lock, SQLite's busy handler *sleeps* and
        retries (1, 2, 5 … up to 100 ms at a time), so a writer that just missed the lock
        could wait far longer than the other's commit took — the 99th-percentile latency of
        tier requests. A ``flock`` waiter instead wakes the moment the holder lets go."""
        lock = self._held()[1]
        if lock is None:
            yield
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _append_sqlite(self, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The same transaction on the driver's connection directly (``BEGIN IMMEDIATE``, head,
        ``executemany``, ``COMMIT``): SQLAlchemy's per-statement work was most of a small
        group commit's cost. The connection is this process's own (:meth:`_held`, set up by
        the engine: WAL, busy timeout, ``synchronous``, see :func:`make_engine`) and is in
        autocommit mode between transactions."""
        raw = self._held()[0].driver_connection
        cur = raw.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            last = cur.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = last if last else (0, GENESIS)
            rows = self._chain(values, seq, prev)
            cur.executemany(_SQLITE_INSERT, [_ROW_VALUES(r) for r in rows])
            cur.execute("COMMIT")
        except BaseException as exc:
            if raw.in_transaction:
                cur.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError):
                raise IntegrityError(_SQLITE_INSERT, None, exc) from exc
            raise
        finally:
            cur.close()
        return rows

    def head(self) -> Entry | None:
        """The latest row; publish ``head().anchor`` so truncation or re-chaining shows later."""
        with self.engine.connect() as conn:
            row = conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).first()
        return Entry._from_row(row) if row else None

    def entries(
        self,
        since: int | datetime | None = None,
        action: str | None = None,
        limit: int = 1000,
        *,
        actor: str | None = None,
    ) -> list[Entry]:
        """Rows in chain order, for the audit API and reports.

        ``since``: an ``int`` returns rows *after* that seq (page with the last seq you got); a
        ``datetime`` returns rows at or after that instant (naive datetimes are taken as UTC).
        ``action`` and ``actor`` filter exactly; ``limit`` caps the page (1..100 000).
        """
        if not 1 <= limit <= 100_000:
            raise ValueError("limit must be between 1 and 100000")
        q = select(audit_log).order_by(audit_log.c.seq).limit(limit)
        if isinstance(since, datetime):
            when = since if since.tzinfo else since.replace(tzinfo=UTC)
            q = q.where(audit_log.c.at >= when.astimezone(UTC).isoformat(timespec="microseconds"))
        elif isinstance(since, int) and not isinstance(since, bool):
            q = q.where(audit_log.c.seq > since)
        elif since is not None:
            raise TypeError("since must be a seq (int) or a datetime")
        if action is not None:
            q = q.where(audit_log.c.action == action)
        if actor is not None:
            q = q.where(audit_log.c.actor == actor)
        with self.engine.connect() as conn:
            return [Entry._from_row(r) for r in conn.execute(q)]

    def _rows(self) -> Iterator[Any]:
        """Every row in seq order, fetched in batches (keyset pagination: constant memory)."""
        after = 0
        while True:
            with self.engine.connect() as conn:
                batch = conn.execute(
                    select(audit_log)
                    .where(audit_log.c.seq > after)
                    .order_by(audit_log.c.seq)
                    .limit(VERIFY_BATCH)
                ).all()
            if not batch:
                return
            yield from batch
            after = batch[-1].seq

    def verify(self, published: tuple[int, str] | None = None) -> ChainReport:
        """Walk the chain from genesis; report the first broken link.

        A row is broken when its seq is not the previous seq + 1 (a row was deleted: the
        missing seq is reported), when its stored hash differs from the recomputed one (the row
        was changed or moved), or when its ``prev_hash`` is not the previous row's hash (a row
        was replaced with a re-hashed forgery). ``published`` — an ``Entry.anchor`` published
        earlier — additionally catches a truncated tail or a re-hashed rewrite.
        """
        expected_seq, prev, checked = 1, GENESIS, 0
        hashes_at_anchor: str | None = None
        for row in self._rows():
            m = row._mapping
            if m["seq"] != expected_seq:
                return ChainReport(
                    False,
                    checked,
                    expected_seq,
                    f"gap: row {expected_seq} is missing (the next row is {m['seq']})",
                )
            if _row_hash(m) != m["hash"]:
                return ChainReport(
                    False,
                    checked,
                    m["seq"],
                    f"hash mismatch on row {m['seq']}: the row was changed after it was written",
                )
            if m["prev_hash"] != prev:
                what = "the genesis hash" if m["seq"] == 1 else f"the hash of row {m['seq'] - 1}"
                return ChainReport(
                    False,
                    checked,
                    m["seq"],
                    f"prev_hash of row {m['seq']} does not match {what}",
                )
            if published is not None and m["seq"] == published[0]:
                hashes_at_anchor = m["hash"]
            prev, expected_seq, checked = m["hash"], expected_seq + 1, checked + 1
        if published is not None:
            seq, want = published
            if hashes_at_anchor is None:
                return ChainReport(
                    False,
                    checked,
                    expected_seq,
                    f"published row {seq} is gone: the log ends at row {expected_seq - 1}",
                )
            if hashes_at_anchor != want:
                return ChainReport(
                    False,
                    checked,
                    seq,
                    f"row {seq} no longer has the published hash: the chain was rewritten",
                )
        return ChainReport(True, checked)


class GroupCommit:
    """Appends from many concurrent requests, written by one thread in batches.

    Why: one transaction per request costs a write lock and a disk sync each (about 150
    requests/s here); a request still waits until its own row is committed — nothing is
    answered before it is in the trail — but every request that arrived meanwhile shares the
    same commit. There is no timer: while one group commits, the next one queues, so groups
    grow with the load by themselves (a fixed wait would only add latency when it is quiet).
    An event loop hands its requests over once per turn (:meth:`_hand_over`), not one by one:
    waking the writer thread cost the event loop more than anything else in an append.
    Call from an event loop: ``await group.append(...)``.
    """

    def __init__(
        self, log: AuditLog, *, max_batch: int = 1_000, checkpoint_every: float = 1.0
    ) -> None:
        import queue

        self.log = log
        self.max_batch = max_batch
        # lists of (item, loop, future), one per hand-over
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # event loop → its requests not handed over yet (each loop touches only its own)
        self._pending: dict[Any, list] = {}
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        if log.checkpoints_deferred:
            # A commit that crosses SQLite's auto-checkpoint size copies the WAL into the file
            # and fsyncs it while holding the append lock, and every request of both workers
            # waits behind it (p99 pauses of 0.1-0.4 s under load). A log opened with
            # ``checkpoint_in_background=True`` leaves that work to this thread instead.
            self._every = checkpoint_every
            threading.Thread(target=self._checkpoints, name="audit-checkpoint", daemon=True).start()

    def _checkpoints(self) -> None:
        import time

        while True:
            time.sleep(self._every)
            with contextlib.suppress(Exception):  # busy or closed: the next round catches up
                self.log.checkpoint()

    async def append(self, actor: str, role: str, action: str, **kwargs: Any) -> Entry:
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        item = {"actor": actor, "role": role, "action": action, **kwargs}
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append((item, loop, future))
        return await future

    def _hand_over(self, loop: Any) -> None:
        """Queue for the writer what ``loop`` appended since its last turn (one wake-up)."""
        self._queue.put(self._pending.pop(loop))

    def _run(self) -> None:
        import queue

        waiting: list = []  # handed over, not written yet
        while True:
            if not waiting:
                waiting = self._queue.get()
            while len(waiting) < self.max_batch:
                try:
                    waiting += self._queue.get_nowait()
                except queue.Empty:
                    break
            batch, waiting = waiting[: self.max_batch], waiting[self.max_batch :]
            try:
                entries = self.log.append_many([item for item, _, _ in batch])
            except Exception as exc:  # every waiting request learns its row was not written
                outcomes = [(future, None, exc) for _, _, future in batch]
            else:
                outcomes = [
                    (future, entry, None)
                    for (_, _, future), entry in zip(batch, entries, strict=True)
                ]
            # one wake-up per event loop and group, not one per request
            by_loop: dict[Any, list] = {}
            for (_, loop, _), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append(outcome)
            for loop, settled in by_loop.items():
                # (a closed event loop raises RuntimeError: nobody is waiting any more)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle_all, settled)


def _settle_all(outcomes: list[tuple[Any, Entry | None, BaseException | None]]) -> None:
    for future, entry, exc in outcomes:
        _settle(future, entry, exc)


def _settle(future: Any, entry: Entry | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(entry)
