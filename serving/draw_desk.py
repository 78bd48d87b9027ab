"""The service side of the draws: build a draw's inputs from what the service holds, keep draws
and inspection results in the SQL database, publish, verify, and measure each draw's lift.

Why a separate module from ``serving.draws``: the engine is pure and re-implementable from its
spec; this desk is where our data meets it — the pool is the loaded snapshot's enterprises with
their tiers under the scheme the policy names, last inspections and previous teams come from the
validated inspections, the yearly cap counts this database's earlier draws, the roster is the
workspace's ``roster/inspectors.csv``. Files of each draw go to ``<workdir>/draws/<draw_id>/``
(private until published: the record holds the seed); the database row carries the commitment.

Individual businesses (codes starting 92) take part under their public references
(:mod:`serving.public_refs`, SPEC.md §10): the desk replaces their codes in the pool, the
inspectors' conflicts, ``previous_teams`` and ``filters.credit_codes`` before the inputs are
built, so the draw, its record and every published file name no natural person. The mapping
(reference → code) stays private: the drawn targets' in the ``draw_public_refs`` table (what
the service resolves — answers, results sent by reference), the complete one in
``draws/<draw_id>/public_refs.csv`` beside the private record (mode 0600, never under
``public/``), for the authority's look-ups. Why not all of it in the database: a province of
2.5 M enterprises has ~1.5 M individual businesses, so every draw would add ~1.5 M rows (measured
~10 µs a row on SQLite) that nothing but a rare objection reads. ``drawn_targets`` and
``inspection_results`` keep real codes, and :meth:`DrawDesk.fetch` resolves the targets back for
the callers who inspect them.
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
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy import inspect as sql_inspect
from sqlalchemy.engine import Engine, make_url

from features.credit_code import is_individual_business, is_valid
from serving.audit import create_schema, database_url, make_engine
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
from serving.masking import INDIVIDUAL_CODE_IN_TEXT
from serving.public_refs import (
    MAPPING,
    individual_codes_in,
    is_public_ref,
    pseudonymise,
    read_mapping,
    reference_key,
    write_mapping,
)
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
#: Private: which individual business each drawn public reference stands for.
public_refs = Table(
    "draw_public_refs",
    metadata,
    Column("draw_id", String(100), primary_key=True),
    Column("public_ref", String(18), primary_key=True),
    Column("credit_code", String(18), nullable=False),
    Index("ix_draw_public_refs_code", "draw_id", "credit_code", unique=True),
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
        """Commit to and run a draw on public references (SPEC.md §10); store it, not yet public,
        with its references' mapping."""
        folder = self.workdir / "draws" / draw_id
        for name, value in (("draw_id", draw_id), ("department", department)):
            if INDIVIDUAL_CODE_IN_TEXT.search(value):
                raise BadRequest(name, "must not contain an individual business's credit code")
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
        key = reference_key(self.workdir)  # outside the try: a bad key is the server's fault
        try:
            referenced = pseudonymise(
                key,
                draw_id,
                self.pool(state, scheme, draw_date, department),
                roster,
                self.previous_teams(),
                parsed.filters.credit_codes,
            )
            if referenced.credit_codes is not None:
                filters = parsed.filters.model_copy(
                    update={"credit_codes": referenced.credit_codes}
                )
                parsed = parsed.model_copy(update={"filters": filters})
            inputs = DrawInputs(
                draw_id=draw_id,
                draw_date=draw_date,
                department=department,
                seed_hash=seed_hash(seed),
                pool=referenced.pool,
                inspectors=referenced.inspectors,
                policy=parsed,
                previous_teams=referenced.previous_teams,
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
        write_mapping(folder / MAPPING, referenced.refs)
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
            resolved = referenced.refs.resolve(record.targets["credit_code"])
            rows = [
                {
                    "draw_id": draw_id,
                    "credit_code": resolved.get(c, c),
                    "arm": a,
                    "draw_date": draw_date,
                }
                for c, a in zip(record.targets["credit_code"], record.targets["arm"], strict=True)
            ]
            if rows:
                conn.execute(drawn.insert(), rows)
            mapping = [
                {"draw_id": draw_id, "public_ref": r, "credit_code": resolved[r]}
                for r in record.targets["credit_code"]
                if r in resolved
            ]
            if mapping:
                conn.execute(public_refs.insert(), mapping)
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

    def fetch(self, draw_id: str, resolve: bool = True) -> dict:
        """Targets, teams and commitment; the seed only once the draw is published.

        ``resolve`` (whom to inspect): each target's ``credit_code`` and the keys of ``teams``
        are the enterprises' real codes, and each target's ``public_ref`` is how it appears in
        the public record (its code itself unless it is an individual business); ``parameters``
        and ``policy`` stay as committed (references). ``resolve=False``: the record exactly as
        published — no individual business's code anywhere.
        """
        row = self._row(draw_id)
        doc = self.record(draw_id).document()
        if row.published_at is None:
            doc.pop("seed")
        if resolve:
            code = self._codes_of_targets(draw_id)
            for t in doc["targets"]:
                t["public_ref"] = t["credit_code"]
                t["credit_code"] = code.get(t["public_ref"], t["public_ref"])
            doc["teams"] = {code.get(ref, ref): team for ref, team in doc["teams"].items()}
        doc["published_at"] = row.published_at
        doc["status"] = "published" if row.published_at else "committed"
        return doc

    def _codes_of_targets(self, draw_id: str) -> dict[str, str]:
        """Reference → code of the individual businesses drawn in ``draw_id``."""
        with self.engine.connect() as conn:
            pairs = conn.execute(
                select(public_refs.c.public_ref, public_refs.c.credit_code)
                .join(
                    drawn,
                    (drawn.c.draw_id == public_refs.c.draw_id)
                    & (drawn.c.credit_code == public_refs.c.credit_code),
                )
                .where(public_refs.c.draw_id == draw_id)
            ).all()
        return dict(pairs)

    def mapping(self, draw_id: str) -> dict[str, str]:
        """Reference → code of every individual business the draw's inputs name (private)."""
        self._row(draw_id)
        return read_mapping(self.workdir / "draws" / draw_id / MAPPING)

    def resolve(self, draw_id: str, public_ref: str) -> str | None:
        """The code a drawn public reference of ``draw_id`` stands for (None when it is not
        one of its targets')."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(public_refs.c.credit_code).where(
                    (public_refs.c.draw_id == draw_id) & (public_refs.c.public_ref == public_ref)
                )
            ).scalar()

    def publish(self, draw_id: str) -> dict:
        """Reveal the seed: the record becomes public (JSON and CSV under ``public/``).

        Answers with the record exactly as published (public references, no individual
        business's code). Refuses a draw whose inputs name individual businesses by their codes
        (one made before public references): publishing it would disclose them."""
        row = self._row(draw_id)
        record = self.record(draw_id)
        if individual_codes_in(record.inputs):
            raise BadRequest(
                "draw_id",
                f"{draw_id!r} was drawn on individual businesses' codes, not their public "
                "references; publishing it would disclose them — draw it again",
                409,
            )
        public = self.workdir / "draws" / draw_id / "public"
        record.write(public)
        if row.published_at is None:
            with self.engine.begin() as conn:
                conn.execute(
                    draws.update().where(draws.c.draw_id == draw_id).values(published_at=_now())
                )
        doc = self.fetch(draw_id, resolve=False)
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
        """Store drawn inspections' outcomes; all or nothing. Returns each draw's lift.

        ``credit_code`` may be the enterprise's code or its public reference in that draw."""
        items = [dict(r) for r in items]
        for i, r in enumerate(items):
            if is_public_ref(r["credit_code"]):
                code = self.resolve(r["draw_id"], r["credit_code"])
                if code is None:
                    raise BadRequest(
                        f"results[{i}]",
                        f"{r['credit_code']} is no public reference of {r['draw_id']!r}",
                        422,
                    )
                r["credit_code"] = code
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


# -- look-ups by the authority (read-only) ---------------------------------------------------


@dataclass(frozen=True)
class RefLookup:
    """How one enterprise appears in one draw. Private when it is an individual business: it
    links a public reference to a person."""

    draw_id: str
    public_ref: str  # the code itself for an enterprise that is not an individual business
    credit_code: str
    arm: str | None  # the arm that drew it; None when the draw names it but did not draw it


def _existing_engine(db: str) -> Engine | None:
    """An engine on ``db``, or None for a SQLite file that does not exist (connecting would
    create it: a look-up must leave no trace)."""
    url = make_url(database_url(db))
    path = url.database
    file = url.get_backend_name() == "sqlite" and path and path != ":memory:"
    if file and not Path(path).is_file():
        return None
    return make_engine(url.render_as_string(hide_password=False))


def look_up_ref(db: str, workdir: Path, draw_id: str, unit: str) -> RefLookup | None:
    """How ``unit`` — a public reference, or a credit code — appears in ``draw_id``.

    A reference or an individual business's code is answered from ``draw_public_refs`` when it
    was drawn, else from the complete private ``public_refs.csv`` (everybody the draw's inputs
    name: pool, conflicts, previous teams; read whole, so only when the table has no answer);
    None when the draw names it nowhere (or has no such file: draws made before it existed
    resolve their targets only). Any other code is its own public form. Unlike
    :class:`DrawDesk`, which creates its tables, this only reads: an unknown draw
    (``BadRequest``, 404) leaves the database as it was.
    """
    by_ref = is_public_ref(unit)
    if not by_ref and not is_valid(unit):
        raise ValueError(f"{unit!r} is neither a public reference nor a valid credit code")
    engine = _existing_engine(db)
    if engine is None:
        raise BadRequest("draw_id", f"no draw {draw_id!r}", 404)
    column = public_refs.c.public_ref if by_ref else public_refs.c.credit_code
    try:
        with engine.connect() as conn:
            known = (
                sql_inspect(conn).has_table(draws.name)
                and conn.execute(select(draws.c.draw_id).where(draws.c.draw_id == draw_id)).first()
            )
            if not known:
                raise BadRequest("draw_id", f"no draw {draw_id!r}", 404)
            arm_of = select(drawn.c.arm).where(drawn.c.draw_id == draw_id)
            if not by_ref and not is_individual_business(unit):
                arm = conn.execute(arm_of.where(drawn.c.credit_code == unit)).scalar()
                return RefLookup(draw_id, unit, unit, arm)
            row = conn.execute(
                select(public_refs.c.public_ref, public_refs.c.credit_code).where(
                    (public_refs.c.draw_id == draw_id) & (column == unit)
                )
            ).first()
            if row is not None:
                arm = conn.execute(arm_of.where(drawn.c.credit_code == row.credit_code)).scalar()
                return RefLookup(draw_id, row.public_ref, row.credit_code, arm)
    finally:
        engine.dispose()
    mapping = read_mapping(workdir / "draws" / draw_id / MAPPING)
    if by_ref:
        code = mapping.get(unit)
        return RefLookup(draw_id, unit, code, None) if code else None
    ref = next((r for r, c in mapping.items() if c == unit), None)
    return RefLookup(draw_id, ref, unit, None) if ref else None
