"""The feature pipeline's order of steps: generate → validate → point-in-time snapshot.

Each step is a pure-ish function in its own module; this module only wires them, so that the
CLI, the notebooks and the tests run exactly the same path.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from features.build import SnapshotInfo, build_snapshot
from features.contracts import SOURCES, ValidationWindow
from features.synthetic import SyntheticSummary, generate
from features.validate import ValidationReport, validate
from features.workspace import Workspace

log = logging.getLogger(__name__)

#: The embedded default data: small enough for the demo, large enough to train on.
DEFAULT_ENTERPRISES = 20_000
DEFAULT_SEED = 7
DEFAULT_EXTRACTED_ON = date(2026, 6, 30)


class FeatureRun(BaseModel):
    """What one run of the feature pipeline produced."""

    model_config = ConfigDict(frozen=True)

    workspace: Path
    generated: SyntheticSummary | None
    validation: ValidationReport
    snapshot: SnapshotInfo


def has_sources(folder: Path) -> bool:
    """True when every contract source is present as CSV or Parquet."""
    return all(
        (folder / f"{name}.csv").exists() or (folder / f"{name}.parquet").exists()
        for name in SOURCES
    )


def run_synthetic(
    workspace: Workspace,
    *,
    enterprises: int = DEFAULT_ENTERPRISES,
    seed: int = DEFAULT_SEED,
    extracted_on: date = DEFAULT_EXTRACTED_ON,
    as_of: date | None = None,
    progress: bool = False,
) -> FeatureRun:
    """Generate the synthetic province (unless already there), validate it, snapshot features.

    Re-running reuses generated sources only when they were generated with the same
    parameters; otherwise it refuses rather than mixing two provinces.
    """
    generated: SyntheticSummary | None = None
    if has_sources(workspace.raw):
        _check_same_province(workspace.raw, enterprises=enterprises, seed=seed)
        log.info("reusing the sources already in %s", workspace.raw)
    else:
        generated = generate(
            workspace.raw,
            enterprises=enterprises,
            seed=seed,
            extracted_on=extracted_on,
            progress=progress,
        )
    return run_sources(
        workspace,
        workspace.raw,
        extracted_on=extracted_on,
        as_of=as_of,
        progress=progress,
        generated=generated,
    )


def _check_same_province(raw: Path, *, enterprises: int, seed: int) -> None:
    """Refuse to mix provinces: existing sources must come from the same parameters."""
    meta = raw / "_truth" / "generation.json"
    if not meta.exists():
        raise ValueError(
            f"{raw} holds sources that were not generated here; use `riskctl validate`"
        )
    params = json.loads(meta.read_text())["params"]
    if (params["enterprises"], params["seed"]) != (enterprises, seed):
        raise ValueError(
            f"{raw} holds a province generated with --enterprises {params['enterprises']} "
            f"--seed {params['seed']}; pass those, or another --workdir"
        )


def run_sources(
    workspace: Workspace,
    data_dir: Path,
    *,
    extracted_on: date,
    as_of: date | None = None,
    progress: bool = False,
    generated: SyntheticSummary | None = None,
) -> FeatureRun:
    """Validate a data folder and build the population snapshot as of ``as_of``."""
    report = validate(
        data_dir,
        workspace.validated,
        window=ValidationWindow(extracted_on=extracted_on),
        progress=progress,
    )
    as_of = as_of or extracted_on
    snapshot = build_snapshot(workspace.validated, as_of, workspace.snapshot(as_of))
    return FeatureRun(
        workspace=workspace.root, generated=generated, validation=report, snapshot=snapshot
    )
