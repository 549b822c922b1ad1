"""The ``ppe-edge`` wheel: exactly the edge layer, installable and runnable alone, no TensorFlow.

The layer is the import-linter contract with id ``edge-layer`` in ``pyproject.toml``. The wheel's
file list is checked against grimp's view of the package (the import graph import-linter itself
builds), and the installed wheel is run with nothing else of ``ppe`` importable and TensorFlow and
Keras blocked: what the module image installs (environments/docker/Dockerfile.*).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import grimp
import pytest

from ppe.errors import ConfigError
from ppe.iotedge import package

REPO = Path(__file__).resolve().parents[3]
TOOLS_PYTHON = REPO / ".tools" / "bin" / "python"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.build_edge_wheel(REPO, tmp_path_factory.mktemp("dist"))


def _contract_modules() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    (layer,) = [c for c in contracts if c.get("id") == "edge-layer"]
    assert "tensorflow" in layer["forbidden_modules"]  # the contract make lint checks
    modules: list[str] = layer["source_modules"]
    return modules


def _wheel_modules(wheel: Path) -> set[str]:
    names = zipfile.ZipFile(wheel).namelist()
    return {
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in names
        if name.startswith("ppe/") and name.endswith(".py")
    }


def test_the_wheel_holds_the_layer_its_parents_and_nothing_else(wheel: Path) -> None:
    graph = grimp.build_graph("ppe")
    expected: set[str] = set()
    for name in _contract_modules():
        expected |= {name, *graph.find_descendants(name)}
        parts = name.split(".")
        expected |= {".".join(parts[:depth]) for depth in range(1, len(parts))}
    assert _wheel_modules(wheel) == expected
    # Data files beside the layer's packages travel with them (the module's page).
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ppe/edge/page.html" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_layer_imports_nothing_of_ppe_outside_the_wheel(wheel: Path) -> None:
    graph = grimp.build_graph("ppe")
    inside = _wheel_modules(wheel)
    outside = {
        (module, imported)
        for module in inside
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] == "ppe" and imported not in inside
    }
    assert outside == set()


def test_metadata_comes_from_the_project_and_the_build_is_reproducible(
    wheel: Path, tmp_path: Path
) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    archive = zipfile.ZipFile(wheel)
    version = project["version"]
    assert wheel.name == f"ppe_edge-{version}-py3-none-any.whl"
    metadata = archive.read(f"ppe_edge-{version}.dist-info/METADATA").decode()
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if "Requires-Dist" in line]
    assert requires == [*project["dependencies"], *project["optional-dependencies"]["edge"]]
    assert not [r for r in requires if r.startswith(("tensorflow", "keras", "mlflow", "azure-ai"))]
    entry_points = archive.read(f"ppe_edge-{version}.dist-info/entry_points.txt").decode()
    assert "ppe = ppe.cli.edge_module:main" in entry_points
    again = package.build_edge_wheel(REPO, tmp_path)
    assert again.read_bytes() == wheel.read_bytes()


def test_installed_alone_ppe_edge_run_works_and_tensorflow_is_unimportable(
    wheel: Path, tmp_path: Path
) -> None:
    if not TOOLS_PYTHON.is_file():
        pytest.fail(f"{TOOLS_PYTHON} is missing: run `make setup` (it makes the .tools venv)")
    target = tmp_path / "site"
    subprocess.run(
        [str(TOOLS_PYTHON), "-m", "pip", "--python", sys.executable, "install", "--quiet",
         "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # TensorFlow and Keras exist in this environment; the blocker makes them unimportable.
    blocker = tmp_path / "blocker"
    for name in ("tensorflow", "keras"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    # The wheel first on the path: `ppe` is the installed layer, not the repository's package.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(target)])}
    script = target / "bin" / "ppe"
    result = subprocess.run(
        [str(script), "edge", "run", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "FRAME_SOURCE" in result.stdout and "SCORE_TOKEN" in result.stdout
    top = subprocess.run([str(script), "bogus"], env=env, capture_output=True, text=True)
    assert "invalid choice: 'bogus' (choose from 'edge')" in top.stderr, top.stderr
    manifest = subprocess.run(
        [str(script), "edge", "manifest", "--help"], env=env, capture_output=True, text=True
    )
    assert manifest.returncode == 2 and "invalid choice: 'manifest'" in manifest.stderr
    check = """
import importlib, importlib.metadata, pkgutil, sys
import ppe
assert ppe.__file__.startswith(sys.argv[1]), ppe.__file__
modules = [m.name for m in pkgutil.walk_packages(ppe.__path__, "ppe.")]
for name in modules:
    importlib.import_module(name)
for name in ("ppe.train", "ppe.export", "ppe.iotedge", "ppe.cli.edge", "tensorflow"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} imported")
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
print(importlib.metadata.version("ppe-edge"), len(modules))
"""
    imported = subprocess.run(
        [sys.executable, "-c", check, str(target)],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-3000:]
    version, count = imported.stdout.split()
    assert version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert int(count) == len(_wheel_modules(wheel)) - 1  # every module but `ppe` itself


def _repo_copy(tmp_path: Path, contract: str) -> Path:
    (tmp_path / "src" / "ppe").mkdir(parents=True)
    (tmp_path / "src" / "ppe" / "__init__.py").write_text("")
    shutil.copy(REPO / "src" / "ppe" / "errors.py", tmp_path / "src" / "ppe" / "errors.py")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "ppe"\nversion = "1.2.3"\nrequires-python = ">=3.11"\n'
        'dependencies = ["numpy"]\n[project.optional-dependencies]\nedge = ["ai-edge-litert"]\n'
        + contract
    )
    return tmp_path


def test_a_pyproject_without_the_layer_contract_is_a_clear_error(tmp_path: Path) -> None:
    repo = _repo_copy(tmp_path, '[[tool.importlinter.contracts]]\nname = "x"\nid = "other"\n')
    with pytest.raises(
        ConfigError, match=r"no \[\[tool.importlinter.contracts\]\] with id = 'edge-layer'"
    ):
        package.build_edge_wheel(repo, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_a_layer_module_that_does_not_exist_is_named(tmp_path: Path) -> None:
    contract = (
        '[[tool.importlinter.contracts]]\nid = "edge-layer"\n'
        'source_modules = ["ppe.errors", "ppe.gone"]\n'
    )
    repo = _repo_copy(tmp_path, contract)
    with pytest.raises(ConfigError, match=r"lists 'ppe.gone', but neither .*gone.py"):
        package.build_edge_wheel(repo, tmp_path / "dist")
    assert not (tmp_path / "dist").exists()
