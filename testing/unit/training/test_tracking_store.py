"""A tracking store written by another MLflow version gets a clear error, and is left alone."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from ppe.errors import PpeError
from ppe.train.tracking import check_store


def test_a_store_from_another_mlflow_schema_names_the_file_and_the_fix(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    # Create a real store in another process (MLflow caches stores per process), then make its
    # schema revision one this MLflow does not know, as a newer MLflow would have left it.
    subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f0f0f0f0f0f0'")
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    with pytest.raises(PpeError) as error:
        check_store(mlflow, uri)

    message = str(error.value)
    assert str(database) in message
    assert f"mv {database} {database}.old" in message
    assert "found version f0f0f0f0f0f0" in message
    assert "mlflow db upgrade" in message and "tracking.uri" in message
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_a_current_store_opens(tmp_path: Path) -> None:
    check_store(mlflow, f"sqlite:///{tmp_path / 'fresh.db'}")
    assert (tmp_path / "fresh.db").is_file()
