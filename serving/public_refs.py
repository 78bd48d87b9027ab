"""Public references: how individual businesses appear in a draw, so that "one public" publishes
no natural person's credit code and the draw stays re-runnable from the published files.

Why references and not masks: a published draw must be re-run by anyone (``riskctl draw verify
FOLDER``) and every key is computed from a unit's code, so ``92371000*********W`` cannot stand
in the published pool — nine ``*`` would make many enterprises one. Instead the desk runs the
draw itself on references: before the inputs are built, every individual business's code
(prefix ``92``) — in the pool, in inspectors' declared conflicts, in ``previous_teams`` and in
``filters.credit_codes`` — is replaced by its reference for this draw. A reference is again 18
characters of the GB 32100 alphabet with a valid check character, so the engine, the canonical
snapshots, the keys, the commitment and verification work unchanged, and pools without
individual businesses give exactly the draw they gave before (``serving/draws/SPEC.md`` §10)::

    "X" + code[1:8] + nine base-31 digits of HMAC-SHA256(key, draw_id ‖ 0x00 ‖ code) + check

``X`` is no registration authority of GB 32100-2015 or its amendments (``1``–``9``, ``A``–``H``,
``N``, ``Y``: :data:`features.credit_code.AUTHORITIES`), so a reference can never equal or be
read as a real code; ``code[1:8]`` keeps category ``2`` and the six-digit region, which masking
shows anyway. References are per draw (the draw id is in the HMAC input: nobody can link two
draws' references of one person by the reference) and only the holder of the key — the
authority — can link a reference to a person. On a collision within a draw (two codes of one
region whose nine digits agree, ~n²/2·31⁻⁹) the later code in sorted order takes the next
candidate, ``draw_id ‖ 0x00 ‖ code ‖ 0x00 ‖ k`` for k = 1, 2, …

The key is configuration, never code and never published: ``RISK_REF_KEY`` (at least 32
characters; its UTF-8 bytes are the key), else ``<workdir>/keys/public_refs.key``, created on
first use with 32 random bytes (hex), mode 0600. The desk keeps every draw's mapping (reference
→ code) privately (:mod:`serving.draw_desk`), so rotating the key changes only later draws'
references.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from features.credit_code import ALPHABET, AUTHORITIES, WEIGHTS, check_character
from features.credit_code import is_individual_business as is_individual
from serving.hmac_batch import hmac_sha256_heads

REF_AUTHORITY = "X"
KEY_ENV = "RISK_REF_KEY"
KEY_FILE = Path("keys") / "public_refs.key"
MAPPING = "public_refs.csv"
MIN_KEY_CHARS = 32
DIGITS = 9
_MODULUS = 31**DIGITS
_WELL_FORMED_92 = re.compile(r"^92[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}$")
_REF_SHAPE = re.compile(r"^X2[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}$")

assert REF_AUTHORITY not in AUTHORITIES  # a reference can never be a real code


def reference_key(workdir: Path) -> bytes:
    """The HMAC key of public references: ``RISK_REF_KEY``, else the workspace's key file.

    The file is created on first use (32 random bytes as hex, mode 0600) without ever being
    visible half-written: it is written under a temporary name and hard-linked into place, so
    two workers starting together agree on one key.
    """
    configured = os.environ.get(KEY_ENV)
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ValueError(
                f"{KEY_ENV} has {len(configured)} characters; use at least {MIN_KEY_CHARS} "
                "(e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return configured.encode("utf-8")
    path = Path(workdir) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process was first: use its key
            pass
        finally:
            tmp.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"{path}: the key has {len(key)} characters; expected {MIN_KEY_CHARS}+")
    return key.encode("ascii")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def _candidate_heads(key: bytes, draw_id: str, codes: list[str]) -> np.ndarray:
    """First 8 bytes (big-endian uint64) of the HMAC of each code's candidate 0, compiled and
    on every core (:mod:`serving.hmac_batch`; :func:`derive` is the plain :mod:`hmac` path)."""
    units = np.frombuffer("".join(codes).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
    return hmac_sha256_heads(key, f"{draw_id}\x00".encode(), units)


def _message(draw_id: str, code: str, counter: int) -> bytes:
    text = f"{draw_id}\x00{code}" if counter == 0 else f"{draw_id}\x00{code}\x00{counter}"
    return text.encode("utf-8")


def derive(key: bytes, draw_id: str, code: str, counter: int = 0) -> str:
    """The reference candidate ``counter`` of one individual business (SPEC.md §10).

    ``v`` = the first 8 bytes of the HMAC, big-endian, modulo 31⁹, written as nine base-31
    digits (most significant first) in the GB 32100 alphabet.
    """
    if not _WELL_FORMED_92.match(code):
        raise ValueError(f"{code!r} is not an individual business's credit code")
    v = int.from_bytes(_hmac(key, _message(draw_id, code, counter))[:8], "big") % _MODULUS
    digits = []
    for _ in range(DIGITS):
        v, d = divmod(v, 31)
        digits.append(ALPHABET[d])
    body = REF_AUTHORITY + code[1:8] + "".join(reversed(digits))
    return body + check_character(body)


def _derive_many(key: bytes, draw_id: str, codes: list[str]) -> list[str]:
    """:func:`derive` (candidate 0) of many codes at once (numpy for the digits and checks)."""
    if not codes:
        return []
    v = _candidate_heads(key, draw_id, codes) % np.uint64(_MODULUS)
    chars = np.empty((len(codes), 18), dtype=np.uint8)
    prefix = np.frombuffer("".join(codes).encode("ascii"), dtype=np.uint8).reshape(-1, 18)
    chars[:, 0] = ord(REF_AUTHORITY)
    chars[:, 1:8] = prefix[:, 1:8]
    alphabet = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    for j in range(16, 7, -1):
        chars[:, j] = alphabet[(v % np.uint64(31)).astype(np.intp)]
        v //= np.uint64(31)
    value = np.full(256, 0, dtype=np.int64)
    value[alphabet] = np.arange(31)
    total = (value[chars[:, :17]] * np.asarray(WEIGHTS, dtype=np.int64)).sum(axis=1)
    chars[:, 17] = alphabet[(31 - total % 31) % 31]
    return chars.view("S18").ravel().astype(str).tolist()


def assign(key: bytes, draw_id: str, codes: Iterable[str]) -> dict[str, str]:
    """Code → reference for every distinct individual business in ``codes`` (others ignored).

    Codes are taken in sorted order; each gets its first candidate no earlier code took, so the
    mapping is one-to-one and depends only on the key, the draw id and the set of codes.
    """
    wanted = sorted({c for c in codes if is_individual(c)})
    for c in wanted:
        if not _WELL_FORMED_92.match(c):
            raise ValueError(f"{c!r} starts with 92 but is not a well-formed credit code")
    first = _derive_many(key, draw_id, wanted)
    if len(set(first)) == len(first):  # the usual case: no collision at all
        return dict(zip(wanted, first, strict=True))
    out: dict[str, str] = {}
    taken: set[str] = set()
    for code, ref in zip(wanted, first, strict=True):
        k = 0
        while ref in taken:
            k += 1
            ref = derive(key, draw_id, code, k)
        taken.add(ref)
        out[code] = ref
    return out


def is_public_ref(value: str) -> bool:
    """Shaped like a public reference (``X2``, region, nine digits) with a valid check."""
    return bool(_REF_SHAPE.match(value)) and check_character(value[:17]) == value[17]


def _conflict_items(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [v for v in value.split(";") if v]
    try:
        return [v for v in value if isinstance(v, str)]  # type: ignore[union-attr]
    except TypeError:
        return []  # the engine's validation names the bad value


@dataclass(frozen=True)
class PublicRefs:
    """One draw's references: ``by_code`` (code → reference) for each individual business."""

    by_code: Mapping[str, str]
    by_ref: Mapping[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_ref", {r: c for c, r in self.by_code.items()})

    def ref(self, code: str) -> str:
        """The reference of ``code``, or the code itself (not an individual business)."""
        return self.by_code.get(code, code)

    def code(self, ref: str) -> str:
        """The code a reference stands for, or ``ref`` itself when it is not one of ours."""
        return self.by_ref.get(ref, ref)


@dataclass(frozen=True)
class Referenced:
    """A draw's inputs with every individual business replaced by its reference."""

    pool: pd.DataFrame
    inspectors: pd.DataFrame
    previous_teams: dict[str, tuple[str, ...]]
    credit_codes: tuple[str, ...] | None  # ``filters.credit_codes`` (None when not given)
    refs: PublicRefs


def pseudonymise(
    key: bytes,
    draw_id: str,
    pool: pd.DataFrame,
    inspectors: pd.DataFrame,
    previous_teams: Mapping[str, tuple[str, ...]],
    credit_codes: Iterable[str] | None = None,
) -> Referenced:
    """Replace individual businesses' codes by their references wherever a draw's inputs name
    them. Refuses (``ValueError``) any code that already starts with ``X``: references are the
    only such units a pool may hold."""
    codes = pool["credit_code"].astype(str)
    conflicts = (
        [_conflict_items(v) for v in inspectors["conflicts"]]
        if "conflicts" in inspectors.columns
        else []
    )
    listed = list(credit_codes) if credit_codes is not None else None
    others = [c for items in conflicts for c in items] + list(previous_teams) + (listed or [])
    named = pd.concat([codes, pd.Series(others, dtype=object)], ignore_index=True).astype(str)
    reserved = named[named.str.startswith(REF_AUTHORITY)]
    if len(reserved):
        raise ValueError(
            f"credit code {reserved.iat[0]!r} starts with {REF_AUTHORITY!r}, which no registration "
            "authority uses and public references reserve"
        )
    individual = named[named.str.startswith("92")]
    refs = PublicRefs(assign(key, draw_id, individual.unique().tolist()))
    if not refs.by_code:
        return Referenced(
            pool, inspectors, dict(previous_teams), tuple(listed) if listed else None, refs
        )
    pool = pool.copy()
    mask = codes.str.startswith("92").to_numpy()
    pool.loc[mask, "credit_code"] = codes[mask].map(refs.by_code).to_numpy()
    if conflicts:
        inspectors = inspectors.copy()
        original = inspectors["conflicts"].tolist()
        inspectors["conflicts"] = [
            ";".join(refs.ref(c) for c in items)
            if isinstance(v, str)
            else (v if not items else [refs.ref(c) for c in items])
            for v, items in zip(original, conflicts, strict=True)
        ]
    return Referenced(
        pool=pool,
        inspectors=inspectors,
        previous_teams={refs.ref(c): tuple(t) for c, t in previous_teams.items()},
        credit_codes=tuple(refs.ref(c) for c in listed) if listed else None,
        refs=refs,
    )


def write_mapping(path: Path, refs: PublicRefs) -> None:
    """The mapping as CSV (``public_ref,credit_code``, sorted by reference), readable by its
    owner only (0600): it links references to persons."""
    pairs = sorted(refs.by_ref.items())
    table = pa.table(
        {"public_ref": [r for r, _ in pairs], "credit_code": [c for _, c in pairs]},
        schema=pa.schema([("public_ref", pa.string()), ("credit_code", pa.string())]),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed
    with os.fdopen(fd, "wb") as out:
        pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="none"))


def read_mapping(path: Path) -> dict[str, str]:
    """Reference → code, as :func:`write_mapping` wrote it (empty when there is no file)."""
    if not Path(path).is_file():
        return {}
    table = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={"public_ref": pa.string(), "credit_code": pa.string()}
        ),
    )
    return dict(zip(table["public_ref"].to_pylist(), table["credit_code"].to_pylist(), strict=True))


def individual_codes_in(inputs) -> list[str]:
    """Individual businesses' codes a draw's inputs (``DrawInputs``) would publish — in the pool
    (the first few), the inspectors' conflicts, ``previous_teams`` and the filters; empty for a
    draw made on references (the guard before publishing)."""
    pool = inputs.pool
    b = pool.code_bytes
    rows = np.flatnonzero((b[:, 0] == ord("9")) & (b[:, 1] == ord("2"))) if len(pool) else []
    found = pool.code_list(np.asarray(rows[:5], dtype=np.intp)) if len(rows) else []
    found += [c for cs in inputs.inspectors.conflicts for c in cs if is_individual(c)]
    found += [c for c in inputs.previous_teams if is_individual(c)]
    found += [c for c in inputs.policy.filters.credit_codes or () if is_individual(c)]
    return sorted(set(found))
