"""``riskctl serve``, ``riskctl keys …`` and ``riskctl audit …``: run and administer the service."""

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


def _audit_key(cfg: Settings, action: str, payload: dict) -> None:
    """Key management is itself audited (actor: the operator's OS account on this machine)."""
    import getpass

    from serving.audit import AuditLog

    AuditLog(cfg.db).append(f"cli:{getpass.getuser()}", "admin", action, payload=payload)


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


draw_app = typer.Typer(help="Double-random draws: verify a published record.", no_args_is_help=True)


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
