"""The training pipeline job, built offline with azure-ai-ml's ``@dsl.pipeline``.

The nodes and their wiring come from the step graph (:mod:`ppe.run.graph`): each node is named
after its step and each input is bound to the pipeline input or the output of the step of that
name, exactly as the local runner connects the run's folders.

Train runs on the GPU cluster, every other step on the CPU cluster; both names come from the
settings (Terraform's outputs). MLflow tracking needs no wiring: Azure ML sets
``MLFLOW_TRACKING_URI`` to the workspace in every job and ``ppe train`` falls back to it.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ppe.aml.components import build_components, write_code_snapshot
from ppe.aml.environments import (
    CPU_ENVIRONMENT,
    TRAIN_ENVIRONMENT,
    EnvironmentSpec,
    environment_specs,
)
from ppe.aml.settings import BASE_IMAGE, AmlSettings, JobOptions
from ppe.config import Config
from ppe.run import graph

logger = logging.getLogger(__name__)

PIPELINE_NAME = "ppe_training"


@dataclass(frozen=True)
class BuiltPipeline:
    """A pipeline job and what it was built from.

    Attributes:
        job: The ``azure.ai.ml.entities.PipelineJob``.
        components: Step -> ``CommandComponent``.
        environments: Environment name -> spec (to register before submitting).
        code_dir: The code snapshot the components upload.
    """

    job: Any
    components: dict[str, Any]
    environments: dict[str, EnvironmentSpec]
    code_dir: Path


def aml_config(config: Config, settings: AmlSettings) -> Config:
    """The config the steps run with on Azure ML.

    The registry is the workspace's (``registry.backend=azureml``) under Terraform's model name,
    and ``tracking.uri`` is cleared so MLflow follows the job's ``MLFLOW_TRACKING_URI``.
    """
    resolved = config.model_copy(deep=True)
    resolved.registry.backend = "azureml"
    resolved.registry.model_name = settings.model_name
    resolved.tracking.uri = None
    return resolved


def build_pipeline(
    settings: AmlSettings,
    options: JobOptions,
    config: Config,
    *,
    package_dir: Path,
    pyproject: Path | None,
    conda_dir: Path,
    code_dir: Path,
    image: str = BASE_IMAGE,
) -> BuiltPipeline:
    """Build the pipeline job offline (no workspace, no credential).

    Args:
        settings: Workspace and cluster names.
        options: Config, node count, experiment, data asset.
        config: The resolved ppe config (saved into the code snapshot as ``config.yaml``).
        package_dir: The ``ppe`` package folder copied into the snapshot.
        pyproject: The project's ``pyproject.toml``, or None.
        conda_dir: The ``environments/conda`` folder.
        code_dir: Where to write the code snapshot.
        image: Base image of the environments.

    Returns:
        The job, its components, environments and code folder.
    """
    from azure.ai.ml import Input, dsl
    from azure.ai.ml.constants import AssetTypes

    specs = environment_specs(conda_dir, image)
    snapshot = write_code_snapshot(
        package_dir, pyproject, aml_config(config, settings).to_yaml(), code_dir
    )
    components = build_components(
        snapshot,
        {
            "train": specs[TRAIN_ENVIRONMENT].reference,
            "cpu": specs[CPU_ENVIRONMENT].reference,
        },
        settings,
        gpu_nodes=options.gpu_nodes,
    )

    def ppe_training(data: Any) -> dict[str, Any]:
        ports: dict[str, Any] = {"data": data}
        for step in graph.STEPS:
            node = components[step.name](**{port: ports[port] for port in step.inputs})
            # An explicit name: the DSL would otherwise name nodes after local variables.
            node.name = step.name
            node.compute = settings.gpu_cluster if step.compute == "gpu" else settings.cpu_cluster
            ports[step.output] = node.outputs[step.output]
        return {step.output: ports[step.output] for step in graph.STEPS}

    # The DSL reads the inputs' types from the annotations; this module's postponed (string)
    # annotations would not do, so they are set as Input objects.
    ppe_training.__annotations__ = {
        "data": Input(type=AssetTypes.URI_FOLDER, description="Pascal VOC data asset"),
    }
    pipeline_function = dsl.pipeline(
        ppe_training,
        name=PIPELINE_NAME,
        display_name="ppe hard-hat training",
        description="the ppe step graph: " + ", ".join(graph.step_names()),
        default_compute=settings.cpu_cluster,
    )

    job = pipeline_function(data=Input(type=AssetTypes.URI_FOLDER, path=options.data_uri()))
    job.experiment_name = options.experiment
    job.tags = {
        **options.tags,
        "config_hash": config.hash(),
        "model_name": settings.model_name,
        "gpu_nodes": str(options.gpu_nodes),
    }
    return BuiltPipeline(job, components, specs, snapshot)


def validation_errors(built: BuiltPipeline) -> dict[str, str]:
    """azure-ai-ml's own offline validation of the pipeline and of each component.

    The pipeline-level check misses bad bindings inside a node's command, so every component
    is validated too. Returns field path -> message; empty when everything passes.
    """
    errors: dict[str, str] = {}
    for step, component in built.components.items():
        result = component._validate()
        errors.update({f"{step}.{key}": value for key, value in result.error_messages.items()})
    errors.update(built.job._validate().error_messages)
    return errors


def job_yaml(job: Any, yaml_dir: Path) -> str:
    """The job as YAML whose ``code:`` paths are relative to ``yaml_dir``.

    azure-ai-ml's ``dump`` writes the absolute local path of each component's code; rewriting
    it makes the file portable (``az ml job create -f`` and ``load_job`` resolve it from the
    YAML file's folder).
    """
    stream = io.StringIO()
    job.dump(stream)
    data = yaml.safe_load(stream.getvalue())
    for node in (data.get("jobs") or {}).values():
        component = node.get("component")
        if isinstance(component, dict) and isinstance(component.get("code"), str):
            code = Path(component["code"])
            if code.is_absolute():
                component["code"] = Path(os.path.relpath(code, yaml_dir.resolve())).as_posix()
    return yaml.safe_dump(data, sort_keys=False, width=100)
