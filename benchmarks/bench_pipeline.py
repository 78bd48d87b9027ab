"""Benchmark the feature pipeline: generate -> validate -> population snapshot, vs plain pandas.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_pipeline.py --sizes 100000 1000000 [--province]

For each size the synthetic province is generated as Parquet, validated, and the population
snapshot is built as of 2026-06-30; then the plain-pandas reference computes the same features
for the same pairs on the same validated data, and a last step checks that the two agree. Every
step runs in its own subprocess, so each one's peak RSS is its own (``wait4`` rusage, with
psutil polling as a guard that stops a step that outgrows ``--memory-budget-gib`` rather than
let the kernel's OOM killer pick a victim on a shared machine). Results go to
``benchmarks/RESULTS.md`` as a dated section; scratch data under ``benchmarks/.out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `features` importable
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_pipeline")

AS_OF = date(2026, 6, 30)
EXTRACTED_ON = date(2026, 6, 30)
SEED = 7
PROVINCE = 2_500_000
OUT = ROOT / "benchmarks" / ".out"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
GIB = 1024**3
#: Targets from the design card, for the snapshot (features) step.
TARGETS = {1_000_000: (30.0, None), PROVINCE: (90.0, 6.0)}


# ----------------------------------------------------------------------------- child steps
def _source_rows(folder: Path) -> int:
    """Rows of the validated sources (what a feature build reads)."""
    import pyarrow.parquet as pq

    from features.contracts import SOURCES

    return sum(pq.ParquetFile(folder / f"{s}.parquet").metadata.num_rows for s in SOURCES)


def _step_generate(work: Path, enterprises: int) -> dict:
    from features.synthetic import generate

    raw = work / "raw"
    start = time.perf_counter()
    summary = generate(
        raw, enterprises=enterprises, seed=SEED, fmt="parquet", extracted_on=EXTRACTED_ON
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": int(sum(summary.rows.values()))}


def _step_validate(work: Path, enterprises: int) -> dict:
    from features.contracts import ValidationWindow
    from features.validate import validate

    start = time.perf_counter()
    report = validate(
        work / "raw", work / "validated", window=ValidationWindow(extracted_on=EXTRACTED_ON)
    )
    seconds = time.perf_counter() - start
    read = sum(s.rows_read for s in report.sources.values())
    kept = sum(s.rows_kept for s in report.sources.values())
    return {"seconds": seconds, "rows": int(read), "kept": int(kept)}


def _step_features(work: Path, enterprises: int) -> dict:
    from features.build import build_snapshot

    out = work / f"snapshot_{AS_OF.isoformat()}.parquet"
    start = time.perf_counter()
    info = build_snapshot(work / "validated", AS_OF, out)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": _source_rows(work / "validated"),
        "pairs": int(info.rows),
    }


def _step_pandas(work: Path, enterprises: int) -> dict:
    import pandas as pd

    from benchmarks.pandas_features import pandas_features

    snapshot = work / f"snapshot_{AS_OF.isoformat()}.parquet"
    # The very pairs the SQL build produced, so the two compute the same thing.
    pairs = pd.read_parquet(snapshot, columns=["credit_code", "as_of"])
    start = time.perf_counter()
    table = pandas_features(work / "validated", pairs)
    seconds = time.perf_counter() - start
    table.to_parquet(work / "pandas_features.parquet", index=False)
    return {"seconds": seconds, "rows": _source_rows(work / "validated"), "pairs": len(table)}


def _step_compare(work: Path, enterprises: int) -> dict:
    """Cells where the SQL snapshot and the pandas reference disagree (not timed)."""
    import numpy as np
    import pandas as pd

    from benchmarks.pandas_features import FEATURES

    sql = pd.read_parquet(work / f"snapshot_{AS_OF.isoformat()}.parquet")
    ref = pd.read_parquet(work / "pandas_features.parquet")
    sql = sql.sort_values("credit_code", ignore_index=True)
    ref = ref.sort_values("credit_code", ignore_index=True)
    start = time.perf_counter()
    bad: dict[str, int] = {}
    if (
        len(sql) != len(ref)
        or not (sql["credit_code"].to_numpy() == ref["credit_code"].to_numpy()).all()
    ):
        bad["credit_code"] = abs(len(sql) - len(ref)) or 1
    else:
        for name in FEATURES:
            a, b = sql[name], ref[name]
            null_diff = a.isna().to_numpy() != b.isna().to_numpy()
            both = ~(a.isna().to_numpy() | b.isna().to_numpy())
            if a.dtype.kind == "f" or b.dtype.kind == "f":
                x = a.to_numpy(dtype="float64", na_value=np.nan)[both]
                y = b.to_numpy(dtype="float64", na_value=np.nan)[both]
                val_diff = np.abs(x - y) > 1e-9 * np.maximum(1.0, np.abs(y))
            else:
                val_diff = a.astype(object).to_numpy()[both] != b.astype(object).to_numpy()[both]
            n = int(null_diff.sum() + np.asarray(val_diff).sum())
            if n:
                bad[name] = n
    return {"seconds": time.perf_counter() - start, "rows": len(sql), "mismatches": bad}


STEPS = {
    "generate": _step_generate,
    "validate": _step_validate,
    "features": _step_features,
    "pandas": _step_pandas,
    "compare": _step_compare,
}


# ----------------------------------------------------------------------------- parent
@dataclass
class StepResult:
    size: int
    step: str
    ok: bool
    seconds: float | None = None
    wall_seconds: float = 0.0
    rows: int | None = None
    peak_rss_bytes: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_step(step: str, work: Path, size: int, budget_bytes: int) -> StepResult:
    """Run one step in a fresh interpreter; time it, measure its peak RSS, guard the memory."""
    import psutil

    result_file = work / f"_{step}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_step", step, "--_work", str(work)]
    cmd += ["--_size", str(size), "--_result", str(result_file)]
    stderr_file = work / f"_{step}.stderr"
    start = time.perf_counter()
    with stderr_file.open("wb") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        proc = psutil.Process(child.pid)
        polled = 0
        killed = threading.Event()
        done = threading.Event()

        def watch() -> None:
            nonlocal polled
            while not done.is_set():
                try:
                    rss = _tree_rss(proc)
                except psutil.Error:
                    return
                polled = max(polled, rss)
                if rss > budget_bytes:
                    killed.set()
                    child.kill()
                    return
                done.wait(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        watcher.join()
    wall = time.perf_counter() - start
    peak = max(usage.ru_maxrss * 1024, polled)  # ru_maxrss is in KiB on Linux
    res = StepResult(size=size, step=step, ok=False, wall_seconds=wall, peak_rss_bytes=peak)
    if killed.is_set():
        res.error = (
            f"did not fit: stopped when its resident memory passed the "
            f"{budget_bytes / GIB:.0f} GiB budget, after {wall:.0f} s"
        )
    elif child.returncode != 0:
        lines = stderr_file.read_text(errors="replace").strip().splitlines() or ["?"]
        res.error = f"exit {child.returncode}: {lines[-1]} (full log: {stderr_file.name})"
    else:
        data = json.loads(result_file.read_text())
        res.ok = True
        res.seconds = data.pop("seconds")
        res.rows = data.pop("rows")
        res.extra = data
    log.info(
        "%s n=%s: %s, %.1f s, peak %.2f GiB",
        step,
        f"{size:,}",
        "ok" if res.ok else res.error,
        res.seconds or wall,
        peak / GIB,
    )
    return res


def machine_facts() -> dict[str, str]:
    """What the numbers were measured on (and what else was running)."""
    import duckdb
    import numpy
    import pandas
    import psutil
    import pyarrow

    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    vm = psutil.virtual_memory()
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0))),
        "ram": f"{vm.total / GIB:.1f} GiB (available at start {vm.available / GIB:.1f} GiB)",
        "load average at start": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": (
            f"duckdb {duckdb.__version__}, pandas {pandas.__version__}, "
            f"pyarrow {pyarrow.__version__}, numpy {numpy.__version__}"
        ),
        "commit": commit + " (plus uncommitted work in progress)",
    }


def _fmt_rows(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def render(
    results: list[StepResult], facts: dict[str, str], command: str, started: str, budget_gib: float
) -> str:
    """One dated Markdown section: machine, command, a table per size, the pandas ratio."""
    lines = [f"## Run of {started}", "", f"Command: `{command}`", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += [
        "",
        "Seconds are the step's own call, timed inside its subprocess (interpreter start and "
        "imports excluded; `wall` includes them). Peak RSS is that subprocess's maximum "
        "resident set. Rows: source rows written (generate), read (validate) or the validated "
        "source rows a feature build reads (features, pandas). A step whose resident memory "
        f"passes the budget ({budget_gib:.0f} GiB) is stopped, so that the kernel's OOM killer "
        "does not pick a victim among other users of the machine.",
        "",
    ]
    for size in sorted({r.size for r in results}):
        rows = [r for r in results if r.size == size]
        lines += [
            f"### {size:,} enterprises",
            "",
            "| step | seconds | wall s | rows | rows/s | peak RSS GiB | notes |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        by_step = {r.step: r for r in rows}
        for r in rows:
            if r.ok and r.seconds is not None:
                rate = f"{r.rows / r.seconds:,.0f}" if r.rows and r.step != "compare" else "—"
                notes = _notes(r, size)
                lines.append(
                    f"| {r.step} | {r.seconds:.1f} | {r.wall_seconds:.1f} | "
                    f"{_fmt_rows(r.rows)} | {rate} | {r.peak_rss_bytes / GIB:.2f} | {notes} |"
                )
            else:
                lines.append(
                    f"| {r.step} | failed | {r.wall_seconds:.1f} | — | — | "
                    f"{r.peak_rss_bytes / GIB:.2f} | {r.error} |"
                )
        sql, pd_ = by_step.get("features"), by_step.get("pandas")
        if sql and pd_ and sql.ok and pd_.ok and sql.seconds and pd_.seconds:
            lines += [
                "",
                f"pandas / DuckDB: **{pd_.seconds / sql.seconds:.1f}×** the time, "
                f"**{pd_.peak_rss_bytes / max(sql.peak_rss_bytes, 1):.1f}×** the peak memory "
                f"({pd_.extra.get('pairs', 0):,} pairs).",
            ]
        lines.append("")
    return "\n".join(lines)


def _notes(r: StepResult, size: int) -> str:
    notes = []
    if r.step == "validate" and "kept" in r.extra:
        notes.append(f"{r.extra['kept']:,} kept")
    if r.step in ("features", "pandas") and "pairs" in r.extra:
        notes.append(f"{r.extra['pairs']:,} enterprises as of {AS_OF}")
    if r.step == "features" and size in TARGETS:
        secs, gib = TARGETS[size]
        met = r.seconds is not None and r.seconds < secs
        notes.append(f"target < {secs:.0f} s: **{'met' if met else 'missed'}**")
        if gib is not None:
            met = r.peak_rss_bytes < gib * GIB
            notes.append(f"target < {gib:.0f} GiB: **{'met' if met else 'missed'}**")
    if r.step == "compare":
        bad = r.extra.get("mismatches", {})
        notes.append(
            "all cells agree (ints exact, floats within 1e-9 relative, NULLs alike)"
            if not bad
            else "mismatched cells: " + ", ".join(f"{k} {v:,}" for k, v in bad.items())
        )
    return "; ".join(notes)


HEADER = """# Benchmarks

Written by `benchmarks/bench_pipeline.py`; each run adds (or replaces) a dated section below.
Targets: the features of 1 M enterprises in < 30 s; a province (2.5 M enterprises, ~100 M
source rows) in < 90 s and < 6 GiB peak. The pandas column is `benchmarks/pandas_features.py`,
the plain-pandas reading of the same spec, run on the same validated data and as-of date.

Numbers are noisy: the benchmark machine is shared with other engineers' test runs.
"""


def write_results(section: str, key: str, path: Path = RESULTS) -> None:
    """Replace the section with the same key, or append it; keep older runs."""
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    block = f"{begin}\n{section}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--province", action="store_true", help="add 2.5 M enterprises")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas reference")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse raw/validated data from an earlier run"
    )
    parser.add_argument("--memory-budget-gib", type=float, default=14.0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--_step", help=argparse.SUPPRESS)
    parser.add_argument("--_work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._step:  # inside a step's subprocess
        data = STEPS[args._step](args._work, args._size)
        args._result.write_text(json.dumps(data))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # Two runs sharing a scratch folder would delete each other's data mid-step.
    args.out.mkdir(parents=True, exist_ok=True)
    lock = (args.out / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another benchmark is running in %s; wait for it or pass --out", args.out)
        return 1
    sizes = list(args.sizes) + ([PROVINCE] if args.province else [])
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    command = "benchmarks/bench_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    facts = machine_facts()
    budget = int(args.memory_budget_gib * GIB)
    results: list[StepResult] = []
    key = f"{started[:10]} sizes={'+'.join(str(s) for s in sizes)}"
    for size in sizes:
        work = args.out / f"n{size}"
        steps = ["features"] if args.reuse and (work / "validated").exists() else None
        if steps is None:
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            steps = ["generate", "validate", "features"]
        if not args.no_pandas:
            steps += ["pandas", "compare"]
        for step in steps:
            res = run_step(step, work, size, budget)
            results.append(res)
            if not res.ok and step in ("generate", "validate", "features"):
                break
            if not res.ok and step == "pandas":
                break
        write_results(
            render(results, facts, command, started, args.memory_budget_gib), key, args.results
        )
    log.info("results in %s", args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
