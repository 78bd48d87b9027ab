"""The launcher starts the real service, finds every worker, and leaves no process behind."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import httpx
import psutil
import pytest

from features.pipeline import FeatureRun
from features.workspace import Workspace
from serving.launch import RISK_SERVICE, serve


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _running_in(folder: Path) -> list[psutil.Process]:
    """Live processes whose working directory is ``folder`` (what a server there started)."""
    found = []
    for p in psutil.process_iter():
        try:
            if Path(p.cwd()) == folder and _alive(p):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _held(port: int, count: int) -> list[socket.socket]:
    """``count`` open client connections to ``port``, each past its first request (accepted)."""
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        held.append(s)
    return held


def test_two_workers_found_counted_and_stopped(
    province: FeatureRun, champion, champion_mlruns: Path, tmp_path: Path
) -> None:
    env = {
        "RISK_WORKDIR": str(Workspace(province.workspace).root),
        "RISK_MLRUNS": str(champion_mlruns),
        "RISK_DB": f"sqlite:///{tmp_path / 'service.db'}",
        "RISK_WORKERS": "2",
    }
    with serve(RISK_SERVICE, env, tmp_path / "server.log", workers=2) as server:
        workers = server.worker_pids()
        assert len(set(workers)) == 2
        below = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        assert set(workers) <= below
        group = [psutil.Process(server.pid), *map(psutil.Process, below)]
        assert all(_alive(p) for p in group)

        held = _held(server.port, 6)
        try:
            counts = server.connections_per_worker()
            assert set(counts) == set(workers)
            assert sum(counts.values()) == 6
        finally:
            for s in held:
                s.close()
    assert not [p.pid for p in group if _alive(p)]


TINY = """
import bentoml


@bentoml.service(name="tiny", workers=2)
class Tiny:
    def __is_ready__(self) -> bool:
        return False

    @bentoml.api
    def echo(self, x: int) -> int:
        return x
"""


def test_a_server_never_ready_fails_with_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    """Its two workers run in sessions of their own: the stop must still reach them."""
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY))
    log = tmp_path / "server.log"
    with (
        pytest.raises(RuntimeError, match=r"server not /readyz in 30s:\n") as err,
        serve("tiny:Tiny", {}, log, cwd=tmp_path, timeout=30, grace=10),
    ):
        pass
    tail = str(err.value).split(":\n", 1)[1]
    assert tail and tail in log.read_text()
    assert _running_in(tmp_path) == []


def test_a_server_that_cannot_start_fails_with_the_tail_of_its_log(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match=r"server exited \(\d+\)") as err,
        serve("no_such_module:Nothing", {}, tmp_path / "server.log", cwd=tmp_path),
    ):
        pass
    assert "No module named 'no_such_module'" in str(err.value)
    assert _running_in(tmp_path) == []


def _echo_count(url: str) -> str:
    lines = httpx.get(url + "/metrics", timeout=30).text.splitlines()
    found = [
        line.rsplit(" ", 1)[1]
        for line in lines
        if line.startswith("bentoml_service_request_total")
        and 'endpoint="/echo"' in line
        and 'http_response_code="200"' in line
    ]
    return found[0] if found else "none"


def test_starting_a_second_server_keeps_the_first_ones_metrics(tmp_path: Path) -> None:
    """Each server has a BentoML home of its own: a start empties the home's metrics folder."""
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY))
    with serve("tiny:Tiny", {}, tmp_path / "a.log", cwd=tmp_path, ready=False) as first:
        assert httpx.post(first.url + "/echo", json={"x": 1}, timeout=30).json() == 1
        assert _echo_count(first.url) == "1.0"
        with serve("tiny:Tiny", {}, tmp_path / "b.log", cwd=tmp_path, ready=False):
            assert _echo_count(first.url) == "1.0"
