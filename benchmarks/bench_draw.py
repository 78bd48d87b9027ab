"""Draw engine speed: a province-sized pool (2.5 M enterprises) and 5,000 inspectors.

Times, in one process, medians over ``--repeats``:

* ``create`` — validate the pool and inspector DataFrames into ``DrawInputs`` (sort by credit
  code, GB 32100 check characters), then ``draw`` (keys, allocation, both arms, teams, and the
  commitment over the canonical pool CSV, hashed in a background thread);
* ``verify`` — ``verify(record)``: fresh snapshot hashes and commitment, full re-run, compare.

Wall and process CPU seconds are both printed (the machine is shared: CPU time is the steadier
figure), with the load average when each run starts. ``--files`` (default) also times writing
the published folder once and re-checking it from the files ``--repeats`` times
(``verify(PublishedRecord.read(folder))``, what the verify endpoint does), and reading its
``pool.csv`` by the strict canonical reader against Arrow's CSV reader + validation.

The pool is given once in random row order and once already sorted by credit code (the order a
stored snapshot has), since sorting 2.5 M codes is a large share of ``create``.

``--individual-share`` (default 0.6; individual businesses are about two thirds of China's
market entities) turns that share of the codes into individual businesses' (prefix 92), and
``references`` times the desk's step before the engine: replacing each of them by its keyed
public reference (``serving.public_refs.pseudonymise``, SPEC §10). The engine then draws on the
referenced pool, as the service does; ``references + create`` is the two together, per run.

    .venv/bin/python benchmarks/bench_draw.py --enterprises 2500000 --inspectors 5000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from features.credit_code import set_check_characters
from serving.draws import DrawInputs, PublishedRecord, draw, seed_hash, verify
from serving.draws.pool import PoolTable
from serving.draws.pool_file import read_canonical, read_general
from serving.draws.synthetic import inspectors_frame, pool_frame
from serving.public_refs import pseudonymise

POLICIES = {
    "quota": {
        "allocation": {
            "kind": "quota",
            "tiers": ["A", "B", "C", "D"],
            "quota": 25_000,
            "high_risk_tiers": ["D"],
            "min_high_risk_share": 0.3,
        },
        "floor": 0.005,
        "stratify_by": "region",
        "control_fraction": 0.1,
        "exclusions": {"inspected_within_days": 30, "yearly_cap": 3},
        "teams": {"team_size": 2, "load_cap": 25},
    },
    "ratios": {
        "allocation": {
            "kind": "ratios",
            "tiers": ["A", "B", "C", "D"],
            "ratios": {"A": 0.005, "B": 0.01, "C": 0.02, "D": 0.05},
        },
        "floor": 0.005,
        "stratify_by": "industry",
        "control_fraction": 0.1,
        "exclusions": {"inspected_within_days": 30, "yearly_cap": 3},
        "teams": {"team_size": 2, "load_cap": 40},
    },
}


def as_individual_businesses(codes: np.ndarray, share: float, seed: int) -> np.ndarray:
    """``share`` of the codes turned into individual businesses' (92, check recomputed)."""
    matrix = np.frombuffer("".join(codes).encode(), dtype=np.uint8).reshape(-1, 18).copy()
    matrix[np.random.default_rng(seed).random(len(matrix)) < share, 1] = ord("2")
    return set_check_characters(matrix).view("S18").ravel().astype(str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=2_500_000)
    parser.add_argument("--inspectors", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policy", choices=sorted(POLICIES), default="quota")
    parser.add_argument(
        "--files",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time writing the published folder and verifying from it",
    )
    parser.add_argument("--individual-share", type=float, default=0.6)
    args = parser.parse_args()

    t0 = time.perf_counter()
    pool = pool_frame(args.enterprises, seed=7, regions=10, industries=20)
    pool["credit_code"] = as_individual_businesses(
        pool["credit_code"].to_numpy(), args.individual_share, seed=7
    )
    staff = inspectors_frame(args.inspectors, pool, seed=7, conflict_rate=0.2)
    sorted_pool = pool.sort_values("credit_code", ignore_index=True)
    print(
        f"generated {len(pool):,} enterprises, {len(staff):,} inspectors in {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"cpu {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, load {os.getloadavg()}"
    )

    policy = json.loads(json.dumps(POLICIES[args.policy]))
    if policy["allocation"]["kind"] == "quota":  # 1 % of the pool: 25,000 for a province
        policy["allocation"]["quota"] = max(1, args.enterprises // 100)
    orders = {"random order": pool, "sorted by code": sorted_pool}
    timings: dict[str, dict[str, list[float]]] = {
        label: {
            k: [] for k in ("references", "create", "create_cpu", "verify", "verify_cpu", "load")
        }
        for label in orders
    }
    pseudonymise(b"bench key " * 4, "warm-up", pool.head(1000), staff, {})  # compile / load
    for r in range(args.repeats):  # the two orders alternate, so both see the same noise
        for label, frame in orders.items():
            seed = f"bench-{r}"
            t = timings[label]
            t["load"].append(os.getloadavg()[0])
            w = time.perf_counter()
            referenced = pseudonymise(b"bench key " * 4, f"bench-{r}", frame, staff, {})
            t["references"].append(time.perf_counter() - w)
            w, c = time.perf_counter(), time.process_time()
            inputs = DrawInputs(
                draw_id=f"bench-{r}",
                draw_date=date(2026, 11, 23),
                department="market",
                seed_hash=seed_hash(seed),
                pool=referenced.pool,
                inspectors=referenced.inspectors,
                policy=policy,
                model_version="bench",
                data_fingerprint="synthetic",
            )
            result = draw(inputs, seed)
            t["create"].append(time.perf_counter() - w)
            t["create_cpu"].append(time.process_time() - c)
            record = PublishedRecord.from_result(result)
            w, c = time.perf_counter(), time.process_time()
            report = verify(record)
            t["verify"].append(time.perf_counter() - w)
            t["verify_cpu"].append(time.process_time() - c)
            assert report.ok, report.mismatches
    for label, t in timings.items():
        desk = [a + b for a, b in zip(t["references"], t["create"], strict=True)]
        print(
            f"[{label}] policy {args.policy}: references median "
            f"{statistics.median(t['references']):.2f} s (runs "
            f"{[round(x, 2) for x in t['references']]}); references + create median "
            f"{statistics.median(desk):.2f} s (runs {[round(x, 2) for x in desk]}); "
            f"create median {statistics.median(t['create']):.2f} s "
            f"(runs {[round(x, 2) for x in t['create']]}, CPU median "
            f"{statistics.median(t['create_cpu']):.2f} s); verify median "
            f"{statistics.median(t['verify']):.2f} s (runs {[round(x, 2) for x in t['verify']]}, "
            f"CPU median {statistics.median(t['verify_cpu']):.2f} s); load avg at starts "
            f"{[round(x, 1) for x in t['load']]}"
        )
    c = result.receipt["counts"]
    print(
        f"draw: eligible {c['eligible']:,}, excluded {c['excluded']}, risk {c['risk']:,}, "
        f"control {c['control']:,}, both {c['both']:,}, targets {c['targets']:,}, "
        f"teams {len(result.teams):,}, cells {len(result.receipt['cells'])}"
    )
    if args.files:
        time_files(record, args.repeats)


def time_files(record: PublishedRecord, repeats: int) -> None:
    """Write the published folder once, then re-check it from the files ``repeats`` times (what
    the verify endpoint and ``riskctl draw verify`` do), and read its pool.csv with the strict
    canonical reader and with Arrow's CSV reader + validation (the general path), alternately."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        folder = record.write(Path(tmp) / "draw")
        written = time.perf_counter() - t
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        data = (folder / "pool.csv").read_bytes()
        runs: dict[str, list[float]] = {
            k: [] for k in ("read", "verify", "total", "strict", "arrow")
        }
        for _ in range(repeats):
            t = time.perf_counter()
            published = PublishedRecord.read(folder)
            runs["read"].append(time.perf_counter() - t)
            report = verify(published)
            runs["total"].append(time.perf_counter() - t)
            runs["verify"].append(runs["total"][-1] - runs["read"][-1])
            assert report.ok, report.mismatches
            t = time.perf_counter()
            assert read_canonical(data) is not None
            runs["strict"].append(time.perf_counter() - t)
            t = time.perf_counter()
            PoolTable.from_frame(read_general(data))
            runs["arrow"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"published files: write {written:.2f} s ({size:.0f} MiB); re-check from the folder "
        f"(read + verify) median {med['total']:.2f} s (runs {[round(x, 2) for x in runs['total']]}; "
        f"read median {med['read']:.2f} s, verify median {med['verify']:.2f} s)"
    )
    print(
        f"pool.csv read + validated: strict canonical reader median {med['strict']:.2f} s, "
        f"Arrow CSV + validation median {med['arrow']:.2f} s "
        f"({med['arrow'] / med['strict']:.1f}x; runs {[round(x, 2) for x in runs['strict']]} vs "
        f"{[round(x, 2) for x in runs['arrow']]})"
    )


if __name__ == "__main__":
    main()
