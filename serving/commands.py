"""``riskctl serve``, ``riskctl keys …``, ``riskctl audit …`` and ``riskctl draw …``: run and
administer the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from features.cli import console, fail
from serving.settings import Settings, settings
from training.cli import MlrunsOption

WorkdirOption = Annotated[
    Path | None, typer.Option(help="Working folder (default: $RISK_WORKDIR or .data)")
]
DbOption = Annotated[
    str | None,
    typer.Option(help="Database URL (default: $RISK_DB or sqlite:///<workdir>/service.db)"),
]

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)


def environment(cfg: Settings) -> dict[str, str]:
    """The environment the service process reads its settings from."""
    env = {"RISK_WORKDIR": str(cfg.workdir), "RISK_DB": cfg.db, "RISK_MODEL": cfg.model}
    if cfg.mlruns is not None:
        env["RISK_MLRUNS"] = str(Path(cfg.mlruns).resolve())
    return env


def _audit_key(cfg: Settings, action: str, payload: dict) -> int:
    """Key management and look-ups of personal data are themselves audited (actor: the
    operator's OS account on this machine). Returns the entry's seq."""
    import getpass

    from serving.audit import AuditLog

    entry = AuditLog(cfg.db).append(f"cli:{getpass.getuser()}", "admin", action, payload=payload)
    return entry.seq


def how_to_call(url: str, key: str | None, code: str = "<18-character credit code>") -> None:
    """Print where the service listens and a ``curl`` line to copy (never wrapped)."""
    shown = key or "<key from `riskctl keys create --role platform --label NAME`>"
    console.print(f"service on {url} — OpenAPI: {url}/docs.json, metrics: {url}/metrics")
    body = json.dumps({"codes": [code], "reasons": 3, "lang": "en"})
    print(
        f"curl -s {url}/v1/tiers -H 'Authorization: Bearer {shown}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def serve_foreground(cfg: Settings, host: str, port: int) -> int:
    """``bentoml serve`` with our settings, in the foreground until interrupted."""
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.service:RiskService",
           "--host", host, "--port", str(port)]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **environment(cfg), "BENTOML_DO_NOT_TRACK": "true"}
    try:
        return subprocess.call(cmd, cwd=root, env=env)
    except KeyboardInterrupt:
        return 0


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.add_typer(draw_app, name="draw")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
        workdir: WorkdirOption = None,
        mlruns: MlrunsOption = None,
        db: DbOption = None,
    ) -> None:
        """Run the BentoML service (champion + latest snapshot) until interrupted."""
        cfg = settings(workdir, mlruns, db)
        how_to_call(f"http://{host}:{port}", None)
        raise typer.Exit(serve_foreground(cfg, host, port))


@keys_app.command("create")
def create_key(
    role: Annotated[str, typer.Option(help="platform, auditor or admin")],
    label: Annotated[str, typer.Option(help="Who or what holds the key")],
    workdir: WorkdirOption = None,
    db: DbOption = None,
) -> None:
    """Create an API key; the key is printed once and stored only as a hash."""
    from serving.auth import KeyStore, Role, parse_key

    if role not in {r.value for r in Role}:
        raise fail(f"--role: {role!r} is not one of {', '.join(r.value for r in Role)}")
    cfg = settings(workdir, None, db)
    try:
        key = KeyStore(cfg.db).create_key(role, label)
    except ValueError as exc:
        raise fail(f"--label: {exc}") from None
    _audit_key(cfg, "key_created", {"key_id": parse_key(key)[0], "role": role, "label": label})
    console.print(f"{role} key (shown once; keep it secret):")
    print(key)


@keys_app.command("list")
def list_keys(workdir: WorkdirOption = None, db: DbOption = None) -> None:
    """Every key with its role, label and dates (never the secret)."""
    from serving.auth import KeyStore

    table = Table(title="API keys")
    for col in ("key id", "role", "label", "created", "revoked"):
        table.add_column(col)
    for k in KeyStore(settings(workdir, None, db).db).list_keys():
        table.add_row(k.key_id, str(k.role), k.label, k.created_at, k.revoked_at or "")
    console.print(table)


@keys_app.command("revoke")
def revoke_key(key_id: str, workdir: WorkdirOption = None, db: DbOption = None) -> None:
    """Revoke a key (other server processes stop accepting it within 30 s)."""
    from serving.auth import KeyStore

    cfg = settings(workdir, None, db)
    try:
        changed = KeyStore(cfg.db).revoke_key(key_id)
    except KeyError as exc:
        raise fail(f"KEY_ID: {exc.args[0]}") from None
    if changed:
        _audit_key(cfg, "key_revoked", {"key_id": key_id})
    console.print(f"{key_id}: {'revoked' if changed else 'was already revoked'}")


@audit_app.command("verify")
def verify_audit(
    workdir: WorkdirOption = None,
    db: DbOption = None,
    anchor: Annotated[
        str | None, typer.Option(help="A published head SEQ:HASH the chain must still contain")
    ] = None,
) -> None:
    """Walk the hash chain from genesis; name the first broken link (exit 1 if broken)."""
    from serving.audit import AuditLog

    published = None
    if anchor:
        seq, sep, digest = anchor.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise fail(f"--anchor: {anchor!r} is not SEQ:HASH (64 hex characters)")
        published = (int(seq), digest)
    log = AuditLog(settings(workdir, None, db).db)
    report = log.verify(published)
    if report.ok:
        head = log.head()
        where = f"; head {head.seq}:{head.hash}" if head else ""
        console.print(f"audit chain intact: {report.checked:,} entries{where}")
        return
    console.print(
        f"[red]audit chain broken[/red] at entry {report.first_broken_seq}: {report.reason} "
        f"({report.checked:,} entries intact before it)"
    )
    raise typer.Exit(1)


@audit_app.command("head")
def audit_head(workdir: WorkdirOption = None, db: DbOption = None) -> None:
    """The head entry's SEQ:HASH, to publish (anyone holding it can detect a rewrite later)."""
    from serving.audit import AuditLog

    head = AuditLog(settings(workdir, None, db).db).head()
    if head is None:
        raise fail("the audit trail is empty")
    print(f"{head.seq}:{head.hash}")


draw_app = typer.Typer(
    help="Double-random draws: verify a published record; look up a public reference.",
    no_args_is_help=True,
)


@draw_app.command("verify")
def verify_draw(
    folder: Annotated[Path, typer.Argument(help="A published draw folder (record.json, CSVs)")],
) -> None:
    """Re-run a published draw from its files and seed; exit 1 naming the first mismatch."""
    from serving.draws import PublishedRecord, verify
    from serving.draws.record import copies_mismatch

    if not (folder / "record.json").is_file():
        raise fail(f"FOLDER: {folder} has no record.json (a published draw folder)")
    try:
        record = PublishedRecord.read(folder)
    except (ValueError, KeyError) as exc:
        raise fail(f"FOLDER: {folder}: unreadable record ({exc})") from None
    report = verify(record)
    copies = copies_mismatch(folder, record)
    if report.ok and copies:
        console.print(f"[red]draw {record.inputs.draw_id} does NOT verify[/red]: {copies}")
        raise typer.Exit(1)
    if report.ok:
        console.print(
            f"draw {record.inputs.draw_id} verified: commitment {report.commitment}, "
            f"{report.targets_checked:,} targets and {report.teams_checked:,} teams re-drawn identically"
        )
        return
    console.print(
        f"[red]draw {record.inputs.draw_id} does NOT verify[/red]: {report.first_mismatch}"
    )
    raise typer.Exit(1)


def _reference_or_code(value: str) -> str:
    """REF_OR_CODE checked as a GB 32100 string (upper-cased): a public reference, or a code."""
    from features.credit_code import ALPHABET, check_character, is_well_formed
    from serving.public_refs import REF_AUTHORITY, is_public_ref

    unit = value.strip().upper()
    if len(unit) != 18:
        raise fail(
            f"REF_OR_CODE: {value!r} has {len(unit)} characters; "
            "a credit code or a public reference has 18"
        )
    outside = sorted({ch for ch in unit if ch not in ALPHABET})
    if outside:
        raise fail(
            f"REF_OR_CODE: {value!r} has {', '.join(map(repr, outside))}, outside the GB 32100 "
            "alphabet (digits and capitals without I, O, S, V, Z)"
        )
    expected = check_character(unit[:17])
    if unit[17] != expected:
        raise fail(
            f"REF_OR_CODE: {value!r} fails the GB 32100 check: it ends in {unit[17]!r}, "
            f"its first 17 characters give {expected!r} (mistyped?)"
        )
    if unit.startswith(REF_AUTHORITY) and not is_public_ref(unit):
        raise fail(
            f"REF_OR_CODE: {value!r} starts with {REF_AUTHORITY!r}, which only public references "
            f"use, but is not one ({REF_AUTHORITY}2, a six-digit region, nine characters, check)"
        )
    if not unit.startswith(REF_AUTHORITY) and not is_well_formed(unit):
        raise fail(
            f"REF_OR_CODE: {value!r} is not a well-formed credit code (registration authority, "
            "category, six-digit region, organisation code, check)"
        )
    return unit


@draw_app.command("ref")
def draw_ref(
    draw_id: Annotated[str, typer.Argument(help="The draw's id")],
    ref_or_code: Annotated[
        str, typer.Argument(help="A public reference (X2…) or a credit code (e.g. 92…)")
    ],
    workdir: WorkdirOption = None,
    db: DbOption = None,
) -> None:
    """Which individual business a draw's public reference stands for, or the reference of an
    individual business's code in that draw; printed last, alone. Every answer that names an
    individual business is appended to the audit trail (with the reference, not the code)."""
    from serving.draw_desk import look_up_ref
    from serving.public_refs import is_public_ref
    from serving.runtime import BadRequest

    unit = _reference_or_code(ref_or_code)
    cfg = settings(workdir, None, db)
    try:
        found = look_up_ref(cfg.db, cfg.workdir, draw_id, unit)
    except BadRequest as exc:
        raise fail(f"DRAW_ID: {exc.message}") from None
    by_ref = is_public_ref(unit)
    if found is None:
        why = (
            "references differ with every draw: is it another draw's?"
            if by_ref
            else "not in its pool, conflicts or previous teams"
        )
        raise fail(f"REF_OR_CODE: draw {draw_id!r} names no {unit} ({why})")
    drawn = f"drawn in the {found.arm} arm" if found.arm else "not drawn"
    if found.public_ref == found.credit_code:
        console.print(
            f"{unit} is not an individual business's code: it is its own public form in every "
            f"draw ({drawn} in {draw_id!r}); nothing to resolve, nothing audited",
            soft_wrap=True,
        )
        print(unit)
        return
    seq = _audit_key(
        cfg,
        "draw_ref_resolved",
        {
            "draw_id": draw_id,
            "public_ref": found.public_ref,
            "asked_by": "public_ref" if by_ref else "credit_code",
            "arm": found.arm,
        },
    )
    subject = f"{found.public_ref} stands for" if by_ref else "the code is"
    console.print(
        f"draw {draw_id!r}: {subject} an individual business ({drawn}); "
        f"this look-up of personal data is audit entry {seq}",
        soft_wrap=True,  # one line per message: easy to grep
    )
    print(found.credit_code if by_ref else found.public_ref)
