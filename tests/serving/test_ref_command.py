"""``riskctl draw ref``: the authority resolves a draw's public reference to the individual
business behind it (and back), every answer is audited without the code, and refusals change
nothing — on SQLite and PostgreSQL, against draws made by the real desk."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.credit_code import check_character
from serving.audit import AuditLog
from serving.cli import app
from serving.draw_desk import DrawDesk
from serving.masking import INDIVIDUAL_CODE_IN_TEXT
from serving.public_refs import KEY_ENV, assign, is_public_ref, reference_key
from tests.serving.test_public_refs import (
    KEY,
    create_on_desk,
    desk_and_state,
    desk_staff,
)

runner = CliRunner()
DRAW, OTHER = "2026-MR-09", "2026-MR-10"


@dataclass
class Made:
    """Two draws of one pool by the desk, and where they are kept."""

    db: str
    database: object  # tests.postgres.Database: direct reads of the stored rows
    workdir: Path
    pool: pd.DataFrame
    targets: dict[str, dict]  # real code → target of DRAW, as the desk answers the platform

    def ref(self, *args: str) -> tuple[int, str]:
        """Run ``riskctl draw ref`` on this workspace: exit code and the whole output."""
        got = runner.invoke(
            app, ["draw", "ref", *args, "--workdir", str(self.workdir), "--db", self.db]
        )
        return got.exit_code, got.output

    def refs_of(self, draw_id: str) -> dict[str, str]:
        """Code → reference of every individual business of the pool, as the desk assigns."""
        return assign(reference_key(self.workdir), draw_id, self.pool["credit_code"])


@pytest.fixture
def made(database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Made:
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    workdir = tmp_path / "ws"
    desk, state = desk_and_state(database.url, workdir)
    staff = desk_staff()
    for draw_id in (DRAW, OTHER):
        create_on_desk(
            desk, state, draw_id, staff, f"a seed of at least sixteen characters for {draw_id}"
        )
    targets = {t["credit_code"]: t for t in desk.fetch(DRAW)["targets"]}
    desk.engine.dispose()
    return Made(database.url, database, workdir, state.frame, targets)


def answer(output: str) -> str:
    """The answer: the last line, alone (for scripts)."""
    return output.strip().splitlines()[-1]


def audited(made: Made) -> list:
    return AuditLog(made.db).entries(action="draw_ref_resolved")


def test_a_drawn_reference_gives_the_code_the_desk_drew_and_back(made: Made) -> None:
    code = next(c for c in made.targets if c.startswith("92"))
    ref = made.targets[code]["public_ref"]
    assert is_public_ref(ref) and ref == made.refs_of(DRAW)[code]
    status, by_ref = made.ref(DRAW, ref)
    assert status == 0, by_ref
    assert answer(by_ref) == code and f"{made.targets[code]['arm']} arm" in by_ref
    status, by_code = made.ref(DRAW, f" {code.lower()} ")  # as typed: spaces, lower case
    assert status == 0, by_code
    assert answer(by_code) == ref
    entries = audited(made)
    assert [(e.payload["public_ref"], e.payload["asked_by"]) for e in entries] == [
        (ref, "public_ref"),
        (ref, "credit_code"),
    ]
    assert f"audit entry {entries[0].seq}" in by_ref and f"audit entry {entries[1].seq}" in by_code
    for e in entries:
        assert set(e.payload) == {"draw_id", "public_ref", "asked_by", "arm"}  # no code field
        assert e.payload["draw_id"] == DRAW and e.payload["arm"] == made.targets[code]["arm"]
        assert e.actor.startswith("cli:") and e.role == "admin"
        assert not INDIVIDUAL_CODE_IN_TEXT.search(json.dumps(e.to_dict()))
    assert runner.invoke(app, ["audit", "verify", "--db", made.db]).exit_code == 0


def test_a_pool_member_that_was_not_drawn_is_found_in_the_private_mapping(made: Made) -> None:
    """Only drawn targets are in ``draw_public_refs``; everybody the draw names is in the 0600
    file, so an individual business may learn its reference and find its row in the pool."""
    refs = made.refs_of(DRAW)
    code = next(c for c in refs if c not in made.targets)
    status, output = made.ref(DRAW, code)
    assert status == 0, output
    assert answer(output) == refs[code] and "not drawn" in output
    status, output = made.ref(DRAW, refs[code])
    assert status == 0 and answer(output) == code
    assert [(e.payload["public_ref"], e.payload["arm"]) for e in audited(made)] == [
        (refs[code], None),
        (refs[code], None),
    ]


def test_a_company_code_is_its_own_public_form_and_is_not_audited(made: Made) -> None:
    company = next(c for c in made.targets if not c.startswith("92"))
    status, output = made.ref(DRAW, company)
    assert status == 0, output
    assert answer(output) == company and "its own public form" in output
    assert "drawn in the" in output
    assert AuditLog(made.db).head() is None


def test_the_same_person_has_another_reference_in_another_draw(made: Made) -> None:
    code = next(c for c in made.targets if c.startswith("92"))
    other = made.refs_of(OTHER)[code]
    assert other != made.targets[code]["public_ref"]
    status, output = made.ref(OTHER, other)
    assert status == 0 and answer(output) == code


def stored(made: Made) -> dict:
    """Every row a look-up could touch, and the private mapping file's bytes and mode."""
    tables = ("draws", "drawn_targets", "draw_public_refs", "audit_log")
    rows = {t: made.database.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}
    mapping = made.workdir / "draws" / DRAW / "public_refs.csv"
    return {**rows, "file": (mapping.read_bytes(), stat.S_IMODE(mapping.stat().st_mode))}


def test_bad_look_ups_are_refused_precisely_and_change_nothing(made: Made) -> None:
    person = next(c for c in made.targets if c.startswith("92"))
    assert made.ref(DRAW, person)[0] == 0  # one audited look-up: the trail is not empty
    before = stored(made)
    assert len(before["audit_log"]) == 1 and before["draw_public_refs"]
    ref = made.targets[person]["public_ref"]
    wrong = "0" if person[17] != "0" else "1"
    stranger = "92" + "440300" + "MA5FXK2P1"  # a well-formed person in no pool of this test
    stranger += check_character(stranger)
    assert stranger not in set(made.pool["credit_code"])
    cases = [
        ((OTHER + "-typo", ref), "DRAW_ID: no draw '2026-MR-10-typo'"),
        ((DRAW, person[:17]), "has 17 characters"),
        ((DRAW, person[:17] + wrong), f"ends in {wrong!r}, its first 17 characters give"),
        ((DRAW, "I" + person[1:]), "'I', outside the GB 32100 alphabet"),
        ((DRAW, ref[:17] + ("0" if ref[17] != "0" else "1")), "fails the GB 32100 check"),
        ((DRAW, "X1" + person[2:17] + check_character("X1" + person[2:17])), "is not one"),
        ((DRAW, made.refs_of(OTHER)[person]), "is it another draw's?"),
        ((DRAW, stranger), "not in its pool, conflicts or previous teams"),
    ]
    for args, message in cases:
        status, output = made.ref(*args)
        assert status == 2, (args, output)
        assert message in " ".join(output.split()), (args, output)
        assert "Traceback" not in output
    assert stored(made) == before


def test_an_unknown_database_is_not_created_by_a_look_up(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "service.db"
    (tmp_path / "nowhere").mkdir()
    args = ["draw", "ref", DRAW, "X2371000NYWBR4XB5Q", "--workdir", str(tmp_path)]
    got = runner.invoke(app, [*args, "--db", f"sqlite:///{db}"])
    assert got.exit_code == 2 and f"no draw {DRAW!r}" in got.output
    assert list((tmp_path / "nowhere").iterdir()) == []
    DrawDesk(f"sqlite:///{db}", tmp_path)  # a database without that draw: refused the same way
    got = runner.invoke(app, [*args, "--db", f"sqlite:///{db}"])
    assert got.exit_code == 2 and f"no draw {DRAW!r}" in got.output
