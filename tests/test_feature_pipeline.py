"""The feature pipeline end to end through the real CLI: generate → validate → snapshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.cli import app
from tests.support import hash_tree

runner = CliRunner()
SMALL = 1_500


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    result = runner.invoke(
        app,
        [
            "demo",
            "--workdir",
            str(work),
            "--enterprises",
            str(SMALL),
            "--mlruns",
            str(work / "mlruns"),
            "--no-serve",
        ],
    )
    assert result.exit_code == 0, result.output
    return work


def test_demo_writes_validated_sources_and_a_snapshot(demo_dir: Path) -> None:
    snapshots = list((demo_dir / "snapshots").glob("features_*.parquet"))
    assert len(snapshots) == 1
    features = pd.read_parquet(snapshots[0])
    registry = pd.read_parquet(demo_dir / "validated" / "registry.parquet")
    as_of = pd.Timestamp(snapshots[0].stem.removeprefix("features_"))
    founded = pd.to_datetime(registry["founded_on"])
    closed = pd.to_datetime(registry["closed_on"])
    recorded = pd.to_datetime(registry["recorded_at"])
    registered = registry[
        (founded < as_of) & (recorded < as_of) & (closed.isna() | (closed >= as_of))
    ]
    assert set(features["credit_code"]) == set(registered["credit_code"])
    assert features["credit_code"].is_unique
    assert (demo_dir / "validated" / "validation_report.json").exists()


def test_every_injected_defect_is_quarantined_with_its_reason(demo_dir: Path) -> None:
    truth = pd.read_csv(demo_dir / "raw" / "_truth" / "defects.csv", dtype=str)
    quarantine = pd.read_parquet(demo_dir / "validated" / "quarantine.parquet")
    assert len(truth) > 0
    expected = {
        (r.source, int(r.source_row)): (r.expected_reason, r.expected_column)
        for r in truth.itertuples()
    }
    found = {(r.source, int(r.source_row)): (r.reason, r.column) for r in quarantine.itertuples()}
    # Every defect lands in quarantine with the documented reason, and nothing else does.
    assert found == expected


def test_rerunning_the_demo_reuses_the_data_and_gives_the_same_fingerprint(
    demo_dir: Path,
) -> None:
    before = (demo_dir / "validated" / "validation_report.json").read_text()
    raw_before = hash_tree(demo_dir / "raw")
    result = runner.invoke(
        app,
        [
            "demo",
            "--workdir",
            str(demo_dir),
            "--enterprises",
            str(SMALL),
            "--mlruns",
            str(demo_dir / "mlruns"),
            "--no-serve",
        ],
    )
    assert result.exit_code == 0, result.output
    assert hash_tree(demo_dir / "raw") == raw_before
    import json

    assert (
        json.loads((demo_dir / "validated" / "validation_report.json").read_text())[
            "data_fingerprint"
        ]
        == json.loads(before)["data_fingerprint"]
    )


def test_validate_names_a_missing_file_and_keeps_the_previous_output(
    demo_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "raw"
    shutil.copytree(demo_dir / "raw", broken)
    next(broken.glob("penalties.*")).unlink()
    out = tmp_path / "validated"
    shutil.copytree(demo_dir / "validated", out)
    before = hash_tree(out)
    result = runner.invoke(app, ["validate", str(broken), "--out", str(out)])
    assert result.exit_code == 2
    assert "penalties" in result.output
    assert hash_tree(out) == before


def test_validate_rejects_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no such folder" in result.output
    assert not (tmp_path / "o").exists()


def test_features_rejects_a_bad_date_and_a_folder_that_was_not_validated(
    demo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "f.parquet"
    bad_date = runner.invoke(
        app, ["features", str(demo_dir / "validated"), "--as-of", "2026-13-01", "--out", str(out)]
    )
    assert bad_date.exit_code == 2 and "--as-of" in bad_date.output
    not_validated = runner.invoke(
        app, ["features", str(demo_dir / "raw"), "--as-of", "2026-01-01", "--out", str(out)]
    )
    assert not_validated.exit_code == 2 and "validation_report.json" in not_validated.output
    assert not out.exists()


def test_generate_refuses_a_folder_that_already_holds_sources(demo_dir: Path) -> None:
    before = hash_tree(demo_dir / "raw")
    result = runner.invoke(
        app, ["generate", "--out", str(demo_dir / "raw"), "--enterprises", "500"]
    )
    assert result.exit_code == 2
    assert hash_tree(demo_dir / "raw") == before


def test_generate_rejects_an_unknown_format(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--format", "xlsx"])
    assert result.exit_code == 2 and "--format" in result.output
    assert not (tmp_path / "x").exists()


def test_demo_refuses_to_mix_two_provinces_in_one_workdir(demo_dir: Path) -> None:
    before = hash_tree(demo_dir / "raw")
    result = runner.invoke(
        app,
        [
            "demo",
            "--workdir",
            str(demo_dir),
            "--enterprises",
            "900",
            "--mlruns",
            str(demo_dir / "mlruns"),
            "--no-serve",
        ],
    )
    assert result.exit_code == 2
    assert "--enterprises 1500" in result.output
    assert hash_tree(demo_dir / "raw") == before
