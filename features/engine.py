"""Engine settings shared by every DuckDB connection the feature layer opens."""

from __future__ import annotations

import contextlib

import duckdb


def quiet_progress(con: duckdb.DuckDBPyConnection) -> None:
    """Turn DuckDB's own progress bar off (we draw ours); Jupyter without ipywidgets refuses
    the setting, and there the default is harmless."""
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_progress_bar = false")
