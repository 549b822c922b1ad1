"""The notebook walkthrough: every notebook runs top to bottom, and git holds them without outputs.

The notebooks execute with nbclient on a ``python3`` kernel spec written into a temporary
JUPYTER_PATH that points at this interpreter, so the result does not depend on the user's Jupyter
set-up. They run in order on their default profile (``tour``, what a new user gets) in one shared
outputs folder, as a user would run them, and the model they train must work: mAP@0.5 above 0.5 on
its own test split. 04_edge runs once more alone on ``smoke`` in a fresh folder, where it has to
create its data and model itself. ``PPE_NOTEBOOK_SUBMIT`` is unset: 05 must submit nothing by
default. Every notebook's stderr must stay within a small budget (the notebook mode's promise).
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from ppe.config import load_config
from ppe.run import graph

#: About this many seconds on 2 cores: scheduled first (testing/conftest.py).
pytestmark = pytest.mark.heavy(290)

REPO_ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = REPO_ROOT / "notebooks"
ORDER = (
    "00_setup",
    "01_data",
    "02_training",
    "03_evaluation",
    "04_edge",
    "05_azure",
)
# The tour's training cell takes minutes alone, and far longer on a busy shared agent.
CELL_TIMEOUT_S = 2700
DEFAULT_PROFILE = "tour"
# Lines a notebook may write to stderr: the notebook mode leaves warnings a reader should see,
# and nothing else (TensorFlow's start-up lines, progress bars and INFO records are filtered).
STDERR_BUDGET_LINES = 4


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A python3 kernel spec on this interpreter, and the notebooks' environment variables."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ppe test suite)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(jupyter))
        patch.delenv("PPE_NOTEBOOK_PROFILE", raising=False)
        patch.delenv("PPE_NOTEBOOK_SUBMIT", raising=False)  # the default must not submit
        patch.delenv("PPE_NOTEBOOK_MODEL_NAME", raising=False)
        patch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as for a user
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("TF_CONFIG", raising=False)
        yield jupyter


def execute(name: str, outputs: Path, profile: str | None = None) -> Any:
    """Run one notebook with cwd notebooks/ and PPE_NOTEBOOK_OUTPUTS=outputs; return it executed."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PPE_NOTEBOOK_OUTPUTS", str(outputs))
        if profile is not None:
            patch.setenv("PPE_NOTEBOOK_PROFILE", profile)
        client = NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
        )
        client.execute()
    return notebook


def text_output(notebook: Any) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output["text"])
            elif "data" in output:
                parts.append(
                    output["data"].get("text/markdown") or output["data"].get("text/plain", "")
                )
    return "\n".join(parts)


def stderr_lines(notebook: Any) -> list[str]:
    return [
        line
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
        for line in output["text"].splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def walkthrough(kernel_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared outputs folder of the in-order run."""
    return tmp_path_factory.mktemp("walkthrough")


@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_in_order(name: str, walkthrough: Path) -> None:
    notebook = execute(name, walkthrough)
    run = walkthrough / "notebooks" / DEFAULT_PROFILE
    output = text_output(notebook)
    assert "Traceback" not in output
    noise = stderr_lines(notebook)
    assert len(noise) <= STDERR_BUDGET_LINES, f"{name} wrote to stderr:\n" + "\n".join(noise)
    if name == "00_setup":
        assert (run / "config.yaml").is_file()
        assert "did you mean 'train.epochs'?" in output
    elif name == "01_data":
        assert (run / "data" / "ImageSets" / "Main" / "train.txt").is_file()
        assert len(list((run / "real" / "Annotations").glob("*.xml"))) == 12
        for problem in ("truncated", "outside the", "unknown class 'vest'", "across splits"):
            assert problem in output, problem
    elif name == "02_training":
        summary = json.loads((run / "train" / "train.json").read_text())
        epochs = load_config(DEFAULT_PROFILE).train.epochs
        assert summary["mlflow_run_id"] and len(summary["history"]["loss"]) == epochs
        assert (walkthrough / "mlflow.db").is_file()
        assert "epoch_loss" in output
        assert "data: reused (same inputs" in output and "train: ran (no earlier output)" in output
    elif name == "03_evaluation":
        assert "train: reused (same inputs" in output
        metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
        # The default walkthrough shows a detector that works on its own test split.
        assert metrics["split"] == "test" and metrics["map50"] > 0.5, metrics["map50"]
        assert json.loads((run / "gate_first_model.json").read_text())["promote"] is True
        gate = json.loads((run / "gate" / "gate.json").read_text())
        # A real decision: the trained model beats the untrained stand-in.
        assert gate["champion_score"] is not None and gate["promote"] is True
        assert "refused: the champion's metrics were computed on different" in output
        assert (run / "report" / "index.html").is_file() and (run / "report" / "ap.png").is_file()
    elif name == "04_edge":
        backends = json.loads((run / "export" / "metrics.json").read_text())["backends"]
        assert set(backends) == {"keras", "litert_fp32", "litert_int8"}
        manifest = json.loads((run / "iotedge" / "deployment.amd64.json").read_text())
        assert (
            "ppedetector"
            in manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
        )
        assert '"type": "no_helmet"' in output
        assert "export: ran (no earlier output)" in output
        assert "ppe edge manifest --platform amd64 --tag" in "".join(
            cell.source for cell in notebook.cells
        )
    elif name == "05_azure":
        job = yaml.safe_load((run / "aml" / "pipeline_job.yml").read_text())
        assert set(job["jobs"]) == set(graph.step_names())
        assert "champion" in job["jobs"]
        assert "validation errors: none" in output
        assert "not submitting: SUBMIT = 'never'" in output
        assert "MODEL_NAME=ppe-hardhat-notebook-sandbox" in output
        assert "aml data upload" in output and "aml submit" in output


def test_edge_notebook_runs_alone(kernel_env: Path, tmp_path: Path) -> None:
    notebook = execute("04_edge", tmp_path, profile="smoke")
    assert "train: ran (no earlier output)" in text_output(notebook)
    # Alone, 04 also makes the data and trains the model (its prerequisites) in notebook mode:
    # the same stderr budget holds as in the walkthrough, where 01 and 02 did that work.
    noise = stderr_lines(notebook)
    assert len(noise) <= STDERR_BUDGET_LINES, "04_edge alone wrote to stderr:\n" + "\n".join(noise)
    run = tmp_path / "notebooks" / "smoke"
    assert (run / "data" / "Annotations").is_dir()
    assert (run / "train" / "model" / "model.json").is_file()
    assert (run / "export" / "model_int8.tflite").is_file()


def test_the_walkthrough_is_complete() -> None:
    assert sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb")) == list(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    raw = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    nbformat.validate(nbformat.from_dict(raw))
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name} cell {index} has outputs: run nbstripout"
            assert cell["execution_count"] is None, f"{name} cell {index} has an execution count"
        assert "execution" not in cell.get("metadata", {}), f"{name} cell {index} has timings"
    assert set(raw["metadata"]) <= {"kernelspec", "language_info"}, raw["metadata"].keys()


@pytest.mark.parametrize("name", ORDER)
def test_notebook_has_a_profile_parameter_and_no_own_logic(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    parameters = [cell for cell in code_cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and parameters[0] is code_cells[0]
    assert (
        f'PROFILE = os.environ.get("PPE_NOTEBOOK_PROFILE", "{DEFAULT_PROFILE}")'
        in parameters[0].source
    )
    imports_ppe = False
    for cell in code_cells:
        tree = ast.parse(cell.source)
        defined = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert defined == [], f"{name} defines {defined}: put logic in the ppe package"
        imports_ppe = imports_ppe or any(
            isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ppe"
            for node in ast.walk(tree)
        )
    assert imports_ppe, f"{name} does not import ppe"
