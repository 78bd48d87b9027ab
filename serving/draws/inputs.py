"""What a draw is computed from, and the commitment that binds it before the seed is revealed.

Why commit–reveal: the authority publishes ``commitment`` (which includes the SHA-256 of a
secret seed) before the draw, then the seed with the result. Nobody — the authority included —
can pick a seed after seeing its outcome without the published commitment failing to match.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from serving.draws.policy import DrawPolicy, Label
from serving.draws.pool import PoolTable
from serving.draws.teams import InspectorTable

SPEC_VERSION = "draws/1"


class DrawInputs(BaseModel):
    """Pool, inspectors, policy and parameters of one draw (everything except the seed).

    ``pool`` and ``inspectors`` are given as DataFrames and stored validated (sorted, typed);
    ``seed_hash`` is :func:`serving.draws.keys.seed_hash` of the secret seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    draw_id: Label
    draw_date: date
    department: Label
    seed_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    pool: PoolTable
    inspectors: InspectorTable
    policy: DrawPolicy
    previous_teams: dict[str, tuple[str, ...]] = {}
    model_version: str = Field(min_length=1, max_length=200)
    data_fingerprint: str = Field(min_length=1, max_length=200)

    def parameters(self) -> dict:
        """The draw's own parameters, JSON-ready (part of the commitment)."""
        return {
            "draw_id": self.draw_id,
            "draw_date": self.draw_date.isoformat(),
            "department": self.department,
            "previous_teams": {k: sorted(v) for k, v in sorted(self.previous_teams.items())},
        }


def inputs_from_parameters(parameters: dict, **fields: object) -> DrawInputs:
    """Inputs from their published :meth:`DrawInputs.parameters` (a record, a test vector) and
    the remaining fields (seed hash, snapshots, policy, model version, data fingerprint)."""
    return DrawInputs(
        draw_id=parameters["draw_id"],
        draw_date=parameters["draw_date"],
        department=parameters["department"],
        previous_teams={k: tuple(v) for k, v in parameters["previous_teams"].items()},
        **fields,
    )


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII kept as is); floats as Python's repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def commitment_document(
    inputs: DrawInputs, pool_sha256: str | None = None, cached: bool = True
) -> dict:
    """The object whose canonical JSON is hashed into the commitment (SPEC.md §6)."""
    return {
        "spec": SPEC_VERSION,
        "seed_hash": inputs.seed_hash,
        "pool_sha256": pool_sha256 or inputs.pool.sha256(),
        "inspectors_sha256": inputs.inspectors.sha256(cached),
        "policy": inputs.policy.canonical(),
        "model_version": inputs.model_version,
        "data_fingerprint": inputs.data_fingerprint,
        "parameters": inputs.parameters(),
    }


def commit(inputs: DrawInputs, pool_sha256: str | None = None, cached: bool = True) -> str:
    """Hex SHA-256 of the canonical JSON of :func:`commitment_document`: publish before the draw.

    ``cached=False`` recomputes the snapshot hashes (what :func:`~serving.draws.verify` does).
    """
    document = commitment_document(inputs, pool_sha256, cached)
    return hashlib.sha256(canonical_json(document)).hexdigest()
