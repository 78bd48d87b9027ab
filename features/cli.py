"""Feature-layer commands: generate, validate, features, docs.

Registered on the main ``riskctl`` app by ``serving.cli``. Each command checks its input and
fails with a message that names the file or option and the problem (exit code 2), leaving
existing outputs untouched.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from features.contracts import ValidationWindow

# Outside a terminal (CI logs, pipes) rich would wrap tables at 80 columns and cut model names.
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print a precise error and return the exit to raise (code 2: bad input)."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def parse_date(value: str, option: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise fail(f"{option}: {value!r} is not a date in YYYY-MM-DD form") from None


def print_validation(report) -> None:
    table = Table(title="Validation: rows kept and quarantined per source")
    for col in ("source", "file", "read", "kept", "quarantined", "top reasons"):
        table.add_column(col, justify="right" if col in {"read", "kept", "quarantined"} else "left")
    for s in report.sources.values():
        reasons = sorted(s.quarantined_by.items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            s.source,
            Path(s.file).name,
            f"{s.rows_read:,}",
            f"{s.rows_kept:,}",
            f"{s.rows_quarantined:,}",
            ", ".join(f"{k} {v:,}" for k, v in reasons),
        )
    console.print(table)
    console.print(f"data fingerprint [bold]{report.data_fingerprint[:16]}[/]")


def register(app: typer.Typer) -> None:
    """Add the feature-layer commands to ``app``."""

    @app.command()
    def generate(
        out: Annotated[Path, typer.Option(help="Empty or new folder for the raw source files")],
        enterprises: Annotated[int, typer.Option(min=100, max=5_000_000)] = 20_000,
        seed: Annotated[int, typer.Option(min=0)] = 7,
        fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
        extracted_on: Annotated[
            str, typer.Option(help="Extraction date YYYY-MM-DD")
        ] = "2026-06-30",
        chunk_size: Annotated[int, typer.Option(min=1_000)] = 50_000,
    ) -> None:
        """Generate the synthetic province: raw sources with a hidden risk process and defects."""
        from features.synthetic import generate as run

        if fmt not in ("csv", "parquet"):
            raise fail(f"--format: {fmt!r} is not one of csv, parquet")
        day = parse_date(extracted_on, "--extracted-on")
        try:
            summary = run(
                out,
                enterprises=enterprises,
                seed=seed,
                fmt=fmt,
                chunk_size=chunk_size,  # type: ignore[arg-type]
                extracted_on=day,
                progress=True,
            )
        except (FileExistsError, ValueError) as exc:
            raise fail(str(exc)) from None
        total = sum(summary.rows.values())
        console.print(f"wrote {total:,} source rows for {enterprises:,} enterprises to {out}")

    @app.command("validate")
    def validate_cmd(
        data_dir: Annotated[Path, typer.Argument(help="Folder with one file per source")],
        out: Annotated[Path, typer.Option(help="Folder for validated sources and quarantine")],
        extracted_on: Annotated[
            str | None, typer.Option(help="Extraction date; later dates are implausible")
        ] = None,
    ) -> None:
        """Validate raw sources: typed clean tables, a quarantine with reasons, a report."""
        from features.validate import SourceError, validate

        if not data_dir.is_dir():
            raise fail(f"{data_dir}: no such folder")
        day = parse_date(extracted_on, "--extracted-on") if extracted_on else date.today()
        try:
            report = validate(
                data_dir, out, window=ValidationWindow(extracted_on=day), progress=True
            )
        except SourceError as exc:
            raise fail(str(exc)) from None
        print_validation(report)

    @app.command("features")
    def features_cmd(
        validated: Annotated[Path, typer.Argument(help="Validated folder (from `validate`)")],
        as_of: Annotated[str, typer.Option(help="As-of date YYYY-MM-DD")],
        out: Annotated[Path, typer.Option(help="Parquet file for the feature snapshot")],
    ) -> None:
        """Point-in-time features for every enterprise registered at the as-of date."""
        from features.build import build_snapshot

        if not (validated / "validation_report.json").exists():
            raise fail(f"{validated}: not a validated folder (no validation_report.json)")
        info = build_snapshot(validated, parse_date(as_of, "--as-of"), out)
        console.print(f"{info.rows:,} enterprises as of {info.as_of} → {info.path}")

    @app.command()
    def docs(
        readme: Annotated[Path, typer.Option(help="README to refresh in place")] = Path(
            "README.md"
        ),
    ) -> None:
        """Regenerate the README's contract, catalogue and defect tables from the code."""
        from features.docs import GENERATED, refresh

        if not readme.exists():
            raise fail(f"{readme}: no such file")
        text = readme.read_text(encoding="utf-8")
        missing = [b for b, e, _ in GENERATED if b not in text or e not in text]
        if missing:
            raise fail(f"{readme}: generated-block markers missing: {missing}")
        readme.write_text(refresh(text), encoding="utf-8")
        console.print(f"refreshed the generated tables in {readme}")
