"""Start a real ``bentoml serve`` on loopback, wait until it answers, and stop all of it after.

One home for what the tests and the load benchmark both need from a live server: a free port,
start-up errors that show the tail of the server log, its worker processes, and a stop that
leaves nothing behind. Why the stop is more than one signal: circus starts each worker in its
own session (``setsid``), so killing the server's process group alone can orphan the workers;
every descendant seen while the server ran is stopped too. Why each server gets a BentoML home
of its own (unless ``env`` names one): every ``bentoml serve`` empties
``$BENTOML_HOME/prometheus_multiproc_dir`` when it starts, so with a shared home starting one
server wipes the request metrics of every other server running.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RISK_SERVICE = "serving.service:RiskService"
WORKER_SCRIPT = "_bentoml_impl.worker.service"
_INITIALIZED = re.compile(r"Service \S+ initialized")
_TAIL = 3000  # characters of the server log quoted in an error


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a tiny race with other starters)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``bentoml serve``: its URL, port, pid (the circus arbiter) and log file."""

    url: str
    port: int
    log: Path
    proc: subprocess.Popen = field(repr=False)
    _seen: dict[int, psutil.Process] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-_TAIL:]

    def check_alive(self) -> None:
        """Raise with the log's tail if the server has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.tail()}")

    def descendants(self) -> list[psutil.Process]:
        """Every live process below the server; remembered, so a stop finds orphans too."""
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        for p in found:
            self._seen.setdefault(p.pid, p)
        return found

    def worker_pids(self) -> list[int]:
        """Pids of the BentoML workers (not the arbiter, not helper processes), sorted.

        Found as descendants by command line: the listening socket is shared, so the socket
        table names one owner only, and each worker has its own process group."""
        pids = []
        for p in self.descendants():
            with contextlib.suppress(psutil.Error):
                if WORKER_SCRIPT in " ".join(p.cmdline()):
                    pids.append(p.pid)
        return sorted(pids)

    def connections_per_worker(self) -> dict[int, int]:
        """ESTABLISHED TCP connections on the server port held by each worker, now."""
        counts = {}
        for pid in self.worker_pids():
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            counts[pid] = sum(
                1
                for c in conns
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == self.port
            )
        return counts

    def wait_for_workers(self, count: int, timeout: float = 600) -> None:
        """Until ``count`` workers have created their service: ``/readyz`` answers as soon as
        *one* is up, and on a busy machine another can still be loading (not accepting)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            logged = len(_INITIALIZED.findall(self.log.read_text(errors="replace")))
            if logged >= count and len(self.worker_pids()) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers not initialized in {timeout}s:\n{self.tail()}")
            time.sleep(0.5)

    def wait_until_answering(self, probe: str, timeout: float) -> None:
        """Until ``probe`` answers 200 (polled every half second)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            self.descendants()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + probe, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not {probe} in {timeout}s:\n{self.tail()}")
            time.sleep(0.5)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM the server's group (circus then stops its workers); after ``grace`` seconds
        SIGKILL what is left: the group and every descendant ever seen."""
        proc = self.proc
        self.descendants()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = max(0.0, deadline - time.monotonic())
        _, alive = psutil.wait_procs(list(self._seen.values()), timeout=left)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=10)


@contextlib.contextmanager
def serve(
    target: str,
    env: Mapping[str, str],
    log: Path,
    *,
    cwd: Path = ROOT,
    ready: bool = True,
    workers: int = 0,
    timeout: float = 180,
    worker_timeout: float = 600,
    grace: float = 30,
) -> Iterator[Server]:
    """``bentoml serve target`` from ``cwd`` on a free 127.0.0.1 port, with ``env`` over this
    process's environment and a fresh BENTOML_HOME, output to ``log``. Yields once /healthz
    (or /readyz, when ``ready``) answers 200 and, when ``workers`` > 0, that many workers have
    initialised; raises RuntimeError with the log's tail if the server dies or is late. Stops
    everything it started on exit, also on failure."""
    port = free_port()
    home = tempfile.TemporaryDirectory(prefix="bentoml-home-")
    env = {"BENTOML_HOME": home.name, **env, "BENTOML_DO_NOT_TRACK": "true"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target,
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", port, log, proc)
    try:
        server.wait_until_answering("/readyz" if ready else "/healthz", timeout)
        if workers:
            server.wait_for_workers(workers, worker_timeout)
        yield server
    finally:
        server.stop(grace)
        home.cleanup()
