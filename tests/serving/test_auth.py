"""API keys: created once in plaintext, stored hashed, every bad key is 401, every missing
permission is 403, revocation bites at once in-process and within the TTL elsewhere.

The tests that touch the database run on a SQLite file and on a real PostgreSQL server
(``tests/postgres.py``)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from serving.auth import (
    ROLE_PERMISSIONS,
    Forbidden,
    KeyStore,
    Permission,
    Principal,
    Role,
    Unauthorized,
    authorize,
    check_secret,
    hash_secret,
)
from tests.postgres import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(database: Database) -> Database:
    """An empty SQLite file, then an empty PostgreSQL database (see ``tests/postgres.py``)."""
    return database


@pytest.fixture
def store(db: Database) -> KeyStore:
    return KeyStore(db.url)


def count_queries(store: KeyStore) -> list[str]:
    seen: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda c, cur, s, *a: seen.append(s))
    return seen


def test_create_and_authenticate(store: KeyStore) -> None:
    key = store.create_key("platform", "Inspection platform of Fuzhou")
    assert key.startswith("rk_")
    p = store.authenticate(key)
    assert p == Principal(key.split("_")[1], Role.PLATFORM, "Inspection platform of Fuzhou")
    assert store.authenticate(f"Bearer {key}") == p
    assert store.authenticate(f"bearer   {key}  ") == p


def test_every_key_is_different(store: KeyStore) -> None:
    keys = {store.create_key("auditor", f"a{i}") for i in range(20)}
    assert len(keys) == 20
    assert len({k.split("_")[1] for k in keys}) == 20


def test_keys_survive_reopening(db: Database) -> None:
    key = KeyStore(db.url).create_key("admin", "ops")
    assert KeyStore(db.url).authenticate(key).role is Role.ADMIN


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("Bearer", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("rk_nothex0000000000_" + "a" * 43, "malformed"),
        ("rk_0123456789abcdef_tooshort", "malformed"),
        ("rk_0123456789abcdef_" + "a" * 43 + "!", "malformed"),
        ("rk_0123456789abcdef_" + "a" * 400, "malformed"),
        ("rk_0123456789abcdef_" + "a" * 43, "unknown"),
    ],
)
def test_bad_headers_are_unauthorized(store: KeyStore, header: str | None, reason: str) -> None:
    store.create_key("platform", "p")
    with pytest.raises(Unauthorized) as info:
        store.authenticate(header)
    assert info.value.reason == reason


def test_wrong_secret_is_unauthorized_cold_and_cached(db: Database) -> None:
    key = KeyStore(db.url).create_key("platform", "p")
    key_id, secret = key[3:].split("_", 1)
    wrong = f"rk_{key_id}_{'A' * 43}"
    cold = KeyStore(db.url)
    with pytest.raises(Unauthorized) as info:
        cold.authenticate(wrong)
    assert info.value.reason == "secret"
    assert str(info.value) == "invalid API key"  # the same words as an unknown key
    cold.authenticate(key)  # now cached
    with pytest.raises(Unauthorized) as info:
        cold.authenticate(wrong)
    assert info.value.reason == "secret"
    # a one-character change of a valid secret
    flipped = secret[:-1] + ("B" if secret[-1] != "B" else "C")
    with pytest.raises(Unauthorized):
        cold.authenticate(f"rk_{key_id}_{flipped}")


def test_revoked_key_is_unauthorized_at_once_in_process(store: KeyStore) -> None:
    key = store.create_key("auditor", "a")
    other = store.create_key("auditor", "b")
    key_id = store.authenticate(key).key_id  # cached
    assert store.revoke_key(key_id) is True
    with pytest.raises(Unauthorized) as info:
        store.authenticate(key)
    assert info.value.reason == "revoked"
    assert store.authenticate(other).label == "b"
    assert store.revoke_key(key_id) is False  # already revoked
    with pytest.raises(KeyError):
        store.revoke_key("0123456789abcdef")
    listed = {k.key_id: k for k in store.list_keys()}
    assert listed[key_id].revoked_at is not None
    assert listed[store.authenticate(other).key_id].revoked_at is None


def test_revocation_elsewhere_bites_after_the_ttl(db: Database) -> None:
    clock = Clock()
    worker = KeyStore(db.url, ttl=30, clock=clock)
    key = worker.create_key("platform", "p")
    key_id = worker.authenticate(key).key_id
    KeyStore(db.url).revoke_key(key_id)  # another process
    clock.now += 29
    assert worker.authenticate(key).key_id == key_id  # still cached: the documented window
    clock.now += 2
    with pytest.raises(Unauthorized) as info:
        worker.authenticate(key)
    assert info.value.reason == "revoked"


def test_cached_keys_skip_the_database(store: KeyStore) -> None:
    key = store.create_key("platform", "p")
    queries = count_queries(store)
    store.authenticate(key)
    first = len(queries)
    assert first >= 1
    for _ in range(2000):
        store.authenticate(f"Bearer {key}")
    assert len(queries) == first


def test_keys_are_stored_hashed(db: Database) -> None:
    store = KeyStore(db.url)
    keys = [store.create_key(r, f"label-{r}") for r in Role]
    if db.kind == "sqlite":  # the file and its WAL, byte for byte
        folder, name = db.path.parent, db.path.name
        stored = b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(name))
    else:  # every column of every row, as the server returns them
        stored = json.dumps(db.query("SELECT * FROM api_keys")).encode()
    assert b"label-platform" in stored  # the check below looks at the right bytes
    for key in keys:
        secret = key.split("_", 2)[2]
        assert secret.encode() not in stored
        assert key.encode() not in stored
    hashes = [r["key_hash"] for r in db.query("SELECT key_hash FROM api_keys")]
    assert all(h.startswith("sha256$") for h in hashes)
    assert len(set(hashes)) == len(keys)


def test_scrypt_scheme_and_mixed_schemes_verify(db: Database) -> None:
    slow = KeyStore(db.url, scheme="scrypt")
    key = slow.create_key("admin", "a")
    fast_key = KeyStore(db.url).create_key("auditor", "b")
    fresh = KeyStore(db.url)
    assert fresh.authenticate(key).role is Role.ADMIN
    assert fresh.authenticate(fast_key).role is Role.AUDITOR
    schemes = sorted(r["key_hash"].split("$")[0] for r in db.query("SELECT key_hash FROM api_keys"))
    assert schemes == ["scrypt", "sha256"]
    with pytest.raises(ValueError):
        KeyStore(db.url, scheme="md5")


def test_hash_secret_is_salted() -> None:
    a, b = hash_secret("s"), hash_secret("s")
    assert a != b and check_secret("s", a) and check_secret("s", b)
    assert not check_secret("t", a)
    assert not check_secret("s", "garbage")


def test_create_key_rejects_unknown_roles_and_empty_labels(store: KeyStore) -> None:
    with pytest.raises(ValueError):
        store.create_key("superuser", "x")
    with pytest.raises(ValueError):
        store.create_key("admin", "  ")


# -- permissions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.PLATFORM, {Permission.TIERS, Permission.DRAWS}),
        (Role.AUDITOR, {Permission.EXPLANATIONS, Permission.AUDIT, Permission.REPORTS}),
        (Role.ADMIN, set(Permission)),
    ],
)
def test_roles_hold_exactly_their_permissions(
    store: KeyStore, role: Role, allowed: set[Permission]
) -> None:
    principal = store.authenticate(store.create_key(role, "x"))
    for perm in Permission:
        if perm in allowed:
            store.authorize(principal, perm)
            authorize(principal, perm.value)  # names work as well as members
        else:
            with pytest.raises(Forbidden, match=perm.value):
                store.authorize(principal, perm)


def test_only_admin_sees_unmasked_codes() -> None:
    assert [r for r in Role if Permission.UNMASKED in ROLE_PERMISSIONS[r]] == [Role.ADMIN]


def test_unknown_permission_is_a_programming_error(store: KeyStore) -> None:
    principal = store.authenticate(store.create_key("admin", "x"))
    with pytest.raises(ValueError):
        store.authorize(principal, "launch_missiles")
