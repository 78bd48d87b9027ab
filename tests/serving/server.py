"""The real service on loopback for a test, through :mod:`serving.launch` (no mocked HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.launch import RISK_SERVICE, serve


@contextmanager
def bentoml_server(
    env: dict[str, str], log: Path, *, ready: bool = True, timeout: float = 180
) -> Iterator[str]:
    """``bentoml serve serving.service:RiskService`` on a free loopback port; yields its URL
    once it answers /healthz (and /readyz, when ``ready``); stops all its processes after."""
    with serve(RISK_SERVICE, env, log, ready=ready, timeout=timeout) as server:
        yield server.url
