"""Adapters: real public datasets mapped onto our source contracts.

An adapter is configuration (a YAML file beside it) plus a thin mapping that writes one raw
file per contract source. Everything after that — validation and quarantine, features,
labels, training, evaluation — is the path a province's own data takes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd

from features.contracts import SOURCES

#: Where the team keeps the real datasets, relative to some folder above the repository.
SHARED_DATA = Path("shared") / "data"


def locate_dataset(name: str, given: Path | None = None) -> Path:
    """The folder of a real dataset: ``given``, else ``$RISK_REAL_DATA/<name>``, else the
    nearest ``shared/data/<name>`` above the repository — or above the checkout it was cloned
    from, so that a fresh clone made for CI (``git clone /work/main /tmp/x``) still finds the
    team's data beside the original checkout."""
    if given is not None:
        candidates = [Path(given)]
    elif os.environ.get("RISK_REAL_DATA"):
        candidates = [Path(os.environ["RISK_REAL_DATA"]) / name]
    else:
        here = Path(__file__).resolve().parent
        roots = [*here.parents]
        origin = _local_origin(here)
        if origin is not None:
            roots += [origin, *origin.parents]
        candidates = list(dict.fromkeys(p / SHARED_DATA / name for p in roots))
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"dataset {name!r} not found (looked in {', '.join(str(c) for c in candidates[:3])}"
        f"{' …' if len(candidates) > 3 else ''}); pass --data or set RISK_REAL_DATA"
    )


def _local_origin(inside: Path) -> Path | None:
    """The checkout this repository was cloned from, when ``origin`` is a local folder."""
    try:
        url = subprocess.run(
            ["git", "-C", str(inside), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or not Path(url).is_absolute():
        return None
    origin = Path(url).resolve()
    return origin if origin.is_dir() else None


def write_sources(frames: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, int]:
    """Write every contract source as ``<source>.csv``; sources without records get a header.

    Columns are written in contract order; a mapped frame with a column the contract does not
    know (or missing one) is a bug in the adapter, so it raises.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, source in SOURCES.items():
        frame = frames.get(name, pd.DataFrame(columns=source.column_names))
        if set(frame.columns) != set(source.column_names):
            raise ValueError(
                f"{name}: adapter columns {sorted(frame.columns)} differ from the contract's "
                f"{sorted(source.column_names)}"
            )
        frame[source.column_names].to_csv(out_dir / f"{name}.csv", index=False)
        rows[name] = len(frame)
    return rows
