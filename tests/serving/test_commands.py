"""Key management from the CLI: keys work at once, revocation bites, both are audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.audit import AuditLog
from serving.auth import KeyStore, Unauthorized
from serving.cli import app

runner = CliRunner()


def test_keys_are_created_listed_revoked_and_audited(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'service.db'}"
    made = runner.invoke(app, ["keys", "create", "--role", "auditor", "--label", "ops", "--db", db])
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    principal = KeyStore(db).authenticate(f"Bearer {key}")
    assert principal.role == "auditor"
    listed = runner.invoke(app, ["keys", "list", "--db", db])
    assert principal.key_id in listed.output and key not in listed.output
    revoked = runner.invoke(app, ["keys", "revoke", principal.key_id, "--db", db])
    assert revoked.exit_code == 0
    with pytest.raises(Unauthorized):
        KeyStore(db).authenticate(f"Bearer {key}")
    actions = [(e.action, e.payload["key_id"]) for e in AuditLog(db).entries()]
    assert actions == [("key_created", principal.key_id), ("key_revoked", principal.key_id)]
    assert key.split("_")[-1] not in str(AuditLog(db).entries()[0].payload)
    verified = runner.invoke(app, ["audit", "verify", "--db", db])
    assert verified.exit_code == 0 and "intact: 2 entries" in verified.output


def test_bad_key_commands_are_refused_and_change_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'service.db'}"
    for args, message in (
        (["keys", "create", "--role", "root", "--label", "x"], "--role"),
        (["keys", "create", "--role", "platform", "--label", " "], "--label"),
        (["keys", "revoke", "0123456789abcdef"], "KEY_ID"),
        (["audit", "verify", "--anchor", "12:abc"], "--anchor"),
    ):
        result = runner.invoke(app, [*args, "--db", db])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert KeyStore(db).list_keys() == [] and AuditLog(db).head() is None
