"""The published record of a draw ("one public"), its files, and independent verification.

Why re-run rather than re-check: the record carries every input (pool and inspector snapshots,
policy, parameters) and the seed, so ``verify`` recomputes the commitment from scratch and
repeats the whole draw; any edit — one target, one team member, the seed, a pool row — shows up
as the first mismatch, named.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serving.draws.engine import DrawResult, draw
from serving.draws.gc_pause import gc_paused
from serving.draws.inputs import DrawInputs, inputs_from_parameters
from serving.draws.keys import seed_hash
from serving.draws.pool_file import read_pool_file

TARGET_COLUMNS = (
    "credit_code",
    "arm",
    "stratum",
    "tier",
    "region",
    "industry",
    "department",
    "pi",
    "pi_fraction",
    "cell_n",
    "cell_N",
    "control_n",
    "control_N",
    "key_risk",
    "key_control",
    "team",
)
COMPARED = ("credit_code", "arm", "stratum", "tier", "pi_fraction", "key_risk", "key_control")


@dataclass(frozen=True, eq=False)
class PublishedRecord:
    """What is published after a draw: inputs, seed, commitment, targets, teams, receipt."""

    inputs: DrawInputs
    seed: str
    commitment: str
    targets: pd.DataFrame
    teams: dict[str, tuple[str, ...]]
    receipt: dict = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: DrawResult) -> PublishedRecord:
        """The record of a draw just made."""
        return cls(
            inputs=result.inputs,
            seed=result.seed,
            commitment=result.commitment,
            targets=result.targets.loc[:, list(TARGET_COLUMNS)].copy(),
            teams=dict(result.teams),
            receipt=dict(result.receipt),
        )

    def document(self) -> dict:
        """JSON-ready record: receipt, parameters, targets and teams (snapshots by hash only)."""
        return {**self._fields(), "targets": json.loads(self.targets.to_json(orient="records"))}

    def _fields(self) -> dict:
        """Everything in :meth:`document` but the targets."""
        return {
            **self.receipt,
            "commitment": self.commitment,
            "seed": self.seed,
            "seed_hash": self.inputs.seed_hash,
            "parameters": self.inputs.parameters(),
            "policy": self.inputs.policy.canonical(),
            "model_version": self.inputs.model_version,
            "data_fingerprint": self.inputs.data_fingerprint,
            "teams": {code: list(team) for code, team in sorted(self.teams.items())},
        }

    def to_json(self) -> str:
        """:meth:`document` as JSON text: sorted keys, UTF-8, one line per field, target and team.

        Why not ``json.dumps(document, indent=...)``: indenting switches Python to its
        pure-Python encoder, and a province's targets take seconds; here each line is written by
        a C encoder (pandas' for the targets, the same numbers :meth:`document` holds), and the
        record still reads, and diffs, one target per line.
        """
        compact = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
        doc = self._fields()
        columns = sorted(self.targets.columns)
        doc["targets"] = (
            self.targets.loc[:, columns]
            .to_json(orient="records", lines=True, force_ascii=False)
            .splitlines()
        )
        fields = []
        for key in sorted(doc):
            value = doc[key]
            if key == "targets" and value:
                text = "[\n  " + ",\n  ".join(value) + "\n ]"
            elif key == "teams" and value:
                rows = (f"{compact(code)}:{compact(team)}" for code, team in value.items())
                text = "{\n  " + ",\n  ".join(rows) + "\n }"
            else:
                text = compact(value)
            fields.append(f" {compact(key)}:{text}")
        return "{\n" + ",\n".join(fields) + "\n}"

    def write(self, directory: Path) -> Path:
        """Write record.json, targets.csv, teams.csv and the canonical pool.csv/inspectors.csv."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "record.json").write_text(self.to_json() + "\n", encoding="utf-8")
        self.targets.to_csv(directory / "targets.csv", index=False, lineterminator="\n")
        teams = "".join(  # codes and inspector ids never need CSV quoting (SPEC.md §3)
            f"{code},{k + 1},{inspector}\n"
            for code, team in sorted(self.teams.items())
            for k, inspector in enumerate(team)
        )
        (directory / "teams.csv").write_text(
            "credit_code,position,inspector_id\n" + teams, encoding="utf-8"
        )
        (directory / "pool.csv").write_bytes(self.inputs.pool.canonical_csv())
        (directory / "inspectors.csv").write_bytes(self.inputs.inspectors.canonical_csv())
        return directory

    @classmethod
    def read(cls, directory: Path) -> PublishedRecord:
        """Load a record written by :meth:`write` (inputs rebuilt from the published files)."""
        directory = Path(directory)
        with gc_paused(), ThreadPoolExecutor(max_workers=1) as reader:
            # The pool is parsed (compiled, without the GIL) while the JSON is decoded here.
            pending = reader.submit(read_pool_file, directory / "pool.csv")
            doc = json.loads((directory / "record.json").read_text(encoding="utf-8"))
            targets = _targets_frame(doc["targets"])
            pool = pending.result()
            inspectors = pd.read_csv(directory / "inspectors.csv", dtype=str, keep_default_na=False)
            inspectors["load"] = inspectors["load"].astype(int)
            inputs = inputs_from_parameters(
                doc["parameters"],
                seed_hash=doc["seed_hash"],
                pool=pool,
                inspectors=inspectors,
                policy=doc["policy"],
                model_version=doc["model_version"],
                data_fingerprint=doc["data_fingerprint"],
            )
            receipt = {k: v for k, v in doc.items() if k not in ("targets", "teams")}
            return cls(
                inputs=inputs,
                seed=doc["seed"],
                commitment=doc["commitment"],
                targets=targets,
                teams={k: tuple(v) for k, v in doc["teams"].items()},
                receipt=receipt,
            )


def _targets_frame(rows: list[dict]) -> pd.DataFrame:
    """The record's target rows as a frame, built column by column (a field missing from a row
    is None here; the comparison with the re-run names it)."""
    if not isinstance(rows, list):
        raise ValueError(f"targets: expected a list of objects, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"targets[{i}]: expected an object, got {type(row).__name__}")
    return pd.DataFrame({name: [row.get(name) for row in rows] for name in TARGET_COLUMNS})


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify`: ``ok``, and every mismatch found (the first one first)."""

    ok: bool
    mismatches: tuple[str, ...]
    commitment: str | None
    targets_checked: int
    teams_checked: int

    @property
    def first_mismatch(self) -> str | None:
        """The first thing that differs, or None."""
        return self.mismatches[0] if self.mismatches else None


def verify(record: PublishedRecord) -> VerifyReport:
    """Re-run the draw from the record's inputs and seed; compare commitment, targets, teams."""
    inputs, problems = record.inputs, []
    if seed_hash(record.seed) != inputs.seed_hash:
        problems.append(
            f"seed: SHA-256 of the published seed is {seed_hash(record.seed)}, the committed "
            f"seed_hash is {inputs.seed_hash}"
        )
        return VerifyReport(False, tuple(problems), None, 0, 0)
    try:
        rerun = draw(inputs, record.seed, fresh_hashes=True)
    except ValueError as exc:
        return VerifyReport(False, (f"re-run refused: {exc}",), None, 0, 0)
    if rerun.commitment != record.commitment:
        problems.append(f"commitment: published {record.commitment}, recomputed {rerun.commitment}")
    problems.extend(_compare_targets(record.targets, rerun.targets))
    problems.extend(_compare_teams(record.teams, rerun.teams))
    return VerifyReport(
        ok=not problems,
        mismatches=tuple(problems),
        commitment=rerun.commitment,
        targets_checked=len(rerun.targets),
        teams_checked=len(rerun.teams),
    )


def _compare_targets(published: pd.DataFrame, rerun: pd.DataFrame) -> list[str]:
    """The first target that differs (row, column, both values), then a row-count difference."""
    out = []
    rows = min(len(published), len(rerun))
    a = {c: _as_text(published[c].iloc[:rows]) for c in COMPARED}
    b = {c: _as_text(rerun[c].iloc[:rows]) for c in COMPARED}
    differs = np.zeros(rows, dtype=bool)
    for c in COMPARED:
        differs |= a[c] != b[c]
    if differs.any():
        i = int(np.argmax(differs))
        col = next(c for c in COMPARED if a[c][i] != b[c][i])
        out.append(
            f"targets[{i}] {col}: published {a[col][i]!r} (credit_code {a['credit_code'][i]}), "
            f"re-run gives {b[col][i]!r} (credit_code {b['credit_code'][i]})"
        )
    if len(published) != len(rerun):
        out.append(f"targets: published {len(published)} rows, re-run gives {len(rerun)}")
    return out


def _as_text(column: pd.Series) -> np.ndarray:
    """A column as Python strings, as ``str()`` prints each value; None where it is missing."""
    text = np.asarray([str(v) for v in column.tolist()], dtype=object)
    text[column.isna().to_numpy()] = None
    return text


def _compare_teams(published: dict, rerun: dict) -> list[str]:
    for code in sorted(set(published) | set(rerun)):
        p, r = tuple(published.get(code, ())), tuple(rerun.get(code, ()))
        if p != r:
            return [f"teams[{code}]: published {list(p)}, re-run gives {list(r)}"]
    return []


def copies_mismatch(folder: Path, record: PublishedRecord) -> str | None:
    """The published ``targets.csv`` is a copy for people; it must say what ``record.json``
    says (the re-run checks the record, this checks the copy). The first difference, or None."""
    path = Path(folder) / "targets.csv"
    if not path.is_file():
        return None
    csv = pd.read_csv(path, dtype=str, keep_default_na=False)
    published = record.targets.astype(str)
    for i, (a, b) in enumerate(zip(csv["credit_code"], published["credit_code"], strict=False)):
        if a != b or csv["arm"].iat[i] != published["arm"].iat[i]:
            return f"targets.csv row {i + 1} ({a}, {csv['arm'].iat[i]}) differs from record.json"
    if len(csv) != len(published):
        return f"targets.csv has {len(csv)} rows, record.json {len(published)}"
    return None
