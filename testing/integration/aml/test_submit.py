"""``ppe aml submit`` against a recorded fake ``MLClient`` (no workspace exists offline).

The fake records what the command registers and submits and plays back a final job status; the
job it receives is the real azure-ai-ml PipelineJob the command built.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from ppe.aml.settings import AmlSettings
from ppe.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")


class FakeMLClient:
    def __init__(self, status: str, stream_error: Exception | None = None) -> None:
        self.registered: list[tuple[str, str]] = []
        self.known: set[tuple[str, str]] = set()
        self.submitted: list[tuple[Any, str]] = []
        self.streamed: list[str] = []
        self.status = status
        self.stream_error = stream_error
        self.environments = SimpleNamespace(get=self._get_env, create_or_update=self._create_env)
        self.jobs = SimpleNamespace(
            create_or_update=self._submit, stream=self._stream, get=self._get_job
        )

    def _get_env(self, name: str, version: str) -> Any:
        if (name, version) not in self.known:
            raise ResourceNotFoundError(f"{name}:{version}")
        return SimpleNamespace(name=name, version=version)

    def _create_env(self, environment: Any) -> Any:
        self.registered.append((environment.name, environment.version))
        self.known.add((environment.name, environment.version))
        return environment

    def _submit(self, job: Any, experiment_name: str) -> Any:
        self.submitted.append((job, experiment_name))
        return SimpleNamespace(name="job-123", studio_url="https://ml.azure.com/runs/job-123")

    def _stream(self, name: str) -> None:
        self.streamed.append(name)
        if self.stream_error is not None:
            raise self.stream_error

    def _get_job(self, name: str) -> Any:
        return SimpleNamespace(name=name, status=self.status)


def _submit(
    monkeypatch: pytest.MonkeyPatch, env_file: Path, tmp_path: Path, client: FakeMLClient
) -> int:
    import ppe.aml.client

    seen: list[AmlSettings] = []

    def fake_ml_client(settings: AmlSettings, *args: Any, **kwargs: Any) -> FakeMLClient:
        seen.append(settings)
        return client

    monkeypatch.setattr(ppe.aml.client, "ml_client", fake_ml_client)
    status = main(
        [
            *("aml", "submit", "--config", "smoke", "--env-file", str(env_file)),
            *("--code-dir", str(tmp_path / "code"), "--experiment", "ppe-test"),
        ]
    )
    assert [settings.workspace for settings in seen] == ["mlw-ppe-dev-ab12"]
    return status


def test_submit_registers_environments_once_and_waits(
    monkeypatch: pytest.MonkeyPatch, env_file: Path, tmp_path: Path
) -> None:
    client = FakeMLClient("Completed")
    assert _submit(monkeypatch, env_file, tmp_path, client) == 0
    assert sorted(name for name, _ in client.registered) == ["ppe-cpu", "ppe-train-gpu"]
    job, experiment = client.submitted[0]
    assert experiment == "ppe-test"
    assert job.jobs["train"].compute == "gpu-cluster"
    assert client.streamed == ["job-123"]
    # A second submission with unchanged environments registers nothing.
    assert _submit(monkeypatch, env_file, tmp_path, client) == 0
    assert len(client.registered) == 2


@pytest.mark.parametrize("status", ["Failed", "Canceled"])
def test_submit_exits_non_zero_unless_completed(
    monkeypatch: pytest.MonkeyPatch, env_file: Path, tmp_path: Path, status: str
) -> None:
    client = FakeMLClient(status, stream_error=RuntimeError(f"job {status}\ndetails"))
    assert _submit(monkeypatch, env_file, tmp_path, client) == 1
