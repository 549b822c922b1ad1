"""Command components for the pipeline steps; each runs the same ``ppe`` command as everywhere else.

Code snapshot, and why not the repository root: a component's ``code`` folder is uploaded (and
content-hashed) as a whole. The repository root holds virtual environments, node_modules,
outputs and notebooks, so it would need an ``.amlignore`` that stays in step with everything
anyone adds. Instead :func:`write_code_snapshot` copies exactly what the steps run: the package
(``src/ppe``, without byte code), ``pyproject.toml`` (the version and dependency ranges, for the
record) and the resolved ``config.yaml`` every step reads. The same sources give the same
snapshot, so Azure ML reuses the uploaded snapshot and the anonymous components built on it.

The package is not installed in the job: the environment holds the dependencies, the snapshot is
the job's working folder, and ``PYTHONPATH=src`` makes ``python -m ppe`` import it.

The components are generated from the step graph (:mod:`ppe.run.graph`): one component per step,
named ``ppe_<step>``, with one ``uri_folder`` input per folder the step reads and one output
folder named after the step; its command is the step's ``ppe`` command line with Azure ML's
``${{inputs.*}}``/``${{outputs.*}}`` bindings. Train runs on the GPU environment, the rest on the
CPU one; the steps that use the model registry get the workspace's names as environment
variables.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppe.aml.settings import AmlSettings
from ppe.errors import PpeError
from ppe.run import graph
from ppe.run.layout import CONFIG_FILE

logger = logging.getLogger(__name__)

PPE = "python -m ppe"
#: Azure ML sets it in every job to the pipeline job's name (the run id a step records).
ROOT_RUN_ID = '"$AZUREML_ROOT_RUN_ID"'
SNAPSHOT_MARKER = ".ppe-code-snapshot"
CODE_ENVIRONMENT = {"PYTHONPATH": "src"}
STEPS = graph.step_names()
_SKIP_NAMES = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def write_code_snapshot(
    package_dir: Path, pyproject: Path | None, config_yaml: str, dest: Path
) -> Path:
    """Write the folder the components upload as their ``code``.

    Args:
        package_dir: The ``ppe`` package folder (``src/ppe``).
        pyproject: The project's ``pyproject.toml``, copied when given.
        config_yaml: The resolved config the steps run with (``config.yaml`` in the snapshot).
        dest: Target folder; replaced if it holds an earlier snapshot, refused if it holds
            anything else.

    Returns:
        ``dest``, holding ``src/ppe/``, ``pyproject.toml`` and ``config.yaml``.

    Raises:
        PpeError: ``dest`` is a non-empty folder that is not a snapshot, or the package is
            missing.
    """
    if not (package_dir / "__init__.py").is_file():
        raise PpeError(f"{package_dir}: not the ppe package folder (no __init__.py)")
    if dest.exists():
        if not dest.is_dir() or (any(dest.iterdir()) and not (dest / SNAPSHOT_MARKER).is_file()):
            raise PpeError(
                f"{dest} exists and is not a code snapshot; choose an empty or new folder"
            )
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(
        package_dir,
        dest / "src" / "ppe",
        ignore=lambda _dir, names: [
            name for name in names if name in _SKIP_NAMES or name.endswith((".pyc", ".pyo"))
        ],
    )
    if pyproject is not None:
        shutil.copyfile(pyproject, dest / "pyproject.toml")
    (dest / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    (dest / SNAPSHOT_MARKER).write_text(
        "Code snapshot for Azure ML components, written by `ppe aml build`; safe to delete.\n",
        encoding="utf-8",
    )
    return dest


def component_command(step: graph.Step) -> str:
    """The step's ``ppe`` command line with Azure ML's input and output bindings."""

    def source(arg: graph.In) -> str:
        binding = f"${{{{inputs.{arg.port}}}}}"
        return f"{binding}/{arg.path}" if arg.path else binding

    def target(arg: graph.Out) -> str:
        binding = f"${{{{outputs.{step.output}}}}}"
        return f"{binding}/{arg.path}" if arg.path else binding

    def token(arg: graph.Token) -> str | None:
        if arg is graph.Token.CONFIG:
            return CONFIG_FILE
        if arg is graph.Token.RUN_ID:
            return ROOT_RUN_ID
        return None  # Azure ML jobs always track, to the workspace

    return " ".join([PPE, *step.render(source, target, token)])


def build_components(
    code_dir: Path,
    environments: Mapping[str, str],
    settings: AmlSettings,
    gpu_nodes: int = 1,
) -> dict[str, Any]:
    """One command component per step of the graph.

    Args:
        code_dir: The code snapshot (:func:`write_code_snapshot`).
        environments: ``train`` and ``cpu`` -> ``azureml:name:version`` environment references.
        settings: Workspace names; the steps that use the registry get them as environment
            variables so the Azure ML registry backend can reach the workspace from the job.
        gpu_nodes: Nodes for training; above 1 the distributed step gets a TensorFlow
            distribution with one worker per node (``TF_CONFIG`` is set by Azure ML).

    Returns:
        Step name -> ``azure.ai.ml.entities.CommandComponent``, in graph order (:data:`STEPS`).
    """
    from azure.ai.ml import Input, Output, TensorFlowDistribution
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import CommandComponent, JobResourceConfiguration

    folder = AssetTypes.URI_FOLDER
    components: dict[str, Any] = {}
    for step in graph.STEPS:
        extra: dict[str, Any] = {}
        if step.distributed and gpu_nodes > 1:
            extra["distribution"] = TensorFlowDistribution(worker_count=gpu_nodes)
            extra["resources"] = JobResourceConfiguration(instance_count=gpu_nodes)
        if not step.deterministic:
            extra["is_deterministic"] = False
        environment_variables = dict(CODE_ENVIRONMENT)
        if step.registry:
            environment_variables.update(settings.job_environment())
        components[step.name] = CommandComponent(
            name=f"ppe_{step.name}",
            display_name=step.name,
            description=step.description,
            code=str(code_dir),
            environment=environments["train" if step.compute == "gpu" else "cpu"],
            environment_variables=environment_variables,
            command=component_command(step),
            inputs={
                port: Input(
                    type=folder,
                    description="orders this step after it" if port in step.after else None,
                )
                for port in step.inputs
            },
            outputs={step.output: Output(type=folder)},
            **extra,
        )
    return components
