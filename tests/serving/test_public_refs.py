"""Public references (SPEC.md §10): individual businesses take part in a draw under a keyed,
per-draw reference, so the published record names no natural person and still verifies."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.credit_code import ALPHABET, AUTHORITIES, check_character, is_valid
from serving import public_refs
from serving.draw_desk import DrawDesk
from serving.draw_desk import draws as draws_table
from serving.draws import PublishedRecord, draw, verify
from serving.draws.pool import PARALLEL_ROWS, PoolTable
from serving.draws.synthetic import EXAMPLE_POLICY, example_inputs, inspectors_frame, pool_frame
from serving.masking import INDIVIDUAL_CODE_IN_TEXT
from serving.public_refs import (
    KEY_ENV,
    assign,
    derive,
    individual_codes_in,
    is_public_ref,
    pseudonymise,
    reference_key,
)
from serving.runtime import BadRequest
from tests.serving.test_siphash import plain_siphash24

KEY = b"spec-example-key-0123456789abcdef"
#: SPEC.md §10's worked example: (code, draw id, candidate) → reference.
SPEC_EXAMPLE = [
    ("92371000MA3MXH0E3W", "2026-MR-07", 0, "X2371000JEY4F4AJ7Q"),
    ("92371000MA3MXH0E3W", "2026-MR-07", 1, "X2371000E1D7AC7B2A"),
    ("92371000MA3MXH0E3W", "2026-MR-08", 0, "X2371000DQCRXYUHDM"),
]


def spec_reference(key: bytes, draw_id: str, code: str, k: int = 0) -> str:
    """SPEC §10 read literally: ``hmac``, SipHash on Python ints, nothing from the module."""
    draw_key = hmac.new(key, b"draws/v1/public-ref\x00" + draw_id.encode(), hashlib.sha256)
    message = code.encode()
    if k:
        message += b"\x00" + str(k).encode()
    v = plain_siphash24(draw_key.digest()[:16], message) % 31**9
    digits = ""
    for _ in range(9):
        v, d = divmod(v, 31)
        digits = ALPHABET[d] + digits
    body = "X" + code[1:8] + digits
    total = sum(ALPHABET.index(ch) * pow(3, i, 31) for i, ch in enumerate(body))
    return body + ALPHABET[(31 - total % 31) % 31]


def individual(code: str) -> str:
    """The same code turned into an individual business's (prefix 92, check recomputed)."""
    body = "92" + code[2:17]
    return body + check_character(body)


def mixed_pool(n: int = 240, seed: int = 5) -> pd.DataFrame:
    """A pool where every other enterprise is an individual business."""
    pool = pool_frame(n, seed=seed, regions=3, industries=4)
    pool["credit_code"] = [individual(c) if i % 2 else c for i, c in enumerate(pool["credit_code"])]
    return pool


# --- the reference itself ---------------------------------------------------------------------
@pytest.mark.parametrize(("code", "draw_id", "k", "ref"), SPEC_EXAMPLE)
def test_the_spec_example_is_reproduced_by_the_module_and_by_the_spec_text(
    code: str, draw_id: str, k: int, ref: str
) -> None:
    assert derive(KEY, draw_id, code, k) == ref
    assert spec_reference(KEY, draw_id, code, k) == ref


def test_a_reference_is_a_valid_gb32100_string_that_no_authority_issues() -> None:
    assert "X" not in AUTHORITIES
    ref = derive(KEY, "d", "92371000MA3MXH0E3W")
    assert len(ref) == 18 and set(ref) <= set(ALPHABET)
    assert ref[17] == check_character(ref[:17])  # the pool validation accepts it
    assert ref[:8] == "X2371000"  # category and region kept, as masking keeps them
    assert is_public_ref(ref) and not is_valid(ref)  # not a well-formed code (authority X)
    assert not INDIVIDUAL_CODE_IN_TEXT.search(ref)
    assert not is_public_ref(ref[:17] + ALPHABET[(ALPHABET.index(ref[17]) + 1) % 31])
    assert not is_public_ref("92371000MA3MXH0E3W")


def test_references_are_keyed_and_per_draw() -> None:
    code = "92371000MA3MXH0E3W"
    a = derive(KEY, "2026-MR-07", code)
    assert derive(KEY, "2026-MR-08", code) != a  # unlinkable across draws
    assert derive(b"another key of at least 32 characters!", "2026-MR-07", code) != a
    assert derive(KEY, "2026-MR-07", code) == a  # deterministic


def test_bulk_assignment_agrees_with_the_one_at_a_time_derivation() -> None:
    codes = mixed_pool(2_000)["credit_code"].tolist()
    mapping = assign(KEY, "bulk", codes)
    individuals = sorted(c for c in codes if c.startswith("92"))
    assert sorted(mapping) == individuals and len(individuals) == 1_000
    assert all(mapping[c] == derive(KEY, "bulk", c) for c in individuals)
    assert len(set(mapping.values())) == len(mapping)
    long_key = b"k" * 100  # keys longer than SHA-256's block are hashed first (RFC 2104)
    assert assign(long_key, "bulk", individuals[:50]) == {
        c: derive(long_key, "bulk", c) for c in individuals[:50]
    }


def test_a_collision_takes_the_next_candidate_deterministically(monkeypatch) -> None:
    a, b, c = (
        "92371000MA3MXH0E3W",
        individual("92371000MA3MXH0E4A"),
        individual("923710001234567890"),
    )
    real = public_refs._candidate_heads

    def colliding(key, draw_id, codes):  # a and b share candidate 0, as 1 in 31^9 pairs would
        return real(key, draw_id, [a if code == b else code for code in codes])

    monkeypatch.setattr(public_refs, "_candidate_heads", colliding)
    mapping = assign(KEY, "d", [b, c, a])
    assert mapping[a] == derive(KEY, "d", a, 0)  # a sorts first and keeps its candidate
    assert mapping[b] == derive(KEY, "d", b, 1) != mapping[a]  # b moves on to candidate 1
    assert mapping[c] == derive(KEY, "d", c, 0)
    assert assign(KEY, "d", [a, c, b]) == mapping  # order of the input does not matter


def test_codes_that_look_like_references_are_refused() -> None:
    pool = mixed_pool(30)
    ref = derive(KEY, "x", "92371000MA3MXH0E3W")
    pool.loc[0, "credit_code"] = ref
    with pytest.raises(ValueError, match="reserve"):
        pseudonymise(KEY, "d", pool, inspectors_frame(6, pool), {})
    with pytest.raises(ValueError, match="not a well-formed"):
        assign(KEY, "d", ["92371000ma3mxh0e3w"])


# --- the key ----------------------------------------------------------------------------------
def test_the_key_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = reference_key(tmp_path)
    path = tmp_path / "keys" / "public_refs.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 64
    assert reference_key(tmp_path) == key  # created once, then read
    assert [p.name for p in path.parent.iterdir()] == ["public_refs.key"]  # no temporary left
    monkeypatch.setenv(KEY_ENV, "x" * 40)
    assert reference_key(tmp_path) == b"x" * 40
    monkeypatch.setenv(KEY_ENV, "too short")
    with pytest.raises(ValueError, match="at least 32"):
        reference_key(tmp_path)


def test_workers_creating_the_key_at_once_agree_on_one(tmp_path, monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv(KEY_ENV, raising=False)
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: reference_key(tmp_path), range(32)))
    assert len(set(keys)) == 1
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["public_refs.key"]


# --- a draw on references ---------------------------------------------------------------------
def referenced_inputs(draw_id: str = "mixed-1", seed: str = "mixed seed", **policy):
    pool = mixed_pool()
    staff = inspectors_frame(24, pool, department="market", seed=5, conflict_rate=0.5)
    previous = {c: ("INS000000", "INS000003") for c in pool["credit_code"][:40]}
    listed = policy.pop("credit_codes", None)
    out = pseudonymise(KEY, draw_id, pool, staff, previous, listed)
    filters = {"credit_codes": list(out.credit_codes)} if out.credit_codes else {}
    inputs = example_inputs(
        seed=seed,
        draw_id=draw_id,
        pool=out.pool,
        inspectors=out.inspectors,
        previous_teams=out.previous_teams,
        policy={**EXAMPLE_POLICY, "filters": filters},
    )
    return pool, staff, out, inputs


def scan(folder: Path) -> list[str]:
    """Every individual business's code in the folder's files (every byte, as UTF-8 text)."""
    return [
        f"{p.name}: {m.group(0)}"
        for p in sorted(folder.iterdir())
        for m in INDIVIDUAL_CODE_IN_TEXT.finditer(p.read_bytes().decode("utf-8"))
    ]


def test_a_draw_on_references_publishes_no_individual_code_and_verifies(tmp_path) -> None:
    *_, inputs = referenced_inputs()
    assert individual_codes_in(inputs) == []
    result = draw(inputs, "mixed seed")
    record = PublishedRecord.from_result(result)
    folder = record.write(tmp_path / "public")
    assert scan(folder) == []
    assert any(is_public_ref(c) for c in result.targets["credit_code"])  # individuals drawn
    read = PublishedRecord.read(folder)
    assert verify(read).ok
    # Tampering still shows, named: one referenced row of the pool moved to another tier.
    lines = (folder / "pool.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("X"))
    fields = lines[row].split(",")
    fields[1] = "A" if fields[1] != "A" else "D"
    lines[row] = ",".join(fields)
    bad = shutil.copytree(folder, tmp_path / "bad")
    (bad / "pool.csv").write_text("\n".join(lines) + "\n")
    report = verify(PublishedRecord.read(bad))
    assert not report.ok and report.first_mismatch.startswith("commitment")


def test_the_plain_python_reading_of_the_spec_reruns_a_draw_on_references() -> None:
    """SPEC §10 adds nothing to re-implement: the independent re-run of §2–§8 reproduces it."""
    from tests.serving.test_draws_spec import assert_spec_reproduces, vector_of

    *_, inputs = referenced_inputs(seed="spec reader")
    result = draw(inputs, "spec reader")
    vector = vector_of(inputs, "spec reader")
    assert sum(r["credit_code"].startswith("X") for r in vector["pool"]) == 120
    assert_spec_reproduces(vector, inputs, result)


def test_conflicts_previous_teams_and_filters_follow_their_enterprises() -> None:
    pool, staff, out, inputs = referenced_inputs()
    refs = out.refs
    result = draw(inputs, "mixed seed")
    declared = dict(zip(staff["inspector_id"], staff["conflicts"], strict=True))
    referenced_conflicts = dict(
        zip(out.inspectors["inspector_id"], out.inspectors["conflicts"], strict=True)
    )
    assert any(any(c.startswith("92") for c in cs) for cs in declared.values())
    for inspector, codes in declared.items():
        assert referenced_conflicts[inspector] == [refs.ref(c) for c in codes]
    for ref, team in result.teams.items():  # nobody inspects an enterprise they declared
        assert all(refs.code(ref) not in declared[m] for m in team)
    assert set(out.previous_teams) == {refs.ref(c) for c in pool["credit_code"][:40]}
    chosen = [*[c for c in pool["credit_code"] if c.startswith("92")][:5], pool.iat[0, 0]]
    *_, filtered = referenced_inputs(credit_codes=chosen)
    assert filtered.policy.filters.credit_codes == tuple(refs.ref(c) for c in chosen)
    targets = set(draw(filtered, "mixed seed").targets["credit_code"])
    assert targets and targets <= {refs.ref(c) for c in chosen}


def test_a_pool_without_individual_businesses_draws_exactly_as_before() -> None:
    before = example_inputs(seed="same")
    pool = pool_frame(200, seed=3, regions=3, industries=4)
    staff = inspectors_frame(24, pool, seed=3, conflict_rate=0.3)
    out = pseudonymise(KEY, "example-1", pool, staff, {"91330101000000000X": ("a", "b")})
    assert out.refs.by_code == {}
    after = example_inputs(seed="same", pool=out.pool, inspectors=out.inspectors)
    a, b = draw(before, "same"), draw(after, "same")
    assert a.commitment == b.commitment
    assert a.targets.equals(b.targets) and a.teams == b.teams


def test_references_differ_between_draws_of_the_same_pool() -> None:
    *_, first = referenced_inputs("draw-a")
    *_, second = referenced_inputs("draw-b")
    a = {c for c in first.pool.frame()["credit_code"] if c.startswith("X")}
    b = {c for c in second.pool.frame()["credit_code"] if c.startswith("X")}
    assert len(a) == len(b) == 120 and not a & b
    assert np.array_equal(
        first.pool.frame()["credit_code"].str[:8].sort_values().to_numpy(),
        second.pool.frame()["credit_code"].str[:8].sort_values().to_numpy(),
    )


def test_a_draw_naming_individuals_in_clear_is_detected() -> None:
    pool = mixed_pool(60)
    inputs = example_inputs(pool=pool, inspectors=inspectors_frame(12, pool, seed=1))
    found = individual_codes_in(inputs)
    assert found and all(c.startswith("92") for c in found)


# --- the desk: SQLite and PostgreSQL ------------------------------------------------------------
@dataclass
class Snapshot:
    """What :meth:`DrawDesk.create` reads of the loaded service state (``runtime.Loaded``)."""

    frame: pd.DataFrame
    tiers: dict
    model: SimpleNamespace
    model_version: str = "risk-model@v3"
    snapshot_version: str = "2026-06-30"


def desk_and_state(url: str, workdir: Path) -> tuple[DrawDesk, Snapshot]:
    pool = mixed_pool(120, seed=9)
    (workdir / "validated").mkdir(parents=True)
    pd.DataFrame(
        {
            "credit_code": pool["credit_code"][:20],
            "inspected_on": pd.Timestamp("2026-01-10").date(),
            "inspector_ids": "INS000001;INS000002",
        }
    ).to_parquet(workdir / "validated" / "inspections.parquet")
    policy = SimpleNamespace(tier_names=lambda scheme: ["A", "B", "C", "D"])
    state = Snapshot(
        frame=pool[["credit_code", "region", "industry"]],
        tiers={"national4": pool["tier"].to_numpy()},
        model=SimpleNamespace(policy=policy, meta={"data_fingerprint": "fp"}),
    )
    return DrawDesk(url, workdir), state


def desk_staff() -> pd.DataFrame:
    """Twelve inspectors of department MR for the desk's pool."""
    staff = inspectors_frame(12, mixed_pool(120, seed=9), department="market", seed=1)
    staff["department"] = staff["region"] + "-MR"
    return staff


def create_on_desk(desk: DrawDesk, state: Snapshot, draw_id: str, staff, seed: str) -> dict:
    """A draw through the desk on its pool, with every enterprise eligible."""
    return desk.create(
        state,
        draw_id=draw_id,
        draw_date=pd.Timestamp("2026-07-15").date(),
        department="MR",
        policy={**EXAMPLE_POLICY, "filters": {}, "exclusions": {}},
        scheme="national4",
        actor="test",
        inspectors=staff.to_dict(orient="records"),
        seed=seed,
    )


def test_the_desk_keeps_references_private_and_resolves_them(
    database, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY.decode())  # a fixed key: the same draw every run
    desk, state = desk_and_state(database.url, tmp_path / "ws")
    pool = state.frame
    person = next(c for c in pool["credit_code"] if c.startswith("92"))
    region = pool.loc[pool["credit_code"] == person, "region"].iat[0]
    staff = desk_staff()
    first = staff.index[staff["region"] == region][0]  # one inspector declares a conflict
    staff["conflicts"] = [[person] if i == first else [] for i in staff.index]
    record = create_on_desk(
        desk, state, "2026-MR-09", staff, "a seed of at least sixteen characters"
    )
    assert individual_codes_in(record.inputs) == []
    fetched = desk.fetch("2026-MR-09")
    targets = {t["credit_code"]: t for t in fetched["targets"]}
    individuals = [c for c in targets if c.startswith("92")]
    assert individuals and set(targets) <= set(pool["credit_code"])
    for code in individuals:
        ref = targets[code]["public_ref"]
        assert is_public_ref(ref) and desk.resolve("2026-MR-09", ref) == code
        assert code in fetched["teams"]
    # Everybody named in the draw is in the private mapping file, one reference per code; the
    # database holds the drawn ones only.
    refs = assign(reference_key(tmp_path / "ws"), "2026-MR-09", pool["credit_code"])
    assert desk.mapping("2026-MR-09") == {r: c for c, r in refs.items()}
    private = tmp_path / "ws" / "draws" / "2026-MR-09" / "public_refs.csv"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    undrawn = next(r for c, r in refs.items() if c not in targets)
    assert desk.resolve("2026-MR-09", undrawn) is None
    published = desk.publish("2026-MR-09")
    public = tmp_path / "ws" / "draws" / "2026-MR-09" / "public"
    assert scan(public) == [] and verify(PublishedRecord.read(public)).ok
    assert not INDIVIDUAL_CODE_IN_TEXT.search(json.dumps(published, default=str))
    assert {t["credit_code"] for t in published["targets"]} == {
        t["public_ref"] for t in fetched["targets"]
    }
    # Results by reference land on the real code (and once only).
    code = individuals[0]
    row = {"draw_id": "2026-MR-09", "inspected_on": pd.Timestamp("2026-08-01").date(),
           "problem_found": True}  # fmt: skip
    desk.ingest([{**row, "credit_code": targets[code]["public_ref"]}], actor="test")
    with pytest.raises(BadRequest, match="already ingested"):
        desk.ingest([{**row, "credit_code": code}], actor="test")


def test_a_draw_made_on_clear_codes_is_not_published(database, tmp_path) -> None:
    desk = DrawDesk(database.url, tmp_path)
    pool = mixed_pool(60)
    inputs = example_inputs(pool=pool, inspectors=inspectors_frame(12, pool, seed=1))
    record = PublishedRecord.from_result(draw(inputs, "example-seed"))
    record.write(tmp_path / "draws" / inputs.draw_id)
    with desk.engine.begin() as conn:
        conn.execute(
            draws_table.insert().values(
                draw_id=inputs.draw_id, created_at="2026-11-23T00:00:00+00:00",
                created_by="test", draw_date=inputs.draw_date, department="market",
                commitment=record.commitment, seed_hash=inputs.seed_hash,
                model_version="m", snapshot_version="s", targets=len(record.targets),
            )
        )  # fmt: skip
    with pytest.raises(BadRequest, match="publishing it would disclose them") as refused:
        desk.publish(inputs.draw_id)
    assert refused.value.status == 409
    assert not (tmp_path / "draws" / inputs.draw_id / "public").exists()


def test_the_province_path_gives_the_one_at_a_time_references() -> None:
    """pseudonymise works on the pool's bytes (compiled, no per-row objects); every
    reference must still be what :func:`derive` (one code at a time) gives, and the mapping file
    lists each pair once, sorted by reference."""
    pool = mixed_pool(600, seed=8)
    staff = inspectors_frame(24, pool, seed=8, conflict_rate=0.5)
    out = pseudonymise(KEY, "bytes-1", pool, staff, {})
    assert isinstance(out.pool, PoolTable)  # validated once, from the bytes already read
    expected = pool.assign(
        credit_code=[
            derive(KEY, "bytes-1", c) if c.startswith("92") else c for c in pool.credit_code
        ]
    )
    assert_same_table(out.pool, PoolTable.from_frame(expected))
    pairs = out.refs.pairs().to_pylist()
    assert [p["public_ref"] for p in pairs] == sorted(out.refs.by_ref) and len(pairs) == 300


def test_a_collision_on_the_province_path_falls_back_to_the_exact_rule(monkeypatch) -> None:
    pool = mixed_pool(60, seed=9)
    a, b = sorted(c for c in pool["credit_code"] if c.startswith("92"))[:2]
    a_row = np.frombuffer(a.encode(), dtype=np.uint8)
    b_row = np.frombuffer(b.encode(), dtype=np.uint8)
    real_heads, real_candidates = public_refs.siphash24_rows, public_refs._candidate_heads

    def heads(key, units):  # b hashes as a would: the same nine digits, same region
        if units.shape[1] == len(b_row):  # candidates k ≥ 1 are longer messages: left alone
            units = units.copy()
            units[(units == b_row).all(axis=1)] = a_row
        return real_heads(key, units)

    def candidates(key, draw_id, codes):
        return real_candidates(key, draw_id, [a if c == b else c for c in codes])

    monkeypatch.setattr(public_refs, "siphash24_rows", heads)
    monkeypatch.setattr(public_refs, "_candidate_heads", candidates)
    if a[2:8] != b[2:8]:
        pytest.skip("the two codes are in different regions: no collision to force")
    out = pseudonymise(KEY, "clash", pool, inspectors_frame(6, pool), {})
    assert isinstance(out.pool, pd.DataFrame)  # the exact rule works on the frame
    refs = dict(zip(pool["credit_code"], out.pool["credit_code"], strict=True))
    assert refs[a] == derive(KEY, "clash", a, 0)
    assert refs[b] == derive(KEY, "clash", b, 1) != refs[a]
    assert len(set(out.pool["credit_code"])) == len(pool)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="92013X" + ALPHABET[10:14] + "IOa", min_size=18, max_size=18)))
def test_the_compiled_shape_check_is_the_pattern_of_an_individual_business_code(texts) -> None:
    texts = ["92371000MA3MXH0E3W", *texts]
    units = np.frombuffer("".join(texts).encode(), dtype=np.uint8).reshape(-1, 18)
    expected = [bool(public_refs._WELL_FORMED_92.match(t)) for t in texts]
    assert public_refs._well_formed_rows(units).tolist() == expected


# --- the pool, validated once -------------------------------------------------------------------
def assert_same_table(got: PoolTable, want: PoolTable) -> None:
    """Field by field, and the canonical snapshot and its hash."""
    assert got.codes.equals(want.codes)
    assert got.code_bytes.dtype == want.code_bytes.dtype
    assert got.code_bytes.flags.c_contiguous
    assert np.array_equal(got.code_bytes, want.code_bytes)
    assert got.code_hash.dtype == want.code_hash.dtype
    assert np.array_equal(got.code_hash, want.code_hash)
    for name in ("tier", "region", "industry", "department"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.names == b.names and a.idx.dtype == b.idx.dtype, name
        assert np.array_equal(a.idx, b.idx), name
    for name in ("last_inspected", "draws_this_year"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert got.canonical_csv() == want.canonical_csv()
    assert got.sha256() == want.sha256()


def with_authority(code: str, authority: str) -> str:
    body = authority + code[1:17]
    return body + check_character(body)


def random_pool(rng: np.random.Generator, n: int, share: float) -> pd.DataFrame:
    """A pool with ``share`` individual businesses, some ``Y`` codes (the only authority after
    ``X``), and a random subset of the optional columns in random forms."""
    pool = pool_frame(n, seed=int(rng.integers(1 << 30)), regions=4, industries=5)
    kinds = rng.random(n)
    pool["credit_code"] = [
        individual(c) if k < share else with_authority(c, "Y") if k > 0.95 else c
        for c, k in zip(pool["credit_code"], kinds, strict=True)
    ]
    if rng.random() < 0.5:
        pool["department"] = np.where(rng.random(n) < 0.2, None, pool["region"] + "-market")
    if rng.random() < 0.3:
        pool = pool.drop(columns="last_inspected_on")
    elif rng.random() < 0.5:
        pool["last_inspected_on"] = pool["last_inspected_on"].dt.strftime("%Y-%m-%d")
    if rng.random() < 0.3:
        pool = pool.drop(columns="draws_this_year")
    elif rng.random() < 0.5:
        pool["draws_this_year"] = pool["draws_this_year"].astype(float).where(rng.random(n) > 0.1)
    if rng.random() < 0.2:
        pool["credit_code"] = pool["credit_code"].astype(
            object if rng.random() < 0.5 else "category"
        )
    if rng.random() < 0.5:
        pool = pool.sort_values("credit_code", ignore_index=True)  # a stored snapshot's order
    elif rng.random() < 0.5:
        pool.index = pool.index * 3 + 7
    return pool


def referenced_by_hand(pool: pd.DataFrame, draw_id: str) -> pd.DataFrame:
    """The referenced frame the engine validated before: each 92 code by its reference."""
    codes = [derive(KEY, draw_id, c) if c.startswith("92") else c for c in pool["credit_code"]]
    return pool.assign(credit_code=pd.Series(codes, index=pool.index, dtype="str"))


@pytest.mark.parametrize("seed", range(24))
def test_the_referenced_table_is_what_the_pool_validation_gives(seed: int) -> None:
    """pseudonymise builds the PoolTable from the codes it has read and checked; it must be
    exactly the table ``PoolTable.from_frame`` makes of the referenced frame."""
    rng = np.random.default_rng(seed)
    share = [0.0, 1.0, 0.6][seed % 3] if seed < 9 else float(rng.random())
    pool = random_pool(rng, int(rng.integers(1, 400)), share)
    staff = inspectors_frame(8, pool, seed=seed, conflict_rate=0.5)
    strangers = [individual(c) for c in pool_frame(3, seed=seed + 100)["credit_code"]]
    staff.loc[0, "conflicts"] = ";".join(strangers[:2])  # individuals outside the pool
    out = pseudonymise(KEY, f"d-{seed}", pool, staff, {strangers[2]: ("a",)})
    assert isinstance(out.pool, PoolTable)
    assert_same_table(out.pool, PoolTable.from_frame(referenced_by_hand(pool, f"d-{seed}")))
    assert out.refs.by_code == {
        c: derive(KEY, f"d-{seed}", c)
        for c in [*pool["credit_code"], *strangers]
        if c.startswith("92")
    }


def test_a_province_sized_pool_encodes_its_columns_on_the_second_core() -> None:
    rng = np.random.default_rng(1)
    pool = pool_frame(PARALLEL_ROWS + 1, seed=1, regions=30, industries=7)
    pool["credit_code"] = [individual(c) if k < 0.6 else c for c, k in
                           zip(pool["credit_code"], rng.random(len(pool)), strict=True)]  # fmt: skip
    pool["department"] = pool["region"] + "-market"
    staff = inspectors_frame(40, pool, seed=1, conflict_rate=0.5)
    for frame in (pool, pool.sort_values("credit_code")):
        out = pseudonymise(KEY, "province", frame, staff, {})
        assert isinstance(out.pool, PoolTable)
        assert_same_table(out.pool, PoolTable.from_frame(referenced_by_hand(frame, "province")))


def spoil(pool: pd.DataFrame, how: str) -> pd.DataFrame:
    pool = pool.copy()
    plain = next(i for i, c in enumerate(pool["credit_code"]) if not c.startswith("92"))
    single = next(i for i, c in enumerate(pool["credit_code"]) if c.startswith("92"))
    code = pool["credit_code"].iat[plain]
    if how == "check character":
        wrong = ALPHABET[(ALPHABET.index(code[17]) + 1) % 31]
        pool.iloc[plain, 0] = code[:17] + wrong
    elif how == "lower case":
        pool.iloc[plain, 0] = code[:10] + "i" + code[11:]
    elif how == "short code":
        pool.iloc[plain, 0] = code[:17]
    elif how == "missing code":
        pool["credit_code"] = pool["credit_code"].astype(object)
        pool.iloc[plain, 0] = None
    elif how == "numbers":
        pool["credit_code"] = np.arange(len(pool)) + 10**17
    elif how == "repeated code":
        pool.iloc[plain + 1, 0] = code
    elif how == "repeated individual":
        pool.iloc[single + 2, 0] = pool["credit_code"].iat[single]
    elif how == "label with a comma":
        pool.iloc[3, 1] = "A,B"
    elif how == "empty tier":
        pool.iloc[3, 1] = ""
    elif how == "bad date":
        pool["last_inspected_on"] = pool["last_inspected_on"].astype(object)
        pool.iloc[2, pool.columns.get_loc("last_inspected_on")] = "yesterday"
    elif how == "negative count":
        pool.iloc[2, pool.columns.get_loc("draws_this_year")] = -1
    elif how == "unknown column":
        pool["owner"] = "x"
    elif how == "missing column":
        pool = pool.drop(columns="tier")
    elif how == "no rows":
        pool = pool.iloc[:0]
    return pool


SPOILS = [
    "check character", "lower case", "short code", "missing code", "numbers", "repeated code",
    "repeated individual", "label with a comma", "empty tier", "bad date", "negative count",
    "unknown column", "missing column", "no rows",
]  # fmt: skip


@pytest.mark.parametrize("how", SPOILS)
def test_a_pool_the_validation_refuses_is_still_refused_with_the_same_message(how: str) -> None:
    """Such a pool is handed over as the referenced frame, so that DrawInputs names the problem
    exactly as it did when it validated every pool itself."""
    pool = spoil(mixed_pool(40, seed=2), how)
    staff = inspectors_frame(6, mixed_pool(40, seed=2), seed=2)
    out = pseudonymise(KEY, "bad", pool, staff, {})
    assert isinstance(out.pool, pd.DataFrame)
    with pytest.raises(ValueError) as got:
        example_inputs(pool=out.pool, inspectors=out.inspectors)
    text = all(isinstance(c, str) for c in pool["credit_code"])
    with pytest.raises(ValueError) as want:
        PoolTable.from_frame(referenced_by_hand(pool, "bad") if text else pool)
    assert str(want.value) in str(got.value)
