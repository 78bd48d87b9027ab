"""Where a run keeps its files: one working folder, a fixed layout inside.

The default working folder is ``.data/`` in the current directory (git-ignored); set
``RISK_WORKDIR`` or pass ``--workdir`` to put it elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DEFAULT_WORKDIR = Path(".data")


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def from_env(cls, root: Path | None = None) -> Workspace:
        return cls(Path(root or os.environ.get("RISK_WORKDIR") or DEFAULT_WORKDIR))

    @property
    def raw(self) -> Path:
        """Raw source files as a province hands them over (or as generated)."""
        return self.root / "raw"

    @property
    def validated(self) -> Path:
        """Typed, checked sources plus the quarantine and the validation report."""
        return self.root / "validated"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot(self, as_of: date) -> Path:
        """Population features as of one date."""
        return self.snapshots / f"features_{as_of.isoformat()}.parquet"
