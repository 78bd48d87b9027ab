"""Load test of the BentoML service (``serving.service:RiskService``) against a stock BentoML
service, both served and measured in the same run with ``wrk`` on loopback.

Scenarios (``wrk -t2 --latency``, each after a ``--warmup`` run that is not counted; the Lua
script cycles over ``--bodies`` different request bodies of random snapshot codes, pre-formatted
per wrk thread):

1. ``tier-1``: one enterprise per request, ``{"codes": [code]}``, ``--connections`` clients;
2. ``tier-1+reasons``: one enterprise with ``"reasons": 3, "lang": "en"`` (ours only);
3. ``batch-1000``: 1,000 enterprises per request, ``--batch-connections`` clients.

Ours runs once per ``--workers`` value (``RISK_WORKERS``), with an API key of the ``platform``
role (so every request is authenticated, validated, masked and written to the audit trail in a
fresh SQLite database). The stock service is what one writes with BentoML defaults: one class,
one worker, one ``@bentoml.api async def tiers(self, codes: list[str]) -> dict`` answering from
a dict built from the same snapshot at start-up (no auth, no audit, no reasons); it gets the
same bodies and the same Lua script for scenarios 1 and 3.

Every request is valid, so any non-2xx answer (wrk's "Non-2xx or 3xx responses", which counts
status ≥ 400) or socket error is a failure; the run exits 1 if there is any. The 1-minute load
average just before each measured run is reported, since other work on the machine skews it. Each server is
checked once with httpx (status and item count) before it is loaded; ours only once every
worker has created its service (``--settle`` seconds later, for the start-up reasons). wrk runs on the same
machine as the servers and shares their cores. Halfway through each measured run the
ESTABLISHED connections on the server port are counted per worker process (psutil), shown as
e.g. ``27/23``: how wrk's clients are spread over the workers. Servers are started and stopped
by ``serving.launch`` (the same launcher the tests use).

Without ``--workdir``/``--mlruns`` a workspace and champion are built once under
``benchmarks/.out/service/`` (synthetic, 20,000 enterprises, seed 7) and reused afterwards.
``--profile`` also records ``py-spy`` (raw, ``--nonblocking``, no line numbers) on every worker of
ours, one py-spy per worker pid at the same time, during an extra, uncounted tier-1 run *after*
the measured scenarios (so the sampling never touches the figures), and prints where each
worker's samples fall.

    .venv/bin/python benchmarks/bench_service.py --duration 15 --workers 2,1 --profile

Writes the Markdown table to stdout and to ``benchmarks/.out/bench_service.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.launch import RISK_SERVICE, Server, serve  # noqa: E402

OUT = ROOT / "benchmarks" / ".out"

LUA = r"""
-- wrk script: cycle over pre-formatted POST requests, one JSON body per line of args[1].
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local reqs, n, i = {}, 0, 0
function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  if args[3] ~= nil and args[3] ~= "" then
    headers["Authorization"] = "Bearer " .. args[3]
  end
  for line in io.lines(args[1]) do
    n = n + 1
    reqs[n] = wrk.format("POST", args[2], headers, line)
  end
  math.randomseed(1000 + (tid or 0))
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return reqs[i]
end
"""

STOCK = '''
"""A stock BentoML 1.4 service: defaults, one worker, a dict lookup from the snapshot."""
import os

import bentoml
import pandas as pd


@bentoml.service(name="stock-tiers")
class StockTiers:
    def __init__(self) -> None:
        frame = pd.read_parquet(os.environ["STOCK_SNAPSHOT"], columns=["credit_code", "region"])
        self.lookup = dict(zip(frame["credit_code"], frame["region"].astype(str)))

    @bentoml.api
    async def tiers(self, codes: list[str]) -> dict:
        return {"tiers": {c: self.lookup.get(c) for c in codes}}
'''

TARGETS = {
    "tier-1": "≥ 2,500 req/s, p99 ≤ 60 ms",
    "tier-1+reasons": "≥ 1,000 req/s",
    "batch-1000": "p99 ≤ 100 ms",
}


# -- workspace -----------------------------------------------------------------------------


def ensure_workspace(workdir: Path | None, mlruns: Path | None) -> tuple[Path, Path]:
    """The given workspace, or one built once under benchmarks/.out/service/ (API, not the CLI:
    ``riskctl demo`` may end by serving in the foreground)."""
    if workdir is not None and mlruns is not None:
        return workdir.resolve(), mlruns.resolve()
    base = OUT / "service"
    work, runs = base / "work", base / "mlruns"
    if (
        not sorted((work / "snapshots").glob("features_*.parquet"))
        or not (runs / "mlflow.db").is_file()
    ):
        from features.pipeline import run_synthetic
        from features.workspace import Workspace
        from training.config import load_config
        from training.train import train

        print(f"building workspace and champion under {base} …", flush=True)
        run = run_synthetic(Workspace(work), enterprises=20_000, seed=7)
        train(Workspace(work).validated, load_config(), run.snapshot.path, mlruns=runs)
    return work.resolve(), runs.resolve()


def snapshot_of(workdir: Path) -> Path:
    return sorted((workdir / "snapshots").glob("features_*.parquet"))[-1]


# -- servers -------------------------------------------------------------------------------


@contextmanager
def stock_server(snapshot: Path, tmp: Path, log: Path) -> Iterator[Server]:
    """The stock service from a temp dir, on a free loopback port; stopped after."""
    src = tmp / "stock"
    src.mkdir(exist_ok=True)
    (src / "stock_service.py").write_text(textwrap.dedent(STOCK))
    env = {"STOCK_SNAPSHOT": str(snapshot)}
    with serve("stock_service:StockTiers", env, log, cwd=src, workers=1) as server:
        yield server


# -- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out, re.M)
        if m is None:
            if default is None:
                raise ValueError(f"no {pattern!r} in wrk output:\n{out}")
            return default
        return m.group(1)

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(grab(r"^Requests/sec:\s+([\d.]+)")),
        "requests": int(grab(r"^\s+(\d+) requests in")),
        "p50": _ms(grab(r"^\s+50%\s+(\S+)")),
        "p90": _ms(grab(r"^\s+90%\s+(\S+)")),
        "p99": _ms(grab(r"^\s+99%\s+(\S+)")),
        "non2xx": int(grab(r"Non-2xx or 3xx responses:\s+(\d+)", "0")),
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def run_wrk(url, path, bodies, token, script, *, connections, duration, midway=None) -> dict:
    """One wrk run; ``midway`` (if given) is called halfway through it, its result kept."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
           "-s", str(script), url, "--", str(bodies), path, token or ""]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    if midway is not None:
        time.sleep(duration / 2)
        seen = midway()
    out, err = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    return {**parse_wrk(out), "midway": seen}


def spread(server: Server) -> Callable[[], str]:
    """Connections each worker holds (by worker pid), e.g. ``27/23``."""

    def sample() -> str:
        counts = server.connections_per_worker()
        return "/".join(str(counts[pid]) for pid in sorted(counts))

    return sample


# -- bodies --------------------------------------------------------------------------------


def write_bodies(tmp: Path, codes: list[str], n: int, seed: int) -> dict[str, Path]:
    rng = random.Random(seed)
    kinds = {
        "tier-1": lambda: {"codes": [rng.choice(codes)]},
        "tier-1+reasons": lambda: {"codes": [rng.choice(codes)], "reasons": 3, "lang": "en"},
        "batch-1000": lambda: {"codes": rng.sample(codes, 1000)},
    }
    files = {}
    for name, make in kinds.items():
        path = tmp / f"bodies_{name}.jsonl"
        with path.open("w") as f:
            for _ in range(n):
                f.write(json.dumps(make(), separators=(",", ":")) + "\n")
        files[name] = path
    return files


def check_once(url: str, path: str, body_file: Path, token: str | None, stock: bool) -> None:
    """One request of the kind wrk will send: 200 and one answer per code."""
    body = json.loads(body_file.open().readline())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(url + path, json=body, headers=headers, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:500]}")
    data = r.json()
    items = data["tiers"] if stock else data["results"]
    n = len(items) if isinstance(items, dict | list) else -1
    if n != len(body["codes"]):
        raise RuntimeError(f"{path}: {n} answers for {len(body['codes'])} codes: {r.text[:300]}")


# -- profile -------------------------------------------------------------------------------


def summarise_profile(raw: Path, top: int = 12) -> str:
    """Self and inclusive shares of py-spy raw (folded) samples, by function."""
    own, incl, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"py-spy samples (non-idle): {total}", "", "| self % | function |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in own.most_common(top)]
    lines += ["", "| inclusive % | function |", "|---:|---|"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in incl.most_common(top * 3)]
    return "\n".join(lines)


def profile_workers(server: Server, token: str, bodies: Path, script: Path, args) -> list[str]:
    """py-spy on every worker at once during an extra, uncounted tier-1 run; one note each."""
    pids = server.worker_pids()
    spies = []
    for i, pid in enumerate(pids, 1):
        raw = OUT / f"bench_service_profile_worker{i}.txt"
        raw.unlink(missing_ok=True)
        err = raw.with_suffix(".err")
        with err.open("w") as e:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                 "-d", str(args.profile_seconds), "-f", "raw", "--nolineno",
                 "--nonblocking", "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=e,
            )  # fmt: skip
        spies.append((pid, raw, err, spy))
    run_wrk(server.url, "/v1/tiers", bodies, token, script,
            connections=args.connections, duration=args.profile_seconds + 2)  # fmt: skip
    notes = []
    for pid, raw, err, spy in spies:
        code = spy.wait(timeout=60)
        if code or not raw.is_file() or not raw.read_text().strip():
            notes.append(f"py-spy on worker {pid} recorded nothing (exit {code}): "
                         f"{err.read_text().strip()[-500:]}")  # fmt: skip
            continue
        err.unlink()
        notes.append(f"profile of worker {pid} during tier-1 ({raw.name}):\n\n"
                     + summarise_profile(raw))  # fmt: skip
    return notes


# -- main ----------------------------------------------------------------------------------


def measure(label, server, token, path, scenarios, bodies, script, args, rows) -> None:
    url = server.url
    for name in scenarios:
        conns = args.batch_connections if name == "batch-1000" else args.connections
        check_once(url, path, bodies[name], token, stock=label.startswith("stock"))
        kw = {"connections": conns}
        run_wrk(url, path, bodies[name], token, script, duration=args.warmup, **kw)
        load = os.getloadavg()[0]
        r = run_wrk(url, path, bodies[name], token, script, duration=args.duration,
                    midway=spread(server), **kw)  # fmt: skip
        r.update(service=label, scenario=name, connections=conns, load=load)
        rows.append(r)
        print(
            f"{label:<16} {name:<15} c={conns:<3} {r['rps']:>9.1f} req/s  p50 {r['p50']:.1f} ms"
            f"  p99 {r['p99']:.1f} ms  non-2xx {r['non2xx']}  socket errors {r['socket_errors']}"
            f"  per worker {r['midway']}",
            flush=True,
        )


def table(rows: list[dict]) -> str:
    out = [
        "| service | scenario | clients | per worker | req/s | p50 ms | p90 ms | p99 ms | requests | non-2xx | socket errors | load 1 min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['service']} | {r['scenario']} | {r['connections']} | {r['midway']} "
            f"| {r['rps']:,.0f} "
            f"| {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['requests']:,} "
            f"| {r['non2xx']} | {r['socket_errors']} | {r['load']:.1f} |"
        )
    return "\n".join(out)


def verdicts(rows: list[dict]) -> str:
    out = ["| ours | scenario | target | measured | met |", "|---|---|---|---|---|"]
    for r in rows:
        if not r["service"].startswith("ours"):
            continue
        name = r["scenario"]
        if name == "tier-1":
            ok = r["rps"] >= 2500 and r["p99"] <= 60
            got = f"{r['rps']:,.0f} req/s, p99 {r['p99']:.1f} ms"
        elif name == "tier-1+reasons":
            ok, got = r["rps"] >= 1000, f"{r['rps']:,.0f} req/s"
        else:
            ok, got = r["p99"] <= 100, f"p99 {r['p99']:.1f} ms"
        out.append(
            f"| {r['service']} | {name} | {TARGETS[name]} | {got} | {'yes' if ok else 'no'} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="workspace (snapshots/, validated/)")
    ap.add_argument("--mlruns", type=Path, help="MLflow home with a champion")
    ap.add_argument("--duration", type=int, default=15, help="seconds measured per scenario")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of uncounted load first")
    ap.add_argument("--connections", type=int, default=50, help="clients, one-enterprise runs")
    ap.add_argument("--batch-connections", type=int, default=4, help="clients, 1,000-code runs")
    ap.add_argument("--bodies", type=int, default=500, help="different bodies per scenario")
    ap.add_argument("--workers", default="2,1", help="RISK_WORKERS values for ours, in order")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock service")
    ap.add_argument("--profile", action="store_true", help="py-spy one worker of ours (tier-1)")
    ap.add_argument("--profile-seconds", type=int, default=8)
    ap.add_argument("--settle", type=float, default=10, help="seconds after workers are up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT / "bench_service.md")
    args = ap.parse_args()

    workdir, mlruns = ensure_workspace(args.workdir, args.mlruns)
    snapshot = snapshot_of(workdir)
    codes = pd.read_parquet(snapshot, columns=["credit_code"])["credit_code"].tolist()
    rows: list[dict] = []
    notes: list[str] = []
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_service_") as t:
        tmp = Path(t)
        script = tmp / "bodies.lua"
        script.write_text(LUA)
        bodies = write_bodies(tmp, codes, args.bodies, args.seed)

        for workers in [int(w) for w in args.workers.split(",") if w]:
            from serving.auth import KeyStore

            db = f"sqlite:///{tmp}/service_w{workers}.db"
            token = KeyStore(db).create_key("platform", "bench")
            env = {"RISK_WORKDIR": str(workdir), "RISK_MLRUNS": str(mlruns), "RISK_DB": db,
                   "RISK_WORKERS": str(workers)}  # fmt: skip
            log = OUT / f"bench_service_ours_w{workers}.log"
            with serve(RISK_SERVICE, env, log, workers=workers) as server:
                time.sleep(args.settle)  # start-up work (reasons of the snapshot) to finish
                label = f"ours ({workers} worker{'s' if workers > 1 else ''})"
                scen = ["tier-1", "tier-1+reasons", "batch-1000"]
                measure(label, server, token, "/v1/tiers", scen, bodies, script, args, rows)
                if args.profile and workers == max(int(w) for w in args.workers.split(",")):
                    notes += profile_workers(server, token, bodies["tier-1"], script, args)

        if not args.no_stock:
            with stock_server(snapshot, tmp, OUT / "bench_service_stock.log") as server:
                scen = ["tier-1", "batch-1000"]
                measure(
                    "stock (1 worker)", server, None, "/tiers", scen, bodies, script, args, rows
                )

    failures = sum(r["non2xx"] + r["socket_errors"] for r in rows)
    head = (
        f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"wrk -t2 on the same machine · {args.duration} s per scenario after {args.warmup} s "
        f"warm-up · {args.bodies} bodies per scenario · snapshot {snapshot.name} "
        f"({len(codes):,} enterprises)"
    )
    md = "\n\n".join(
        [
            head,
            table(rows),
            verdicts(rows),
            f"Failed requests (non-2xx + socket errors): {failures}",
            *notes,
        ]
    )
    print("\n" + md)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
