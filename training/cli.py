"""Training commands: train, promote, rollback, score, models.

Registered on the main ``riskctl`` app by ``serving.cli``. Bad input (a missing file, an
unknown version, a config that does not validate) exits with code 2 and a message naming the
option or file; nothing in ``mlruns/`` changes when a command is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from features.cli import console, fail, parse_date
from features.workspace import Workspace
from training.config import DEFAULT_CONFIG, ConfigError, TrainingConfig, load_config

WorkdirOption = Annotated[
    Path | None, typer.Option(help="Working folder (default: $RISK_WORKDIR or .data)")
]
ConfigOption = Annotated[Path, typer.Option(help="Training configuration (YAML)")]
MlrunsOption = Annotated[
    Path | None, typer.Option(help="MLflow home (default: $RISK_MLRUNS or mlruns)")
]


def load_or_fail(path: Path) -> TrainingConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _validated(ws: Workspace) -> Path:
    if not (ws.validated / "inspections.parquet").is_file():
        raise fail(
            f"{ws.validated}: no validated sources; run `riskctl demo` or `riskctl validate`"
        )
    return ws.validated


def latest_snapshot(ws: Workspace) -> Path:
    """The most recent population snapshot in the workspace."""
    found = sorted(ws.snapshots.glob("features_*.parquet"))
    if not found:
        raise fail(f"{ws.snapshots}: no feature snapshot; run `riskctl features --as-of DATE`")
    return found[-1]


def resolve_snapshot(ws: Workspace, as_of: str | None) -> Path:
    """The snapshot of ``--as-of`` (which must exist) or the latest one."""
    snapshot = ws.snapshot(parse_date(as_of, "--as-of")) if as_of else latest_snapshot(ws)
    if not snapshot.is_file():
        raise fail(f"--as-of: no snapshot {snapshot}; run `riskctl features --as-of {as_of}`")
    return snapshot


def load_model(cfg: TrainingConfig, version: str | None, mlruns: Path | None):
    """The champion (or ``version``) with its registry entry, or a precise error."""
    from training import registry

    registry.configure(mlruns)
    try:
        return registry.load(cfg.registered_model, version)
    except LookupError as exc:
        raise fail(str(exc)) from None


VersionOption = Annotated[str | None, typer.Option(help="Model version (default: champion)")]
AsOfOption = Annotated[str | None, typer.Option(help="Snapshot date YYYY-MM-DD (default: latest)")]


def print_comparison(result) -> None:
    """The table regulators read first: every model on the same out-of-time inspections."""
    from training.comparison import VIEWS

    for view_name, meaning in VIEWS.items():
        rows = result.comparison[result.comparison["view"] == view_name]
        share = result.draw["draw_share"]
        table = Table(
            title=f"Test period {result.periods.test_start} – {result.periods.end}: {meaning}"
        )
        for col in (
            "model",
            "inspections",
            "ROC-AUC",
            "PR-AUC",
            "Brier",
            f"detection top {share:.0%}",
            "random draw",
            "lift (pp)",
        ):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in rows.itertuples():
            table.add_row(
                r.model,
                f"{r.inspections:,}",
                f"{r.roc_auc:.3f}",
                f"{r.pr_auc:.3f}",
                "" if pd.isna(r.brier) else f"{r.brier:.3f}",
                f"{r.detection_rate:.1%}",
                f"{r.random_draw_rate:.1%}",
                f"{r.lift_pp:+.1f}",
            )
        console.print(table)
    u = result.uncertainty
    if not u.empty:
        table = Table(
            title="LightGBM minus each baseline, random view: paired bootstrap 95 % interval"
        )
        for col in ("baseline", "metric", "difference", "95 % interval", "LightGBM ahead in"):
            table.add_column(col, justify="left" if col in {"baseline", "metric"} else "right")
        for r in u.itertuples():
            scale, unit = (100, " pp") if r.metric == "detection_rate" else (1, "")
            table.add_row(
                r.baseline,
                r.metric,
                f"{scale * r.difference:+.3f}{unit}",
                f"[{scale * r.ci_low:+.3f}, {scale * r.ci_high:+.3f}]",
                f"{r.wins:.0%}",
            )
        console.print(table)
    d = result.draw
    console.print(
        f"Tier-weighted draw vs plain random draw of the same size ({d['draw_share']:.0%} of the "
        f"random-draw population): {d['tier_weighted_rate']:.1%} vs {d['uniform_rate']:.1%} "
        f"find a problem ({d['lift_pp']:+.1f} pp, ×{d['ratio']:.2f})"
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Train, evaluate against the baselines, and register a model version in MLflow."""
        from training.train import train as run_training

        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        try:
            result = run_training(_validated(ws), cfg, latest_snapshot(ws), mlruns=mlruns)
        except ValueError as exc:
            raise fail(str(exc)) from None
        print_comparison(result)
        report_registration(result, cfg)

    @app.command()
    def promote(
        version: Annotated[
            str | None, typer.Option(help="Version to promote (default: newest)")
        ] = None,
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Make a version the champion if it passes the gate against the current champion."""
        from training.promotion import promote as run_gate

        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        try:
            version, decision = run_gate(_validated(ws), cfg, version=version, mlruns=mlruns)
        except (LookupError, ValueError) as exc:
            raise fail(str(exc)) from None
        for c in decision.checks:
            mark = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
            champ = "—" if c.champion is None else f"{c.champion:.4f}"
            console.print(
                f"{mark} {c.name}: challenger {c.challenger:.4f}, champion {champ} ({c.limit})"
            )
        if not decision.passed:
            raise fail(f"version {version} refused by the gate: {'; '.join(decision.failures())}")
        console.print(f"version {version} is now the champion")

    @app.command()
    def rollback(
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Return the champion alias to the previous champion."""
        from training import registry

        cfg = load_or_fail(config)
        registry.configure(mlruns)
        try:
            previous = registry.rollback(cfg.registered_model)
        except (ValueError, LookupError) as exc:
            raise fail(str(exc)) from None
        console.print(f"champion is version {previous} again")

    @app.command()
    def score(
        as_of: AsOfOption = None,
        version: VersionOption = None,
        out: Annotated[Path | None, typer.Option(help="Output Parquet file")] = None,
        workdir: WorkdirOption = None,
        config: ConfigOption = DEFAULT_CONFIG,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Score a whole population snapshot to Parquet: probability, tiers, versions."""
        from training.scoring import score_snapshot

        cfg = load_or_fail(config)
        ws = Workspace.from_env(workdir)
        snapshot = resolve_snapshot(ws, as_of)
        model, mv = load_model(cfg, version, mlruns)
        target = (
            out
            or ws.root
            / "scores"
            / f"scores_{snapshot.stem.removeprefix('features_')}_v{mv.version}.parquet"
        )
        try:
            run = score_snapshot(model, snapshot, target)
        except ValueError as exc:
            raise fail(str(exc)) from None
        console.print(
            f"scored {run.rows:,} enterprises with version {mv.version} ({run.scoring_path} path) → {run.path}"
        )

    @app.command()
    def models(config: ConfigOption = DEFAULT_CONFIG, mlruns: MlrunsOption = None) -> None:
        """Registered versions with their gate figures; the champion is marked."""
        from mlflow import MlflowClient

        from training import registry

        cfg = load_or_fail(config)
        registry.configure(mlruns)
        client = MlflowClient()
        versions = client.search_model_versions(f"name = '{cfg.registered_model}'")
        if not versions:
            raise fail(f"model {cfg.registered_model!r} has no versions; run `riskctl train`")
        champ = registry.champion(cfg.registered_model)
        table = Table(title=f"Registered model {cfg.registered_model}")
        for col in ("version", "champion", "AUC (random view)", "detection", "fairness gap", "run"):
            table.add_column(col)
        for v in sorted(versions, key=lambda v: int(v.version)):
            t = v.tags
            table.add_row(
                str(v.version),
                "★" if champ is not None and champ.version == v.version else "",
                t.get("roc_auc", ""),
                t.get("detection_rate", ""),
                t.get("fairness_gap", ""),
                v.run_id[:8],
            )
        console.print(table)


def report_registration(result, config: TrainingConfig) -> None:
    console.print(
        f"MLflow run {result.run_id[:8]}: registered {config.registered_model} version {result.model_version}"
    )
    if result.champion is None:
        console.print(
            "a champion already exists: run `riskctl promote` to pass this version through the gate"
        )
    elif result.champion.passed:
        console.print(
            f"no champion yet: version {result.model_version} passed the gate and is now the champion"
        )
    else:
        console.print(
            f"[red]version {result.model_version} failed the gate:[/] {'; '.join(result.champion.failures())}"
        )


REAL_DATASETS = ("chicago",)


def register_real(app: typer.Typer) -> None:
    """``riskctl real-benchmark``: the whole path on a real public dataset."""

    @app.command("real-benchmark")
    def real_benchmark(
        dataset: Annotated[str, typer.Argument(help="Real dataset: chicago")] = "chicago",
        data: Annotated[
            Path | None,
            typer.Option(help="Dataset folder (default: $RISK_REAL_DATA/<name> or shared/data)"),
        ] = None,
        workdir: Annotated[
            Path | None,
            typer.Option(help="Working folder (default: <$RISK_WORKDIR or .data>/real/<name>)"),
        ] = None,
        config: Annotated[Path | None, typer.Option(help="Training configuration")] = None,
        mlruns: MlrunsOption = None,
    ) -> None:
        """Adapt, validate, train and compare on real inspections, beside the published model."""
        from features.adapters import locate_dataset
        from features.adapters.chicago import DATASET
        from training.real_benchmark import CHICAGO_CONFIG, run_chicago

        if dataset not in REAL_DATASETS:
            raise fail(f"DATASET: unknown dataset {dataset!r}; expected one of {REAL_DATASETS}")
        cfg = load_or_fail(config or CHICAGO_CONFIG)
        try:
            folder = locate_dataset(DATASET, data)
        except FileNotFoundError as exc:
            raise fail(f"--data: {exc}") from None
        ws = Workspace(workdir or Workspace.from_env().root / "real" / dataset)
        try:
            bench = run_chicago(folder, ws, config=cfg, mlruns=mlruns)
        except (FileNotFoundError, ValueError) as exc:
            raise fail(str(exc)) from None
        print_real_benchmark(bench)
        report_registration(bench.result, cfg)


def print_real_benchmark(bench) -> None:
    """Validation, the usual comparison, then every model on the City's own test inspections."""
    from features.cli import print_validation
    from training.real_benchmark import CHICAGO_REPORTED

    a = bench.adapter
    console.print(
        f"{a.dataset}: {a.rows['registry']:,} establishments, {a.rows['inspections']:,} "
        f"inspections, {a.rows['complaints']:,} complaints mapped from {a.source_dir}"
    )
    print_validation(bench.validation)
    print_comparison(bench.result)
    table = Table(
        title=(
            f"The City's test inspections ({bench.rows_compared:,} of {bench.city_test_rows:,} "
            f"kept by our validation), {bench.table['problems'].iloc[0]} with a critical violation"
        )
    )
    cols = ("model", "found in first half", "detection top 10 %", "ROC-AUC", "within-team AUC")
    for col in (*cols, "Brier", "ECE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in bench.table.itertuples():
        table.add_row(
            r.model,
            f"{r.share_found_first_half:.1%}",
            f"{r.detection_top10:.1%}",
            f"{r.roc_auc:.3f}",
            f"{r.within_team_auc:.3f}",
            "" if pd.isna(r.brier) else f"{r.brier:.3f}",
            "" if pd.isna(r.ece) else f"{r.ece:.3f}",
        )
    console.print(table)
    rep = CHICAGO_REPORTED
    console.print(
        f"Reported by the City: {rep['share_found_first_half']:.0%} found in the first half with "
        f"its model vs {rep['existing_order_first_half']:.0%} in the existing order "
        f"(source: {rep['source']})."
    )
    lenient = bench.result.leniency.sort_values("strictness")
    console.print(
        "Inspector teams, strictness on top of the model's expectation (log-odds): "
        + ", ".join(f"{r.inspector_id} {r.strictness:+.2f}" for r in lenient.itertuples())
    )
