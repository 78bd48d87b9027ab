"""``riskctl``: the one command-line entry point; each layer registers its commands here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from features import cli as feature_cli
from serving import commands as serving_cli
from training import cli as training_cli
from training.explain import cli as explain_cli

console = feature_cli.console

app = typer.Typer(
    help="Enterprise risk prediction for credit-based regulation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
feature_cli.register(app)
training_cli.register(app)
training_cli.register_real(app)
explain_cli.register(app)
serving_cli.register(app)


@app.command()
def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Working folder (default: $RISK_WORKDIR or .data)")
    ] = None,
    enterprises: Annotated[int, typer.Option(min=100, max=5_000_000)] = 20_000,
    seed: Annotated[int, typer.Option(min=0)] = 7,
    mlruns: training_cli.MlrunsOption = None,
    config: training_cli.ConfigOption = training_cli.DEFAULT_CONFIG,
    serve: Annotated[
        bool, typer.Option(help="End by running the service on localhost (Ctrl+C stops it)")
    ] = True,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
) -> None:
    """The main job on the embedded synthetic province.

    generate → validate → features → train against the baselines → register (and crown the
    first champion) in MLflow → print the comparison table → the model report and one
    enterprise's report (an enterprise with a record under objection, when there is one).
    """
    from features.pipeline import run_synthetic
    from features.workspace import Workspace
    from training.train import train

    cfg = training_cli.load_or_fail(config)

    ws = Workspace.from_env(workdir)
    try:
        run = run_synthetic(ws, enterprises=enterprises, seed=seed, progress=True)
    except ValueError as exc:
        raise feature_cli.fail(str(exc)) from None
    if run.generated is not None:
        console.print(
            f"generated {sum(run.generated.rows.values()):,} source rows "
            f"for {enterprises:,} enterprises (seed {seed})"
        )
    feature_cli.print_validation(run.validation)
    snap = run.snapshot
    table = Table(title=f"Feature snapshot as of {snap.as_of}")
    table.add_column("item")
    table.add_column("value")
    table.add_row("enterprises", f"{snap.rows:,}")
    table.add_row("file", str(snap.path))
    table.add_row("catalogue version", snap.catalogue_version)
    table.add_row("data fingerprint", str(snap.data_fingerprint)[:16])
    console.print(table)
    try:
        result = train(ws.validated, cfg, snap.path, mlruns=mlruns)
    except ValueError as exc:
        raise feature_cli.fail(str(exc)) from None
    training_cli.print_comparison(result)
    training_cli.report_registration(result, cfg)
    _reports(ws, result, snap.as_of, cfg, mlruns)
    _service(ws, snap.as_of, mlruns, serve, port)


def _service(ws, as_of, mlruns, serve: bool, port: int) -> None:
    """The roster for draws, a platform key, and the service on localhost."""
    from serving.auth import KeyStore
    from serving.draw_desk import synthetic_roster
    from serving.settings import settings
    from training.registry import mlruns_root

    synthetic_roster(ws.root)
    cfg = settings(ws.root, mlruns_root(mlruns))
    key = KeyStore(cfg.db).create_key("platform", "riskctl demo")
    url = f"http://127.0.0.1:{port}"
    console.print(
        "a platform API key was created (shown once; more with "
        "`riskctl keys create --role platform|auditor|admin --label NAME`):"
    )
    print(key)
    import pandas as pd

    sample = str(pd.read_parquet(ws.snapshot(as_of), columns=["credit_code"]).iat[0, 0])
    serving_cli.how_to_call(url, key, sample)
    if serve:
        console.print("starting the service (ready when /readyz answers 200; Ctrl+C stops it)")
        raise typer.Exit(serving_cli.serve_foreground(cfg, "127.0.0.1", port))


def _reports(ws, result, as_of, cfg, mlruns) -> None:
    """Fetch the model report from the run; explain one enterprise and write its report."""
    from training.explain.enterprise import explain_enterprise, sample_enterprise
    from training.explain.report import enterprise_report

    folder = explain_cli.fetch_report(
        cfg, result.model_version, mlruns, ws.root / "reports" / f"v{result.model_version}"
    )
    code = sample_enterprise(ws.validated, ws.snapshot(as_of), result.model)
    explanation = explain_enterprise(result.model, ws.validated, code, as_of)
    explain_cli.print_explanation(explanation, "en")
    page = enterprise_report(
        explanation, result.model, ws.root / "reports" / f"enterprise_{code}.html", "zh"
    )
    console.print(
        f"model report → {folder / 'model_report.html'} (model card: model_card.md)\n"
        f"enterprise report → {page}\nopen them in a browser; they work offline"
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
