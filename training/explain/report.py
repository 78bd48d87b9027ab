"""Self-contained HTML reports: the model report with its model card, and one enterprise's.

Why self-contained: auditors open these offline, archive them with a decision, and pass them
on; every figure is an inline PNG, the style is inline, and nothing is fetched. Templates are
Jinja with autoescaping (``templates/``), so record texts cannot inject markup.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.catalogue import feature
from training.explain import figures
from training.explain.contributions import contributions
from training.explain.enterprise import EnterpriseExplanation
from training.explain.reasons import SPACE, Lang, check_lang, code_table
from training.risk_model import RiskModel

if TYPE_CHECKING:  # train imports this module; the type only
    from training.train import TrainResult

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("training.explain", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)
#: Rows of the population explained for the summary and dependence plots.
SAMPLE = 5000
TOP_DEPENDENCE = 4


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


@dataclass(frozen=True)
class Fig:
    id: str
    png: str
    caption: str


def _table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return frame.to_html(
        index=False, border=0, na_rep="", float_format=lambda v: floatfmt.format(v)
    )


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    card: Path
    importance: pd.DataFrame


def global_importance(model: RiskModel, sample: pd.DataFrame) -> tuple[pd.DataFrame, object]:
    """Mean |SHAP| over a population sample and split gain, per feature, most important first."""
    X = model.encoder.matrix(sample)
    contrib = contributions(model.booster, X)
    names = list(model.encoder.feature_names)
    gain = pd.Series(model.booster.feature_importance("gain"), index=names, dtype=float)
    table = pd.DataFrame(
        {
            "feature": names,
            "code": [feature(n).code for n in names],
            "mean_abs_shap": np.abs(contrib.values).mean(axis=0),
            "mean_shap": contrib.values.mean(axis=0),
            "gain_share": (gain / max(gain.sum(), 1e-12)).to_numpy(),
        }
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    expl = figures.explanation(contrib.values, contrib.base_value, pd.DataFrame(X, columns=names))
    return table, expl


def model_card(result: TrainResult, population: pd.DataFrame, importance: pd.DataFrame) -> dict:
    """The model card's facts, one place for the HTML section and the Markdown file."""
    model = result.model
    meta = model.meta
    policy = model.policy
    active = policy.active
    rand = result.comparison[result.comparison["view"] == "random"].set_index("model")
    lgbm = rand.loc["lightgbm"]
    gaps = []
    for name, table in result.slices.items():
        flagged = table[table["largest_gap"]]
        if flagged.empty:
            continue
        worst = flagged.iloc[0]
        overall = table.attrs.get("overall_roc_auc", float("nan"))
        gaps.append(
            f"{name}: slice {worst['slice']} has AUC {worst['roc_auc']:.3f} against "
            f"{overall:.3f} overall ({int(worst['n'])} inspections, data coverage "
            f"{worst['coverage']:.0%})."
        )
    bound = result.gate_metrics.get("fairness_gap", float("nan"))
    return {
        "model": f"{meta.get('registered_model', 'enterprise-risk')} "
        f"version {meta.get('model_version', '(unregistered)')}",
        "run_id": meta.get("run_id", ""),
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "data_fingerprint": meta.get("data_fingerprint", ""),
        "catalogue_version": meta.get("catalogue_version", ""),
        "policy_fingerprint": meta.get("policy_fingerprint", ""),
        "rules_fingerprint": meta.get("rules_fingerprint", ""),
        "sections": [
            {
                "heading": "Intended use",
                "paragraphs": [
                    "Ranks enterprises by the probability that an inspection drawn at random "
                    "finds a problem, and sets the risk tiers that weight the 'double random, "
                    "one public' draw (higher tiers drawn more often, every enterprise keeps a "
                    "floor probability). It supports inspection planning; it is not a finding "
                    "against any enterprise, not a credit decision, and never the sole basis "
                    "for enforcement.",
                ],
            },
            {
                "heading": "Data and training window",
                "paragraphs": [
                    f"Labels: one example per inspection, positive when it found a problem; "
                    f"features as of the inspection date. Periods: {result.periods.as_dict()}. "
                    f"Inspections per period: {result.counts}.",
                    f"Data fingerprint {meta.get('data_fingerprint')}, feature catalogue "
                    f"{meta.get('catalogue_version')}, {meta.get('best_iteration')} trees, "
                    f"seed {meta.get('seed', '')}. Tiers ({active}) resolved on a population of "
                    f"{len(population):,} enterprises.",
                ],
            },
            {
                "heading": "Metrics (latest out-of-time period, random-draw inspections)",
                "paragraphs": [
                    f"ROC-AUC {lgbm['roc_auc']:.3f}, PR-AUC {lgbm['pr_auc']:.3f}, Brier "
                    f"{lgbm['brier']:.3f}; detection rate in the top "
                    f"{result.draw['draw_share']:.0%} {lgbm['detection_rate']:.1%} against "
                    f"{lgbm['random_draw_rate']:.1%} for a random draw. Tier-weighted draw "
                    f"{result.draw['tier_weighted_rate']:.1%} vs plain random "
                    f"{result.draw['uniform_rate']:.1%}.",
                ],
            },
            {
                "heading": "Fairness findings",
                "paragraphs": [
                    *(gaps or ["No slice had enough random-draw inspections to be judged."]),
                    f"Largest per-slice AUC gap used by the promotion gate: {bound:.3f}.",
                ],
            },
            {
                "heading": "Limitations",
                "paragraphs": [
                    "Outcomes exist only for inspected enterprises; targeted inspections are "
                    "not a random sample, so the unbiased figures are those of the random-draw "
                    "inspections, which are few per slice.",
                    "Inspectors differ in strictness; a label is what one inspector found. "
                    "Leniency is estimated and reported, not used as a predictor.",
                    "Regions or industries with thin records (low coverage) get less reliable "
                    "scores; watch the coverage column next to each slice.",
                    "Reasons are the model's associations (SHAP contributions), not causes; a "
                    "what-if re-runs the real path but cannot say what an inspector would find.",
                    "Calibration holds for the period it was fitted on; re-check it on each "
                    "new period before relying on probability cut-offs.",
                ],
            },
            {
                "heading": "Reason codes",
                "paragraphs": ["Stable codes: never renumbered or reused across versions."],
                "table": _table(code_table()),
                "frame": code_table(),
            },
            {
                "heading": "Most influential features",
                "paragraphs": [],
                "table": _table(importance.head(10)),
                "frame": importance.head(10).round(4),
            },
        ],
    }


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(map(str, r)) + " |" for r in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def card_markdown(card: dict) -> str:
    lines = [f"# Model card: {card['model']}", ""]
    for key in ("run_id", "data_fingerprint", "catalogue_version", "policy_fingerprint"):
        lines.append(f"- **{key}**: {card[key]}")
    for sec in card["sections"]:
        lines += ["", f"## {sec['heading']}", ""]
        lines += [f"{p}\n" for p in sec["paragraphs"]]
        if sec.get("frame") is not None:
            lines.append(_markdown(sec["frame"]))
    return "\n".join(lines) + "\n"


def write_model_report(
    result: TrainResult,
    evaluation_figures: dict[str, Figure],
    population: pd.DataFrame,
    out_dir: Path,
    *,
    seed: int = 0,
    min_slice: int = 100,
) -> ReportFiles:
    """model_report.html and model_card.md for one trained model, into ``out_dir``."""
    model = result.model
    sample = population.sample(min(SAMPLE, len(population)), random_state=seed)
    importance, expl = global_importance(model, sample)
    active = model.policy.active
    pred = model.predict(population)
    tier_counts = pd.DataFrame(
        [
            {
                "scheme": s,
                **{t: int((pred[f"tier_{s}"] == t).sum()) for t in model.policy.tier_names(s)},
            }
            for s in model.scheme_names
        ]
    ).fillna(0)
    names = list(model.encoder.feature_names)
    gain = pd.Series(model.booster.feature_importance("gain"), index=names, dtype=float)
    mean_abs = importance.set_index("feature")["mean_abs_shap"]
    figs = {
        "importance": Fig(
            "importance",
            _b64(figures.importance_png(mean_abs, gain)),
            "Feature importance: mean |SHAP| (left) and share of split gain (right)",
        ),
        "summary": Fig(
            "shap-summary",
            _b64(figures.summary_png(expl)),
            f"SHAP summary over {len(sample):,} enterprises of the population",
        ),
        "dependence": [
            Fig(
                f"dependence-{n}",
                _b64(figures.dependence_png(expl, n)),
                f"SHAP dependence: {n} ({feature(n).description_en})",
            )
            for n in importance["feature"].head(TOP_DEPENDENCE)
        ],
        "calibration": Fig(
            "calibration",
            _b64(figure_png(evaluation_figures["calibration.png"])),
            "Calibration on the test period (random-draw inspections)",
        ),
        "detection": Fig(
            "detection",
            _b64(figure_png(evaluation_figures["detection.png"])),
            "Share of problems found vs share inspected, every model",
        ),
        "tiers": Fig(
            "tier-distribution",
            _b64(figure_png(evaluation_figures["tiers.png"])),
            f"Test-period inspections by {active} tier, with the problem rate of each",
        ),
    }
    slices = [
        {
            "name": name,
            "html": _table(table),
            "fig": Fig(
                f"slices-{name}",
                _b64(figure_png(evaluation_figures[f"slices_{name}.png"])),
                f"AUC by {name}",
            )
            if f"slices_{name}.png" in evaluation_figures
            else None,
        }
        for name, table in result.slices.items()
    ]
    card = model_card(result, population, importance)
    comparison = [
        {"title": f"{view} view", "html": _table(result.comparison[result.comparison.view == view])}
        for view in result.comparison["view"].unique()
    ]
    leniency = result.leniency
    html = _ENV.get_template("model_report.html.j2").render(
        lang="en",
        title=f"Model report — {card['model']}",
        footer=f"Generated {card['created']} by training/explain/report.py",
        card=card,
        space=SPACE["en"],
        comparison=comparison,
        draw=result.draw,
        uncertainty=_table(result.uncertainty),
        figs=figs,
        population=f"{len(population):,}",
        tiers=_table(tier_counts),
        slices=slices,
        min_slice=min_slice,
        leniency=_table(leniency.head(15)) if len(leniency) else "<p>No estimate.</p>",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "model_report.html"
    html_path.write_text(html, encoding="utf-8")
    card_path = out_dir / "model_card.md"
    card_path.write_text(card_markdown(card), encoding="utf-8")
    importance.to_csv(out_dir / "feature_importance.csv", index=False)
    return ReportFiles(html=html_path, card=card_path, importance=importance)


_TEXT = {
    "en": {
        "enterprise": "Enterprise",
        "as_of": "as of",
        "model": "model version",
        "probability": "probability of a problem",
        "rule": "rule",
        "space": "Contributions are measured in",
        "objections": "Objections",
        "objected": "Records under objection (not counted while the objection is pending)",
        "without": "now (objected records not counted)",
        "with": "if the objected records counted",
        "no_objections": "No record of this enterprise is under objection.",
        "reasons": "Reasons",
        "raising": "Raising risk",
        "lowering": "Lowering risk",
        "records": "records",
        "waterfall": "From the average enterprise to this one",
        "waterfall_caption": "SHAP waterfall: base value plus each feature's contribution "
        "gives the model's raw score (log-odds)",
        "linked": "Source records",
    },
    "zh": {
        "enterprise": "市场主体",
        "as_of": "评估日期",
        "model": "模型版本",
        "probability": "发现问题概率",
        "rule": "规则",
        "space": "贡献度量单位",
        "objections": "异议",
        "objected": "异议处理中的记录（异议期间不计入）",
        "without": "当前（不计异议记录）",
        "with": "若计入异议记录",
        "no_objections": "该主体无异议中的记录。",
        "reasons": "原因",
        "raising": "提高风险的因素",
        "lowering": "降低风险的因素",
        "records": "记录",
        "waterfall": "从平均水平到该主体",
        "waterfall_caption": "SHAP 瀑布图：基准值加各特征贡献等于模型原始得分（对数几率）",
        "linked": "来源记录",
    },
}
RECORD_COLUMNS = (
    "source",
    "record_id",
    "event_date",
    "recorded_at",
    "department",
    "detail",
    "status",
    "objection_id",
    "repair_id",
)


def enterprise_report(
    explanation: EnterpriseExplanation, model: RiskModel, out_path: Path, lang: Lang = "zh"
) -> Path:
    """One enterprise: tiers, objections (tier with and without), reasons, waterfall, records."""
    check_lang(lang)
    e = explanation.to_dict(lang)
    row = model.encoder.encoded_frame(
        pd.DataFrame(
            [
                dict(
                    zip(
                        explanation.features["feature"],
                        explanation.features["value"],
                        strict=True,
                    )
                )
            ]
        )
    )
    expl = figures.explanation(
        explanation.features["contribution"].to_numpy()[None, :], explanation.base_value, row
    )
    columns = [c for c in RECORD_COLUMNS if c in explanation.records.columns]
    title = (
        f"风险解释 — {explanation.credit_code}"
        if lang == "zh"
        else f"Risk explanation — {explanation.credit_code}"
    )
    html = _ENV.get_template("enterprise_report.html.j2").render(
        lang=lang,
        title=title,
        footer=f"model version {explanation.model_version} · generated by training/explain/report.py",
        t=_TEXT[lang],
        e=e,
        waterfall=_b64(figures.waterfall_png(expl[0])),
        record_columns=columns,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(html, encoding="utf-8")
    return out_path
