"""API keys, roles and permissions of the service.

Who may do what is defined here and only here: :class:`Permission` names every guarded action,
:data:`ROLE_PERMISSIONS` maps each :class:`Role` to its permissions. ``platform`` (inspection
platforms) gets tiers and draws; ``auditor`` gets explanations, the audit log and reports;
``admin`` (ingestion, promotion) may do everything, including seeing individual businesses'
codes unmasked (:data:`Permission.UNMASKED`, see :mod:`serving.masking`).

Keys are configuration, never code: they live in the ``api_keys`` table of the service database
(the same SQLAlchemy URL as the audit log). :meth:`KeyStore.create_key` returns the plaintext
``rk_<key_id>_<secret>`` exactly once; only ``sha256$<salt>$<digest>`` (or ``scrypt$…``) is
stored, so a copy of the database does not hand out working keys.

Why salted SHA-256 by default rather than a slow KDF: the secret is 32 random bytes
(``secrets.token_urlsafe``), 256 bits of entropy, so there is nothing for key stretching to
protect against — slow hashes exist for guessable passwords. A fast hash keeps a cold
verification in microseconds and removes a denial-of-service lever (a slow hash lets anyone
burn server CPU by sending wrong secrets). ``scheme="scrypt"`` is available where policy demands
a KDF; each stored hash names its scheme, so both verify side by side.

Speed: the service authenticates thousands of requests per second. A verified key is cached in
memory for ``ttl`` seconds, keyed by ``key_id`` with the SHA-256 of its secret, so repeat
requests cost one hash and a constant-time compare and no database round trip. Revocation
drops the cache entry at once in this process; other processes (other workers) notice within
``ttl`` seconds — keep it short (default 30 s).

Failures: :class:`Unauthorized` (HTTP 401: missing, malformed, unknown, wrong secret, revoked)
and :class:`Forbidden` (HTTP 403: authenticated, but the role lacks the permission). Messages
are safe to return to the client: unknown key and wrong secret read the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, select

from serving.audit import create_schema, database_url, make_engine


class Role(StrEnum):
    PLATFORM = "platform"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    TIERS = "tiers"  # tiers and scores of enterprises
    DRAWS = "draws"  # random inspection draws
    EXPLANATIONS = "explanations"  # contributions, reasons, linked records
    AUDIT = "audit"  # read the audit log, verify the chain
    REPORTS = "reports"  # model and enterprise reports
    INGEST = "ingest"  # load and validate source data
    PROMOTE = "promote"  # promote a model to champion
    UNMASKED = "unmasked"  # see individual businesses' codes (personal data) in clear


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PLATFORM: frozenset({Permission.TIERS, Permission.DRAWS}),
    Role.AUDITOR: frozenset({Permission.EXPLANATIONS, Permission.AUDIT, Permission.REPORTS}),
    Role.ADMIN: frozenset(Permission),
}


def has_permission(role: str | Role | None, permission: str | Permission) -> bool:
    """Whether ``role`` holds ``permission``; unknown roles hold nothing (fail closed)."""
    perm = Permission(permission)  # an unknown permission name is a programming error
    try:
        return perm in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


class Unauthorized(Exception):
    """No valid API key (HTTP 401). ``reason``: missing, malformed, unknown, secret, revoked."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Forbidden(Exception):
    """A valid key whose role lacks the permission (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: what the audit log records as actor and role."""

    key_id: str
    role: Role
    label: str


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed for administrators (never the secret or its hash)."""

    key_id: str
    role: Role
    label: str
    created_at: str
    revoked_at: str | None


def authorize(principal: Principal, permission: str | Permission) -> None:
    """Raise :class:`Forbidden` unless the principal's role holds ``permission``."""
    perm = Permission(permission)
    if not has_permission(principal.role, perm):
        raise Forbidden(f"role {principal.role} may not use {perm} (key {principal.key_id})")


metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("key_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("revoked_at", Text),
)

PREFIX = "rk_"
_KEY_ID_BYTES = 8  # 16 hex characters
_SECRET_BYTES = 32  # 43 URL-safe characters
_KEY_PATTERN = re.compile(r"rk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_MAX_HEADER = 256

# scrypt parameters when that scheme is chosen: n=2**14, r=8 (≈16 MiB, tens of milliseconds).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_secret(secret: str, scheme: str = "sha256", salt: bytes | None = None) -> str:
    """The stored form of a secret: ``<scheme>$<params…>$<salt>$<digest>`` (salt per key)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    raw = secret.encode("utf-8")
    if scheme == "sha256":
        return f"sha256${_b64(salt)}${_b64(hashlib.sha256(salt + raw).digest())}"
    if scheme == "scrypt":
        digest = hashlib.scrypt(raw, salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
        return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown hash scheme {scheme!r} (sha256 or scrypt)")


def check_secret(secret: str, stored: str) -> bool:
    """Recompute with the stored scheme and salt; compare in constant time."""
    parts = stored.split("$")
    raw = secret.encode("utf-8")
    if parts[0] == "sha256" and len(parts) == 3:
        digest = hashlib.sha256(_unb64(parts[1]) + raw).digest()
    elif parts[0] == "scrypt" and len(parts) == 6:
        n, r, p = (int(x) for x in parts[1:4])
        digest = hashlib.scrypt(raw, salt=_unb64(parts[4]), n=n, r=r, p=p, dklen=32)
    else:
        return False
    return hmac.compare_digest(digest, _unb64(parts[-1]))


def parse_key(header_value: str | None) -> tuple[str, str]:
    """``(key_id, secret)`` from ``Bearer rk_…`` or a bare ``rk_…`` (e.g. an X-API-Key header)."""
    if header_value is None or not header_value.strip():
        raise Unauthorized("missing API key", "missing")
    value = header_value.strip()
    if len(value) > _MAX_HEADER:
        raise Unauthorized("malformed API key", "malformed")
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        value = rest.strip()
    m = _KEY_PATTERN.fullmatch(value)
    if m is None:
        raise Unauthorized("malformed API key (expected rk_<key_id>_<secret>)", "malformed")
    return m.group(1), m.group(2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """API keys in the service database: create, list, revoke, authenticate, authorize."""

    def __init__(
        self,
        url: str | Path,
        *,
        ttl: float = 30.0,
        scheme: str = "sha256",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        hash_secret("probe", scheme)  # fail now on an unknown scheme
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        create_schema(self.engine, metadata)
        self.ttl = ttl
        self.scheme = scheme
        self._clock = clock
        # key_id → (sha256 of the verified secret, principal, expiry on ``clock``)
        self._cache: dict[str, tuple[bytes, Principal, float]] = {}
        self._revoked_here: set[str] = set()
        self._lock = threading.Lock()
        self._dummy_hash = hash_secret(secrets.token_urlsafe(_SECRET_BYTES), scheme)

    def create_key(self, role: str | Role, label: str) -> str:
        """A new key for ``role``; the plaintext is returned once and never stored."""
        role = Role(role)
        if not label or not label.strip():
            raise ValueError("a key needs a label (who or what holds it)")
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        with self.engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    key_hash=hash_secret(secret, self.scheme),
                    role=role.value,
                    label=label.strip(),
                    created_at=_now(),
                    revoked_at=None,
                )
            )
        return f"{PREFIX}{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> bool:
        """Revoke at once (this process) or within ``ttl`` (others). False if already revoked."""
        with self._lock:
            self._revoked_here.add(key_id)  # no authenticate in flight may cache it from now on
            self._cache.pop(key_id, None)
        with self.engine.begin() as conn:
            row = conn.execute(
                select(api_keys.c.revoked_at).where(api_keys.c.key_id == key_id)
            ).first()
            if row is None:
                raise KeyError(f"no API key {key_id}")
            if row.revoked_at is not None:
                return False
            conn.execute(
                api_keys.update().where(api_keys.c.key_id == key_id).values(revoked_at=_now())
            )
        return True

    def list_keys(self) -> list[KeyInfo]:
        """Every key, oldest first, without secrets."""
        cols = [c for c in api_keys.columns if c.name != "key_hash"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).order_by(api_keys.c.created_at, api_keys.c.key_id))
            return [
                KeyInfo(r.key_id, Role(r.role), r.label, r.created_at, r.revoked_at) for r in rows
            ]

    def authenticate(self, header_value: str | None) -> Principal:
        """The principal behind an ``Authorization``/``X-API-Key`` value, or :class:`Unauthorized`."""
        key_id, secret = parse_key(header_value)
        fingerprint = hashlib.sha256(secret.encode("utf-8")).digest()
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now < cached[2]:
            # A key's secret never changes: a different secret for a cached key id is wrong.
            if hmac.compare_digest(cached[0], fingerprint):
                return cached[1]
            raise Unauthorized("invalid API key", "secret")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    api_keys.c.key_hash, api_keys.c.role, api_keys.c.label, api_keys.c.revoked_at
                ).where(api_keys.c.key_id == key_id)
            ).first()
        if row is None:
            check_secret(secret, self._dummy_hash)  # same work as a wrong secret: no timing hint
            raise Unauthorized("invalid API key", "unknown")
        if not check_secret(secret, row.key_hash):
            raise Unauthorized("invalid API key", "secret")
        if row.revoked_at is not None:
            raise Unauthorized(f"API key {key_id} was revoked at {row.revoked_at}", "revoked")
        principal = Principal(key_id, Role(row.role), row.label)
        with self._lock:
            if key_id not in self._revoked_here:
                self._cache[key_id] = (fingerprint, principal, now + self.ttl)
        return principal

    def authorize(self, principal: Principal, permission: str | Permission) -> None:
        """Raise :class:`Forbidden` unless the principal's role holds ``permission``."""
        authorize(principal, permission)
