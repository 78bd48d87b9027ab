"""Unified social credit code (统一社会信用代码), GB 32100-2015.

Eighteen characters: registration authority (1), organisation category (1), administrative
division (6), organisation code (9), check character (1). The check character is computed
over the first 17 characters with weights 3^(i-1) mod 31 in the 31-character alphabet that
leaves out I, O, Z, S and V. Because 31 is prime and no weight is 0 mod 31, every
single-character substitution and every adjacent transposition changes the check character.

We write this ourselves: python-stdnum rejects valid codes whose authority is A, N or Y.
"""

from __future__ import annotations

import re

import numpy as np

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}

# Registration authorities (登记管理部门码) in GB 32100-2015 and its amendments.
AUTHORITIES = "123456789ABCDEFGHNY"
CODE_PATTERN = re.compile(r"^[1-9A-HNY][0-9A-HJ-NP-RTUWXY][0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}$")

#: Codes of individual businesses (个体工商户) begin with 92; they identify a person.
INDIVIDUAL_BUSINESS_PREFIX = "92"


def check_character(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a code."""
    if len(first17) != 17:
        raise ValueError(f"need 17 characters, got {len(first17)}")
    try:
        total = sum(_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the GB 32100 alphabet") from None
    return ALPHABET[(31 - total % 31) % 31]


def set_check_characters(codes: np.ndarray) -> np.ndarray:
    """Write the check character of every row of an (n, 18) byte matrix of codes in place
    (column 17, from columns 0-16 in the alphabet) — the vector form of
    :func:`check_character`; returns the matrix."""
    alphabet = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    value = np.zeros(256, dtype=np.int64)
    value[alphabet] = np.arange(len(ALPHABET))
    total = value[codes[:, :17]] @ np.asarray(WEIGHTS, dtype=np.int64)
    codes[:, 17] = alphabet[(31 - total % 31) % 31]
    return codes


def is_well_formed(code: str) -> bool:
    """Eighteen characters in the right classes (the check character is not verified)."""
    return bool(CODE_PATTERN.match(code))


def is_valid(code: str) -> bool:
    """Well formed and the check character matches."""
    return is_well_formed(code) and check_character(code[:17]) == code[17]


def is_individual_business(code: str) -> bool:
    """Individual businesses identify a natural person: treat their codes as personal data."""
    return code.startswith(INDIVIDUAL_BUSINESS_PREFIX)


def mask(code: str) -> str:
    """Mask an individual business's code for roles that do not need it (keeps region)."""
    if not is_individual_business(code):
        return code
    return code[:8] + "*" * 9 + code[17:]


def sql_check_character(column: str) -> str:
    """A SQL expression (DuckDB and Spark) computing the check character of ``column``.

    Used by validation so that the check runs inside the engine over millions of rows.
    """
    terms = " + ".join(
        f"(instr('{ALPHABET}', substr({column}, {i + 1}, 1)) - 1) * {w}"
        for i, w in enumerate(WEIGHTS)
    )
    return f"substr('{ALPHABET}', (31 - (({terms}) % 31)) % 31 + 1, 1)"
