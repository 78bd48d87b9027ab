"""The service side of the draws: build a draw's inputs from what the service holds, keep draws
and inspection results in the SQL database, publish, verify, and measure each draw's lift.

Why a separate module from ``serving.draws``: the engine is pure and re-implementable from its
spec; this desk is where our data meets it — the pool is the loaded snapshot's enterprises with
their tiers under the scheme the policy names, last inspections and previous teams come from the
validated inspections, the yearly cap counts this database's earlier draws, the roster is the
workspace's ``roster/inspectors.csv``. Files of each draw go to ``<workdir>/draws/<draw_id>/``
(private until published: the record holds the seed); the database row carries the commitment.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from serving.audit import create_schema, make_engine
from serving.draws import (
    DrawInputs,
    DrawPolicy,
    DrawRefused,
    PublishedRecord,
    seed_hash,
    verify,
)
from serving.draws import draw as run_draw
from serving.lift import draw_lift
from serving.runtime import BadRequest, Loaded

metadata = MetaData()
draws = Table(
    "draws",
    metadata,
    Column("draw_id", String(100), primary_key=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("draw_date", Date, nullable=False),
    Column("department", String(100), nullable=False),
    Column("commitment", String(64), nullable=False),
    Column("seed_hash", String(64), nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("snapshot_version", String(40), nullable=False),
    Column("targets", Integer, nullable=False),
    Column("published_at", String(40)),
)
drawn = Table(
    "drawn_targets",
    metadata,
    Column("draw_id", String(100), primary_key=True),
    Column("credit_code", String(18), primary_key=True),
    Column("arm", String(10), nullable=False),
    Column("draw_date", Date, nullable=False),
)
results = Table(
    "inspection_results",
    metadata,
    Column("draw_id", String(100), primary_key=True),
    Column("credit_code", String(18), primary_key=True),
    Column("inspected_on", Date, nullable=False),
    Column("problem_found", Boolean, nullable=False),
    Column("inspector_ids", Text, nullable=False),
    Column("ingested_at", String(40), nullable=False),
    Column("ingested_by", String(100), nullable=False),
)

ROSTER = Path("roster") / "inspectors.csv"


def synthetic_roster(workdir: Path) -> Path:
    """The synthetic province's inspectors as a roster (ids, department, region; never their
    hidden strictness), written to ``<workdir>/roster/inspectors.csv`` for the draws."""
    truth = pd.read_csv(workdir / "raw" / "_truth" / "inspectors.csv", dtype=str)
    roster = pd.DataFrame(
        {
            "inspector_id": truth["inspector_id"],
            "department": truth["department"],
            "region": truth["department"].str.split("-").str[0],
            "conflicts": "",
            "load": 0,
        }
    )
    path = workdir / ROSTER
    path.parent.mkdir(parents=True, exist_ok=True)
    roster.to_csv(path, index=False, lineterminator="\n")
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class DrawDesk:
    db: str
    workdir: Path

    def __post_init__(self) -> None:
        self.engine = make_engine(self.db)
        create_schema(self.engine, metadata)

    # -- inputs ------------------------------------------------------------------------------

    def roster(self) -> pd.DataFrame:
        path = self.workdir / ROSTER
        if not path.is_file():
            raise BadRequest(
                "inspectors", f"no inspector roster at {path}; supply `inspectors` or add it", 409
            )
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def pool(self, state: Loaded, scheme: str, draw_date: date, department: str) -> pd.DataFrame:
        """Enterprises of the snapshot with their tier, last inspection and draws this year."""
        frame = state.frame
        inspections = self.workdir / "validated" / "inspections.parquet"
        last = duckdb.sql(
            f"SELECT credit_code, max(inspected_on) AS last_inspected_on "
            f"FROM read_parquet('{inspections}') WHERE inspected_on < DATE '{draw_date}' "
            f"GROUP BY credit_code"
        ).df()
        with self.engine.connect() as conn:
            counts = conn.execute(
                select(drawn.c.credit_code, drawn.c.draw_date).where(
                    drawn.c.draw_date >= date(draw_date.year, 1, 1)
                )
            ).all()
        this_year = pd.Series([c for c, _ in counts], dtype="str").value_counts()
        pool = pd.DataFrame(
            {
                "credit_code": frame["credit_code"].astype(str).to_numpy(),
                "tier": state.tiers[scheme],
                "region": frame["region"].astype(str).to_numpy(),
                "industry": frame["industry"].fillna("unknown").astype(str).to_numpy(),
            }
        )
        pool["department"] = pool["region"] + "-" + department
        pool = pool.merge(last, on="credit_code", how="left")
        pool["last_inspected_on"] = pd.to_datetime(pool["last_inspected_on"])
        pool["draws_this_year"] = (
            pool["credit_code"].map(this_year).fillna(0).astype("int64").to_numpy()
        )
        return pool

    def previous_teams(self) -> dict[str, tuple[str, ...]]:
        """The team of each enterprise's latest inspection (a draw must not repeat it)."""
        inspections = self.workdir / "validated" / "inspections.parquet"
        latest = duckdb.sql(
            f"SELECT credit_code, arg_max(inspector_ids, inspected_on) AS team "
            f"FROM read_parquet('{inspections}') WHERE inspector_ids IS NOT NULL "
            f"GROUP BY credit_code"
        ).df()
        return {
            c: tuple(sorted(t.split(";")))
            for c, t in zip(latest.credit_code, latest.team, strict=True)
        }

    # -- draws -------------------------------------------------------------------------------

    def create(
        self,
        state: Loaded,
        *,
        draw_id: str,
        draw_date: date,
        department: str,
        policy: dict,
        scheme: str,
        actor: str,
        inspectors: list[dict] | None = None,
        seed: str | None = None,
    ) -> PublishedRecord:
        """Commit to and run a draw; store it (not yet public)."""
        folder = self.workdir / "draws" / draw_id
        with self.engine.connect() as conn:
            if conn.execute(select(draws.c.draw_id).where(draws.c.draw_id == draw_id)).first():
                raise BadRequest("draw_id", f"{draw_id!r} already exists", 409)
        try:
            parsed = DrawPolicy.model_validate(policy)
        except ValueError as exc:
            raise BadRequest("policy", str(exc).replace("\n", " ")) from None
        expected = tuple(state.model.policy.tier_names(scheme))
        if tuple(parsed.tiers) != expected:
            raise BadRequest(
                "policy.allocation.tiers",
                f"{list(parsed.tiers)} are not the tiers of scheme {scheme}: {list(expected)}",
            )
        seed = seed or secrets.token_hex(32)
        roster = pd.DataFrame(inspectors) if inspectors is not None else self.roster()
        try:
            inputs = DrawInputs(
                draw_id=draw_id,
                draw_date=draw_date,
                department=department,
                seed_hash=seed_hash(seed),
                pool=self.pool(state, scheme, draw_date, department),
                inspectors=roster,
                policy=parsed,
                previous_teams=self.previous_teams(),
                model_version=state.model_version,
                data_fingerprint=str(state.model.meta.get("data_fingerprint") or "unknown"),
            )
            result = run_draw(inputs, seed)
        except DrawRefused as exc:
            raise BadRequest("policy", f"draw refused: {exc}", 422) from None
        except ValueError as exc:
            raise BadRequest("draw", str(exc).replace("\n", " ")) from None
        record = PublishedRecord.from_result(result)
        record.write(folder)
        with self.engine.begin() as conn:
            conn.execute(
                draws.insert().values(
                    draw_id=draw_id,
                    created_at=_now(),
                    created_by=actor,
                    draw_date=draw_date,
                    department=department,
                    commitment=record.commitment,
                    seed_hash=inputs.seed_hash,
                    model_version=state.model_version,
                    snapshot_version=state.snapshot_version,
                    targets=len(record.targets),
                )
            )
            rows = [
                {"draw_id": draw_id, "credit_code": c, "arm": a, "draw_date": draw_date}
                for c, a in zip(record.targets["credit_code"], record.targets["arm"], strict=True)
            ]
            if rows:
                conn.execute(drawn.insert(), rows)
        return record

    def _row(self, draw_id: str):
        with self.engine.connect() as conn:
            row = conn.execute(select(draws).where(draws.c.draw_id == draw_id)).first()
        if row is None:
            raise BadRequest("draw_id", f"no draw {draw_id!r}", 404)
        return row

    def record(self, draw_id: str) -> PublishedRecord:
        self._row(draw_id)
        return PublishedRecord.read(self.workdir / "draws" / draw_id)

    def fetch(self, draw_id: str) -> dict:
        """Targets, teams and commitment; the seed only once the draw is published."""
        row = self._row(draw_id)
        doc = self.record(draw_id).document()
        if row.published_at is None:
            doc.pop("seed")
        doc["published_at"] = row.published_at
        doc["status"] = "published" if row.published_at else "committed"
        return doc

    def publish(self, draw_id: str) -> dict:
        """Reveal the seed: the record becomes public (JSON and CSV under ``public/``)."""
        row = self._row(draw_id)
        record = self.record(draw_id)
        public = self.workdir / "draws" / draw_id / "public"
        record.write(public)
        if row.published_at is None:
            with self.engine.begin() as conn:
                conn.execute(
                    draws.update().where(draws.c.draw_id == draw_id).values(published_at=_now())
                )
        doc = self.fetch(draw_id)
        doc["files"] = sorted(p.name for p in public.iterdir())
        return doc

    def verify(self, draw_id: str) -> dict:
        """Re-run the draw from its stored inputs and seed, exactly as anyone can from the
        published files (``riskctl draw verify FOLDER``)."""
        report = verify(self.record(draw_id))
        return {
            "draw_id": draw_id,
            "ok": report.ok,
            "first_mismatch": report.first_mismatch,
            "mismatches": list(report.mismatches),
            "commitment": report.commitment,
            "targets_checked": report.targets_checked,
            "teams_checked": report.teams_checked,
        }

    # -- results -----------------------------------------------------------------------------

    def ingest(self, items: list[dict], actor: str) -> dict:
        """Store drawn inspections' outcomes; all or nothing. Returns each draw's lift."""
        keys = {(r["draw_id"], r["credit_code"]) for r in items}
        if len(keys) != len(items):
            raise BadRequest("results", "the same draw_id and credit_code appear twice")
        with self.engine.begin() as conn:
            for i, r in enumerate(items):
                hit = conn.execute(
                    select(drawn.c.draw_date).where(
                        (drawn.c.draw_id == r["draw_id"])
                        & (drawn.c.credit_code == r["credit_code"])
                    )
                ).first()
                if hit is None:
                    raise BadRequest(
                        f"results[{i}]",
                        f"{r['credit_code']} was not drawn in {r['draw_id']!r}",
                        422,
                    )
                if r["inspected_on"] < hit.draw_date:
                    raise BadRequest(
                        f"results[{i}].inspected_on",
                        f"{r['inspected_on']} is before the draw date {hit.draw_date}",
                    )
                seen = conn.execute(
                    select(results.c.draw_id).where(
                        (results.c.draw_id == r["draw_id"])
                        & (results.c.credit_code == r["credit_code"])
                    )
                ).first()
                if seen is not None:
                    raise BadRequest(f"results[{i}]", "this result was already ingested", 409)
            conn.execute(
                results.insert(),
                [
                    {
                        "draw_id": r["draw_id"],
                        "credit_code": r["credit_code"],
                        "inspected_on": r["inspected_on"],
                        "problem_found": bool(r["problem_found"]),
                        "inspector_ids": json.dumps(list(r.get("inspector_ids") or [])),
                        "ingested_at": _now(),
                        "ingested_by": actor,
                    }
                    for r in items
                ],
            )
        return {
            "ingested": len(items),
            "lift": {d: self.lift(d) for d in sorted({k[0] for k in keys})},
        }

    def lift(self, draw_id: str) -> dict:
        self._row(draw_id)
        with self.engine.connect() as conn:
            targets = pd.DataFrame(
                conn.execute(
                    select(drawn.c.credit_code, drawn.c.arm).where(drawn.c.draw_id == draw_id)
                ).all(),
                columns=["credit_code", "arm"],
            )
            found = pd.DataFrame(
                conn.execute(
                    select(results.c.credit_code, results.c.problem_found).where(
                        results.c.draw_id == draw_id
                    )
                ).all(),
                columns=["credit_code", "problem_found"],
            )
        return draw_lift(targets, found)
