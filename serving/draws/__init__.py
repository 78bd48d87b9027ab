"""The "double random, one public" (双随机、一公开) draw engine: pure, deterministic, verifiable.

Draw the enterprises (risk-weighted per tier, with a uniform control arm) and the inspector
teams from a committed seed, publish the record, and let anyone re-run it. The algorithm is
specified byte for byte in ``SPEC.md`` next to this file; ``test_vectors.json`` holds small
published vectors. Typical use::

    inputs = DrawInputs(..., seed_hash=seed_hash(secret_seed), pool=df, inspectors=staff,
                        policy=DrawPolicy.model_validate(yaml.safe_load(text)))
    publish(commit(inputs))              # before the draw
    result = draw(inputs, secret_seed)   # then reveal the seed with the record
    record = PublishedRecord.from_result(result); record.write(directory)
    assert verify(record).ok
"""

from serving.draws.allocate import DrawRefused
from serving.draws.engine import DrawResult, draw
from serving.draws.inputs import DrawInputs, commit
from serving.draws.keys import seed_hash
from serving.draws.policy import (
    DrawPolicy,
    Exclusions,
    PoolFilter,
    QuotaAllocation,
    RatioAllocation,
    TeamRules,
)
from serving.draws.record import PublishedRecord, VerifyReport, verify

__all__ = [
    "DrawInputs",
    "DrawPolicy",
    "DrawRefused",
    "DrawResult",
    "Exclusions",
    "PoolFilter",
    "PublishedRecord",
    "QuotaAllocation",
    "RatioAllocation",
    "TeamRules",
    "VerifyReport",
    "commit",
    "draw",
    "seed_hash",
    "verify",
]
