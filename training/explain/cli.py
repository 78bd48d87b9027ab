"""Explanation commands: explain, what-if, explain-batch, report.

Registered on the main ``riskctl`` app by ``serving.cli``. Like every command, bad input (an
unknown enterprise, an unknown record, a date before the as-of date, an unknown language) is
refused with a message that names the option, exit code 2, and nothing written.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from features.cli import console, fail, parse_date
from features.workspace import Workspace
from training.cli import (
    DEFAULT_CONFIG,
    AsOfOption,
    ConfigOption,
    MlrunsOption,
    VersionOption,
    WorkdirOption,
    _validated,
    load_model,
    load_or_fail,
    resolve_snapshot,
)

LangOption = Annotated[str, typer.Option(help="Language of the reasons: zh or en")]
CodeArgument = Annotated[str, typer.Argument(help="Unified social credit code (18 characters)")]


def _lang(lang: str) -> str:
    from training.explain.reasons import check_lang

    try:
        return check_lang(lang)
    except ValueError as exc:
        raise fail(f"--lang: {exc}") from None


def _as_of(ws: Workspace, as_of: str | None) -> date:
    if as_of:
        return parse_date(as_of, "--as-of")
    snapshot = resolve_snapshot(ws, None)
    return date.fromisoformat(snapshot.stem.removeprefix("features_"))


def _edits(repair: list[str], withdraw: list[str], on: date | None):
    """``SOURCE:RECORD_ID`` options → scenario edits."""
    from pydantic import ValidationError

    from features.scenario import Edit

    out = []
    for kind, values in (("repair", repair), ("withdraw", withdraw)):
        for value in values:
            source, sep, record = value.partition(":")
            if not sep or not source or not record:
                raise fail(f"--{kind}: {value!r} is not SOURCE:RECORD_ID (e.g. penalties:P123)")
            try:
                out.append(Edit(kind=kind, source=source, record_id=record, on=on))
            except ValidationError as exc:
                problem = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise fail(f"--{kind}: {value!r}: {problem}") from None
    return out


def print_explanation(explanation, lang: str) -> None:
    e = explanation.to_dict(lang)
    tiers = ", ".join(
        f"{s} {t}" + (f" ({e['rules'][s]})" if e["rules"][s] else "") for s, t in e["tiers"].items()
    )
    console.print(
        f"[bold]{e['credit_code']}[/] as of {e['as_of']}: probability {e['probability']:.1%}; "
        f"tiers {tiers}; model version {e['model_version']}"
    )
    for title, key in (
        ("raising risk", "reasons_raising_risk"),
        ("lowering risk", "reasons_lowering_risk"),
    ):
        table = Table(title=f"Reasons {title} (contributions in log-odds)")
        for col in ("code", "reason", "contribution", "records"):
            table.add_column(col)
        for r in e[key]:
            ids = ", ".join(str(rec["record_id"]) for rec in r["records"][:4])
            more = len(r["records"]) - 4
            table.add_row(
                r["code"],
                r["text"],
                f"{r['contribution']:+.3f}",
                ids + (f" (+{more})" if more > 0 else ""),
            )
        console.print(table)
    if e["objected_records"]:
        w = e["with_objected_records"]
        console.print(
            f"under objection (not counted): {', '.join(e['objected_records'])}; if they "
            f"counted: probability {w['probability']:.1%}, tiers "
            + ", ".join(f"{s} {t}" for s, t in w["tiers"].items())
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def explain(
        credit_code: CodeArgument,
        as_of: AsOfOption = None,
        lang: LangOption = "zh",
        reasons: Annotated[int, typer.Option(min=1, max=29, help="Reasons each way")] = 5,
        out: Annotated[Path | None, typer.Option(help="Write the enterprise report (HTML)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead")] = False,
        version: VersionOption = None,
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Why an enterprise has its tier: reasons, linked records, objections."""
        from training.explain.enterprise import explain_enterprise
        from training.explain.report import enterprise_report

        lang = _lang(lang)
        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        day = _as_of(ws, as_of)
        model, _ = load_model(cfg, version, mlruns)
        try:
            explanation = explain_enterprise(model, _validated(ws), credit_code, day, k=reasons)
        except (LookupError, ValueError) as exc:
            raise fail(f"{credit_code}: {exc}") from None
        if as_json:
            print(json.dumps(explanation.to_dict(lang), ensure_ascii=False, indent=2, default=str))
        else:
            print_explanation(explanation, lang)
        if out is not None:
            enterprise_report(explanation, model, out, lang)
            console.print(f"enterprise report → {out}")

    @app.command("what-if")
    def what_if_command(
        credit_code: CodeArgument,
        repair: Annotated[
            list[str], typer.Option(help="SOURCE:RECORD_ID repaired (repeatable)")
        ] = [],  # noqa: B006 - typer reads the default
        withdraw: Annotated[
            list[str], typer.Option(help="SOURCE:RECORD_ID withdrawn (repeatable)")
        ] = [],  # noqa: B006
        on: Annotated[str | None, typer.Option(help="Repair date (default: day before)")] = None,
        later: Annotated[str | None, typer.Option(help="Also move to a later date")] = None,
        as_of: AsOfOption = None,
        version: VersionOption = None,
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """The tier if records were repaired or withdrawn, or at a later date."""
        from training.explain.enterprise import what_if

        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        day = _as_of(ws, as_of)
        edits = _edits(repair, withdraw, parse_date(on, "--on") if on else None)
        then = parse_date(later, "--later") if later else None
        model, _ = load_model(cfg, version, mlruns)
        try:
            result = what_if(model, _validated(ws), credit_code, day, edits, later=then)
        except (LookupError, ValueError) as exc:
            raise fail(f"{credit_code}: {exc}") from None
        table = Table(title=f"What if, {credit_code}")
        for col in ("", "as of", "probability", *model.scheme_names):
            table.add_column(col)
        for name, s, d in (
            ("now", result.before, result.as_of),
            ("after", result.after, result.after_as_of),
        ):
            table.add_row(
                name,
                d.isoformat(),
                f"{s.probability:.1%}",
                *(s.tiers[x] for x in model.scheme_names),
            )
        console.print(table)
        for row in result.changed.itertuples():
            console.print(f"  {row.feature}: {row.before} → {row.after}")

    @app.command("explain-batch")
    def explain_batch(
        as_of: AsOfOption = None,
        reasons: Annotated[int, typer.Option(min=1, max=29, help="Reasons each way")] = 5,
        lang: Annotated[str | None, typer.Option(help="Also write sentences in zh or en")] = None,
        out: Annotated[Path | None, typer.Option(help="Output Parquet file")] = None,
        version: VersionOption = None,
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Top reasons for every enterprise of a snapshot, to Parquet."""
        from training.explain.batch import explain_snapshot

        lang = _lang(lang) if lang is not None else None
        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        snapshot = resolve_snapshot(ws, as_of)
        model, mv = load_model(cfg, version, mlruns)
        stem = snapshot.stem.removeprefix("features_")
        target = out or ws.root / "explanations" / f"reasons_{stem}_v{mv.version}.parquet"
        try:
            run = explain_snapshot(model, snapshot, target, k=reasons, lang=lang)
        except ValueError as exc:
            raise fail(str(exc)) from None
        console.print(
            f"explained {run.rows:,} enterprises with version {mv.version} "
            f"({run.contributions_path} path) → {run.path}"
        )

    @app.command()
    def report(
        out: Annotated[Path, typer.Option(help="Folder for model_report.html and the card")],
        version: VersionOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Fetch a version's model report and model card from its MLflow run."""
        folder = fetch_report(load_or_fail(config), version, mlruns, out)
        console.print(f"model report → {folder / 'model_report.html'}")


def fetch_report(cfg, version: str | None, mlruns: Path | None, out: Path) -> Path:
    """Copy the ``report`` artifacts of the version's run into ``out`` (files at its top)."""
    import shutil
    import tempfile

    import mlflow

    _, mv = load_model(cfg, version, mlruns)
    if out.exists() and not out.is_dir():
        raise fail(f"--out: {out} exists and is not a folder")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path="report", dst_path=tmp
            )
        except Exception as exc:
            raise fail(f"version {mv.version}: run {mv.run_id} has no report ({exc})") from None
        out.mkdir(parents=True, exist_ok=True)
        for item in Path(local).iterdir():
            shutil.copy2(item, out / item.name)
    return out
