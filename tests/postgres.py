"""A real PostgreSQL server for the tests: started once per session on loopback, stopped after.

The server binaries come from the ``pgserver`` wheel (a ``dev`` dependency: PostgreSQL 16 built
for manylinux, under ``pgserver/pginstall/bin``). We drive ``initdb`` and ``pg_ctl`` ourselves
rather than through ``pgserver.get_server``, because that one listens on a Unix socket only and,
as root, creates a system user and opens the permissions of every folder above the data and
the virtualenv. Here the server listens on ``127.0.0.1`` at a free port (no Unix socket), its
data folder is a fresh ``mkdtemp`` folder that is removed when the session ends, and
``fsync=off`` (the tests do not crash the machine). When ``pgserver`` is not installed, the
binaries of a PostgreSQL on ``PATH`` (or Debian's ``/usr/lib/postgresql/<major>/bin``) are used
instead.

PostgreSQL refuses to run as root. Run as root (as CI is here), ``initdb`` and ``pg_ctl`` are
started as the unprivileged ``nobody`` account (``subprocess``'s ``user=``/``group=``: no user is
created, no permission outside the temporary folder is changed). ``nobody`` must be able to run
the binaries: pip installs them world-readable, but when a folder above them is private (a
clone under ``/root``), the installation (27 MB) is copied into the temporary folder first.
Run as anyone else, everything runs as that user.

If no server can be started (no binaries, ``initdb`` or start-up failed), the fixtures skip
with the reason and the server's log: a skip, never a silent pass.

The server trusts every connection (``--auth=trust``): it listens on loopback only, for the
length of a test session. Databases use the C locale and UTF-8.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from serving.launch import free_port

SUPERUSER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "postgres")


def _binaries() -> Path | None:
    """Folder holding initdb/pg_ctl/postgres: pgserver's bundle first, then the system's."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("pgserver")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in _TOOLS):
            return folder
    return None


def _open_to_others(folder: Path) -> bool:
    """Whether another account can reach and run the binaries in ``folder`` (every folder above
    it searchable by others, the tools readable and executable by others)."""
    for parent in [folder, *folder.parents]:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    wanted = stat.S_IROTH | stat.S_IXOTH
    return all((folder / tool).stat().st_mode & wanted == wanted for tool in _TOOLS)


def _private_copy(binaries: Path, root: Path) -> Path:
    """Copy the installation under ``root``, keeping its layout: PostgreSQL finds ``lib`` and
    ``share`` relative to its binaries, and pgserver's binaries find their bundled libraries
    at ``$ORIGIN/../../../pgserver.libs`` (their RPATH)."""
    install = binaries.parent  # …/pgserver/pginstall
    target = root / "site" / install.parent.name / install.name
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, target / part, symlinks=True)
    bundled = install.parent.parent / "pgserver.libs"
    if bundled.is_dir():
        shutil.copytree(bundled, root / "site" / bundled.name, symlinks=True)
    return target / "bin"


@dataclass
class PostgresServer:
    """One running server: ``url(database)`` gives a SQLAlchemy URL for psycopg 3."""

    bin: Path
    root: Path
    port: int
    run_as: tuple[int, int] | None  # (uid, gid) when we are root; None: as ourselves

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """The same server as a libpq URL (for ``psycopg.connect``: direct SQL, as psql would)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        return subprocess.run(
            [str(self.bin / tool), *args],
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def start(self) -> None:
        """``initdb`` then ``pg_ctl start`` (waits until the server accepts connections)."""
        init = self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c max_connections=200 -c TimeZone=UTC"
        )
        started = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"pg_ctl start failed ({started.returncode}): {started.stderr[-1000:]}\n"
                f"server log:\n{log[-2000:]}"
            )

    def stop(self) -> None:
        """Stop (fast shutdown: open sessions are ended) and remove the data folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server() -> PostgresServer:
    """A started server, or :class:`RuntimeError` saying why none could be started."""
    binaries = _binaries()
    if binaries is None:
        raise RuntimeError(
            "no PostgreSQL binaries: install the dev extra (pgserver) or put pg_ctl on PATH"
        )
    run_as = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            account = pwd.getpwnam("nobody")
        except KeyError:
            raise RuntimeError("running as root and there is no 'nobody' account") from None
        run_as = (account.pw_uid, account.pw_gid)
    last: Exception | None = None
    for _ in range(3):  # another process may take the free port before the server binds it
        root = Path(tempfile.mkdtemp(prefix="risk-postgres-"))
        if run_as is not None:
            os.chown(root, *run_as)
        tools = binaries
        if run_as is not None and not _open_to_others(binaries):  # e.g. a clone under /root
            tools = _private_copy(binaries, root)
        server = PostgresServer(tools, root, free_port(), run_as)
        try:
            server.start()
            return server
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            last = exc
            server.stop()
    raise RuntimeError(f"PostgreSQL did not start from {binaries}: {last}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (skips, with the reason, when none can be started)."""
    try:
        server = start_server()
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://…``) of the session server's ``postgres`` database."""
    return postgres_server.url()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty database for one test (dropped after it)."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


# -- one database of either kind, for tests parametrised over both ---------------------------


@dataclass
class Database:
    """A test database of either kind, with direct access as its owner would have it: SQL run
    by ``sqlite3`` on the file, or by ``psycopg`` as the PostgreSQL superuser — outside this
    project's code, its engines and its checks."""

    kind: str  # "sqlite" | "postgresql"
    url: str  # what the project's classes are given
    path: Path | None = None  # the SQLite file
    conninfo: str | None = None  # libpq URL of the PostgreSQL database

    @property
    def driver_error(self) -> type[Exception]:
        """What the driver raises when the database refuses a statement."""
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.DatabaseError
        import psycopg

        return psycopg.Error

    def execute(self, *statements: str) -> None:
        """Run ``statements`` in one transaction, directly (no triggers are dropped here)."""
        if self.kind == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.path)
            try:
                for s in statements:
                    con.execute(s)
                con.commit()
            finally:
                con.close()
        else:
            import psycopg

            with psycopg.connect(self.conninfo) as con:
                for s in statements:
                    con.execute(s)

    def query(self, sql: str) -> list[dict]:
        """Rows of ``sql`` as dicts, read directly."""
        if self.kind == "sqlite":
            import sqlite3

            con = sqlite3.connect(self.path)
            con.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in con.execute(sql)]
            finally:
                con.close()
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.conninfo, row_factory=dict_row) as con:
            return list(con.execute(sql))


def sqlite_database(folder: Path) -> Database:
    path = folder / "service.db"
    return Database("sqlite", f"sqlite:///{path}", path=path)


def postgres_database(server: PostgresServer) -> Iterator[Database]:
    """A fresh database on ``server`` for one test, dropped after it."""
    name = server.create_database()
    try:
        yield Database("postgresql", server.url(name), conninfo=server.conninfo(name))
    finally:
        server.drop_database(name)


#: ``params`` for a fixture parametrised over both kinds (``postgresql`` is marked ``postgres``).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database for one test: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path)
    else:
        yield from postgres_database(request.getfixturevalue("postgres_server"))
