"""The embedded registry: versions, tags, champion, download, and refusal of damaged folders."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ppe.config import load_config
from ppe.registry import RegistryError, get_registry
from ppe.registry.local import LocalRegistry

NAME = "ppe-hardhat-yolov3"


def make_model(folder: Path, content: str = "weights") -> Path:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "model.weights.h5").write_text(content)
    (folder / "sub" / "config.yaml").write_text("name: test\n")
    return folder


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry")


def test_versions_start_at_one_and_increase(registry: LocalRegistry, tmp_path: Path) -> None:
    assert registry.list(NAME) == []
    first = registry.register(make_model(tmp_path / "m1"), NAME, tags={"map50": "0.5"})
    second = registry.register(make_model(tmp_path / "m2"), NAME, tags={"map50": "0.6"})
    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in registry.list(NAME)] == [1, 2]
    assert registry.get(NAME, 2).tags == {"map50": "0.6"}
    assert not first.champion and registry.champion(NAME) is None


def test_layout_on_disk(registry: LocalRegistry, tmp_path: Path) -> None:
    registry.register(
        make_model(tmp_path / "m"), NAME, tags={"run_id": "r1"}, properties={"p": "q"}
    )
    model_dir = registry.root / NAME
    index = json.loads((model_dir / "index.json").read_text())
    assert index["versions"] == [1] and index["champion"] is None and index["name"] == NAME
    meta = json.loads((model_dir / "1" / "meta.json").read_text())
    assert meta["tags"] == {"run_id": "r1"} and meta["properties"] == {"p": "q"}
    assert set(meta["files"]) == {"model.weights.h5", "sub/config.yaml"}
    assert (model_dir / "1" / "model" / "model.weights.h5").read_text() == "weights"
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".staging-")]


def test_champion_moves(registry: LocalRegistry, tmp_path: Path) -> None:
    for i in range(3):
        registry.register(make_model(tmp_path / f"m{i}"), NAME)
    registry.set_champion(NAME, 2)
    assert registry.get(NAME, "champion").version == 2
    moved = registry.set_champion(NAME, 3)
    assert moved.champion and moved.version == 3
    flags = {v.version: v.champion for v in registry.list(NAME)}
    assert flags == {1: False, 2: False, 3: True}
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.set_champion(NAME, 9)


def test_download_by_version_and_champion(registry: LocalRegistry, tmp_path: Path) -> None:
    registry.register(make_model(tmp_path / "m1", "one"), NAME)
    registry.register(make_model(tmp_path / "m2", "two"), NAME)
    with pytest.raises(RegistryError, match="no champion yet"):
        registry.download(NAME, "champion", tmp_path / "out0")
    registry.set_champion(NAME, 1)
    out = registry.download(NAME, "champion", tmp_path / "out1")
    assert (out / "model.weights.h5").read_text() == "one"
    assert (out / "sub" / "config.yaml").exists()
    assert (registry.download(NAME, 2, tmp_path / "out2") / "model.weights.h5").read_text() == "two"
    with pytest.raises(RegistryError, match="not an empty folder"):
        registry.download(NAME, 2, tmp_path / "out2")


def test_tampered_model_files_are_detected_on_download(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    version = registry.register(make_model(tmp_path / "m"), NAME)
    assert version.source is not None
    (Path(version.source) / "model.weights.h5").write_text("changed")
    with pytest.raises(RegistryError, match=r"model files differ.*model\.weights\.h5"):
        registry.download(NAME, 1, tmp_path / "out")


def test_bad_inputs(registry: LocalRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="missing or holds no files"):
        registry.register(tmp_path / "nothing", NAME)
    with pytest.raises(RegistryError, match="must be strings"):
        registry.register(make_model(tmp_path / "m"), NAME, tags={"map50": 0.5})  # type: ignore[dict-item]
    with pytest.raises(RegistryError, match="model name"):
        registry.register(make_model(tmp_path / "m"), "../escape")
    with pytest.raises(RegistryError, match="not registered"):
        registry.get(NAME, 1)


def test_get_registry_picks_the_backend(tmp_path: Path) -> None:
    config = load_config("smoke", [f"registry.root={tmp_path / 'r'}"])
    chosen = get_registry(config)
    assert isinstance(chosen, LocalRegistry) and chosen.root == tmp_path / "r"
    with pytest.raises(Exception, match="no Azure ML client"):
        get_registry(load_config("smoke", ["registry.backend=azureml"]))


# ---------------------------------------------------------------------------------------------
# damaged by hand: a clear message naming the file and the fix, and nothing changed


def damage_cases() -> list[tuple[str, str]]:
    return [
        ("corrupt-index", r"index\.json: not valid JSON.*Fix: restore"),
        ("index-wrong-champion", r"index\.json: inconsistent content.*champion 7"),
        (
            "version-folder-deleted",
            r"2: listed in index\.json but missing.*remove 2 from 'versions'",
        ),
        ("unlisted-folder", r"9: version folder\(s\) \[9\] are not listed"),
        ("corrupt-meta", r"meta\.json: not valid JSON"),
        ("meta-wrong-version", r"meta\.json: says name .*version 5"),
        ("index-deleted", r"index\.json: missing, but version folders \[1, 2\] exist"),
    ]


def damage(model_dir: Path, kind: str) -> None:
    index = model_dir / "index.json"
    if kind == "corrupt-index":
        index.write_text('{"schema_version": 1, "versions": [1, 2')
    elif kind == "index-wrong-champion":
        data = json.loads(index.read_text())
        data["champion"] = 7
        index.write_text(json.dumps(data))
    elif kind == "version-folder-deleted":
        shutil.rmtree(model_dir / "2")
    elif kind == "unlisted-folder":
        shutil.copytree(model_dir / "1", model_dir / "9")
    elif kind == "corrupt-meta":
        (model_dir / "1" / "meta.json").write_text("not json")
    elif kind == "meta-wrong-version":
        meta = json.loads((model_dir / "2" / "meta.json").read_text())
        meta["version"] = 5
        (model_dir / "2" / "meta.json").write_text(json.dumps(meta))
    elif kind == "index-deleted":
        index.unlink()


@pytest.mark.parametrize(("kind", "match"), damage_cases())
def test_damaged_registry_is_refused_and_left_unchanged(
    registry: LocalRegistry, tmp_path: Path, kind: str, match: str
) -> None:
    registry.register(make_model(tmp_path / "m1"), NAME)
    registry.register(make_model(tmp_path / "m2"), NAME)
    registry.set_champion(NAME, 1)
    damage(registry.root / NAME, kind)
    before = tree_hash(registry.root)
    operations = [
        lambda: registry.list(NAME),
        lambda: registry.get(NAME, 1),
        lambda: registry.champion(NAME),
        lambda: registry.set_champion(NAME, 1),
        lambda: registry.register(make_model(tmp_path / "m3"), NAME),
        lambda: registry.download(NAME, 1, tmp_path / "dl"),
    ]
    for operation in operations:
        with pytest.raises(RegistryError, match=match) as error:
            operation()
        assert "model registry damaged" in str(error.value)
        assert "Nothing was changed" in str(error.value)
        assert tree_hash(registry.root) == before
    assert not (tmp_path / "dl").exists()
