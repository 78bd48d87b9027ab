"""The same feature definitions run on Spark and give exactly the DuckDB result."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, build_features_spark
from tests.features.test_build import random_province, write

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        pytest.skip("no JVM on this machine")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("feature-parity")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_and_duckdb_agree_on_every_feature(spark, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tables = random_province(rng, n=80)
    folder = write(tmp_path / "v", tables)
    codes = [r["credit_code"] for r in tables["registry"]]
    pairs = pd.DataFrame(
        {
            "credit_code": codes * 3,
            "as_of": [date(2019, 3, 1)] * 80 + [date(2021, 7, 15)] * 80 + [date(2023, 12, 31)] * 80,
        }
    )
    duck = build_features(folder, pairs)
    sp = build_features_spark(spark, folder, pairs)
    sp = sp.sort_values(["credit_code", "as_of"]).reset_index(drop=True)
    assert list(sp.columns) == list(duck.columns)
    assert len(sp) == len(duck) == 240
    for col in duck.columns:
        a, b = duck[col], sp[col]
        if col == "as_of":
            a, b = pd.to_datetime(a), pd.to_datetime(b)
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(
                a.astype(float), b.astype(float), rtol=0, atol=1e-9, equal_nan=True, err_msg=col
            )
        else:
            assert (
                a.astype(object).where(a.notna(), None).tolist()
                == b.astype(object).where(b.notna(), None).tolist()
            ), col
    assert duck["penalty_count_5y"].sum() > 0
