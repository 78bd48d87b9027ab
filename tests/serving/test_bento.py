"""`bentoml build` turns the service into a bento with our code and pinned packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bentoml_build_packages_the_service(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag", str(ROOT)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = tmp_path / "bentoml" / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["name"] == "credit-risk-supervision"
    src = bento / "src"
    for path in ("serving/service.py", "serving/runtime.py", "training/risk_model.py",
                 "features/build.py", "training/policies/tiers.yaml"):  # fmt: skip
        assert (src / path).is_file(), path
    assert not (src / "tests").exists() and not (src / "benchmarks").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==1.4.39" in requirements and "lightgbm==4.7.0" in requirements
    pins = set(requirements.split())
    assert {"psycopg==3.3.9", "psycopg-binary==3.3.9"} <= pins  # it runs on PostgreSQL too
