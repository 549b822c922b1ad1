"""The Azure ML registry backend.

No workspace is reachable offline, so the backend runs against ``FakeMLClient`` below: a fake
that records every call and imitates the service's visible behaviour (auto-incremented integer
versions on ``create_or_update`` without a version, tag updates on an existing version,
``ResourceNotFoundError`` for unknown models, and the SDK's ``<download_path>/<name>/<folder>``
download layout). The ``Model`` entities themselves are real azure-ai-ml objects built offline.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # azure-ai-ml's marshmallow schemas emit deprecation warnings at import time (not ours; the
    # suite turns warnings into errors).
    warnings.simplefilter("ignore", DeprecationWarning)
    from azure.ai.ml.entities import Model
    from azure.core.exceptions import ResourceNotFoundError

from ppe.config import load_config
from ppe.registry import RegistryError, get_registry
from ppe.registry.azureml import AzureMLRegistry, build_model_entity

NAME = "ppe-hardhat-yolov3"
# Entity serialisation inside azure-ai-ml warns about its own marshmallow usage.
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")


class FakeModelOperations:
    """Records calls; stores model versions in memory."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.store: dict[str, dict[int, Model]] = {}
        self.files: dict[tuple[str, int], Path] = {}

    def create_or_update(self, model: Model) -> Model:
        self.calls.append(("create_or_update", {"model": copy.deepcopy(model)}))
        versions = self.store.setdefault(model.name, {})
        stored = copy.deepcopy(model)
        if model.version is None:
            number = max(versions, default=0) + 1
            stored.version = str(number)
            self.files[(model.name, number)] = Path(model.path)
            stored.path = (
                f"azureml://locations/x/workspaces/w/models/{model.name}/versions/{number}"
            )
        else:
            number = int(model.version)
            if number not in versions:
                raise AssertionError("the fake only updates existing versions")
        versions[number] = stored
        return copy.deepcopy(stored)

    def get(self, name: str, version: str | None = None) -> Model:
        self.calls.append(("get", {"name": name, "version": version}))
        try:
            return copy.deepcopy(self.store[name][int(str(version))])
        except KeyError:
            raise ResourceNotFoundError(f"{name}:{version} not found") from None

    def list(self, name: str | None = None) -> list[Model]:
        self.calls.append(("list", {"name": name}))
        if name not in self.store:
            raise ResourceNotFoundError(f"{name} not found")
        return [copy.deepcopy(m) for m in self.store[name].values()]

    def download(self, name: str, version: str, download_path: str = ".") -> None:
        self.calls.append(
            ("download", {"name": name, "version": version, "download_path": download_path})
        )
        source = self.files[(name, int(version))]
        shutil.copytree(source, Path(download_path) / name / source.name)


class FakeMLClient:
    def __init__(self) -> None:
        self.models = FakeModelOperations()
        self.workspace_name = "fake-workspace"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_model(folder: Path, content: str = "weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "model.weights.h5").write_text(content)
    return folder


@pytest.fixture
def client() -> FakeMLClient:
    return FakeMLClient()


@pytest.fixture
def registry(client: FakeMLClient) -> AzureMLRegistry:
    return AzureMLRegistry(client, clock=Clock())


def test_model_entity_is_built_offline(tmp_path: Path) -> None:
    entity = build_model_entity(
        make_model(tmp_path / "m"),
        NAME,
        tags={"map50": "0.61", "run_id": "r7"},
        properties={"split": "test"},
    )
    assert isinstance(entity, Model)
    data = entity._to_dict()
    assert data["name"] == NAME and data["type"] == "custom_model"
    assert data["tags"] == {"map50": "0.61", "run_id": "r7"}
    assert data["properties"] == {"split": "test"}
    assert entity.version is None  # the workspace assigns the next version
    with pytest.raises(RegistryError, match="reserved for the champion marker"):
        build_model_entity(tmp_path / "m", NAME, tags={"champion": "true"})
    with pytest.raises(RegistryError, match="must be strings"):
        build_model_entity(tmp_path / "m", NAME, tags={"map50": 0.61})  # type: ignore[dict-item]


def test_register_calls_create_or_update_with_a_custom_model(
    registry: AzureMLRegistry, client: FakeMLClient, tmp_path: Path
) -> None:
    assert registry.list(NAME) == []
    version = registry.register(make_model(tmp_path / "m1"), NAME, tags={"map50": "0.5"})
    assert version.version == 1 and not version.champion
    kind, args = client.models.calls[-1]
    assert kind == "create_or_update"
    sent = args["model"]
    assert sent.type == "custom_model" and sent.path == str(tmp_path / "m1")
    assert sent.tags == {"map50": "0.5"} and sent.version is None
    assert registry.register(make_model(tmp_path / "m2"), NAME).version == 2
    assert [v.version for v in registry.list(NAME)] == [1, 2]
    assert registry.get(NAME, 1).tags == {"map50": "0.5"}


def test_champion_is_a_tag_moved_new_first_then_old_cleared(
    registry: AzureMLRegistry, client: FakeMLClient, tmp_path: Path
) -> None:
    for i in range(3):
        registry.register(make_model(tmp_path / f"m{i}"), NAME)
    assert registry.champion(NAME) is None
    registry.set_champion(NAME, 1)
    client.models.calls.clear()
    moved = registry.set_champion(NAME, 3)
    assert moved.champion and moved.version == 3
    updates = [args["model"] for kind, args in client.models.calls if kind == "create_or_update"]
    # First the new champion is tagged, then the old one is untagged (never zero champions).
    assert [(int(m.version), m.tags.get("champion")) for m in updates] == [(3, "true"), (1, None)]
    stored = client.models.store[NAME]
    assert [n for n, m in stored.items() if m.tags.get("champion") == "true"] == [3]
    assert registry.get(NAME, "champion").version == 3
    assert "champion" not in registry.get(NAME, 3).tags  # the marker is not a user tag
    assert {v.version: v.champion for v in registry.list(NAME)} == {1: False, 2: False, 3: True}


def test_mid_move_two_tagged_versions_resolve_to_the_latest(
    registry: AzureMLRegistry, client: FakeMLClient, tmp_path: Path
) -> None:
    for i in range(2):
        registry.register(make_model(tmp_path / f"m{i}"), NAME)
    stored = client.models.store[NAME]
    # The state between the two steps of a move (or after a writer died in between).
    stored[2].tags = {"champion": "true", "champion_since": "2025-06-01T00:00:05.000000+00:00"}
    stored[1].tags = {"champion": "true", "champion_since": "2025-06-01T00:00:09.000000+00:00"}
    assert registry.champion(NAME).version == 1  # type: ignore[union-attr]
    # The next move clears both leftovers.
    registry.set_champion(NAME, 2)
    assert [n for n, m in stored.items() if m.tags.get("champion") == "true"] == [2]


def test_newer_concurrent_champion_is_left_in_place(
    registry: AzureMLRegistry, client: FakeMLClient, tmp_path: Path
) -> None:
    for i in range(2):
        registry.register(make_model(tmp_path / f"m{i}"), NAME)
    # Another writer tagged version 2 "in the future" relative to our clock.
    client.models.store[NAME][2].tags = {
        "champion": "true",
        "champion_since": "2099-01-01T00:00:00+00:00",
    }
    registry.set_champion(NAME, 1)
    assert client.models.store[NAME][2].tags.get("champion") == "true"
    assert registry.champion(NAME).version == 2  # type: ignore[union-attr]


def test_download_flattens_the_sdk_layout(
    registry: AzureMLRegistry, client: FakeMLClient, tmp_path: Path
) -> None:
    registry.register(make_model(tmp_path / "m1", "one"), NAME)
    registry.set_champion(NAME, 1)
    out = registry.download(NAME, "champion", tmp_path / "dest")
    assert (out / "model.weights.h5").read_text() == "one"
    assert [p.name for p in out.iterdir()] == ["model.weights.h5"]
    kind, args = client.models.calls[-1]
    assert kind == "download" and args["version"] == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "m1"]  # staging removed


def test_unknown_versions_are_clear_errors(registry: AzureMLRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no champion"):
        registry.get(NAME, "champion")
    registry.register(make_model(tmp_path / "m"), NAME)
    with pytest.raises(RegistryError, match="has no version 4"):
        registry.get(NAME, 4)
    with pytest.raises(RegistryError, match="has no version 4"):
        registry.set_champion(NAME, 4)


def test_get_registry_builds_the_azureml_backend(client: FakeMLClient) -> None:
    config = load_config("smoke", ["registry.backend=azureml"])
    chosen = get_registry(config, ml_client=client)
    assert isinstance(chosen, AzureMLRegistry) and chosen.ml_client is client
