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

Steps and their folders (the layout of a local run folder, see :mod:`ppe.pipeline`):

====================  ==========  =======================================================
component             compute     writes
====================  ==========  =======================================================
``ppe_train``         GPU         ``train/`` (``model/``, ``train.json``, checkpoints)
``ppe_evaluate``      CPU         ``evaluate/`` (``metrics.json``, Cartucho files)
``ppe_gate``          CPU         ``gate/gate.json``
``ppe_register``      CPU         ``register/register.json`` (the registered version)
``ppe_report``        CPU         ``report/`` (``index.html`` and plots)
``ppe_export``        CPU         ``export/`` (LiteRT models and their metrics)
====================  ==========  =======================================================
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppe.aml.settings import AmlSettings
from ppe.errors import PpeError

logger = logging.getLogger(__name__)

PPE = "python -m ppe"
CONFIG_FILE = "config.yaml"
SNAPSHOT_MARKER = ".ppe-code-snapshot"
CODE_ENVIRONMENT = {"PYTHONPATH": "src"}
STEPS = ("train", "evaluate", "gate", "register", "report", "export")
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


def _command(*parts: str) -> str:
    return " ".join(parts)


def build_components(
    code_dir: Path,
    environments: Mapping[str, str],
    settings: AmlSettings,
    gpu_nodes: int = 1,
) -> dict[str, Any]:
    """The six command components.

    Args:
        code_dir: The code snapshot (:func:`write_code_snapshot`).
        environments: ``train`` and ``cpu`` -> ``azureml:name:version`` environment references.
        settings: Workspace names; the register step gets them as environment variables so the
            Azure ML registry backend can reach the workspace from inside the job.
        gpu_nodes: Nodes for training; above 1 the train component gets a TensorFlow
            distribution with one worker per node (``TF_CONFIG`` is set by Azure ML).

    Returns:
        Component name -> ``azure.ai.ml.entities.CommandComponent``, keyed by step
        (:data:`STEPS`).
    """
    from azure.ai.ml import Input, Output, TensorFlowDistribution
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import CommandComponent, JobResourceConfiguration

    folder = AssetTypes.URI_FOLDER
    code = str(code_dir)
    config = f"--config {CONFIG_FILE}"

    def component(step: str, description: str, **kwargs: Any) -> Any:
        environment_variables = dict(CODE_ENVIRONMENT)
        environment_variables.update(kwargs.pop("environment_variables", {}))
        return CommandComponent(
            name=f"ppe_{step}",
            display_name=step,
            description=description,
            code=code,
            environment=environments["train" if step == "train" else "cpu"],
            environment_variables=environment_variables,
            **kwargs,
        )

    train_extra: dict[str, Any] = {}
    if gpu_nodes > 1:
        train_extra["distribution"] = TensorFlowDistribution(worker_count=gpu_nodes)
        train_extra["resources"] = JobResourceConfiguration(instance_count=gpu_nodes)

    return {
        "train": component(
            "train",
            "Train YOLOv3 on the VOC data asset (MultiWorkerMirroredStrategy across nodes).",
            command=_command(
                PPE, "train", "--data ${{inputs.data}}", "--out ${{outputs.train}}", config
            ),
            inputs={"data": Input(type=folder, description="Pascal VOC dataset")},
            outputs={"train": Output(type=folder, description="checkpoints, model/, train.json")},
            **train_extra,
        ),
        "evaluate": component(
            "evaluate",
            "mAP@0.5 (PASCAL VOC) of the trained model on the test split.",
            command=_command(
                PPE,
                "evaluate",
                "--model ${{inputs.train}}/model",
                "--data ${{inputs.data}}",
                "--split test",
                "--out ${{outputs.evaluate}}",
                config,
            ),
            inputs={"train": Input(type=folder), "data": Input(type=folder)},
            outputs={"evaluate": Output(type=folder, description="metrics.json and mAP files")},
        ),
        "gate": component(
            "gate",
            "Champion/challenger decision; without champion metrics the first model wins.",
            command=_command(
                PPE,
                "gate",
                "--challenger ${{inputs.evaluate}}/metrics.json",
                "$[[--champion ${{inputs.champion_metrics}}]]",
                "--out ${{outputs.gate}}/gate.json",
                config,
            ),
            inputs={
                "evaluate": Input(type=folder),
                "champion_metrics": Input(
                    type=AssetTypes.URI_FILE,
                    optional=True,
                    description="the champion's metrics.json on the same data",
                ),
            },
            outputs={"gate": Output(type=folder, description="gate.json")},
        ),
        "register": component(
            "register",
            "Register the candidate in the workspace's model registry; champion if promoted.",
            # stdout is the registered version as JSON (logs go to stderr): register.json.
            command=_command(
                PPE,
                "register",
                "--model ${{inputs.train}}/model",
                "--gate ${{inputs.gate}}/gate.json",
                "--metrics ${{inputs.evaluate}}/metrics.json",
                '--run-id "$AZUREML_ROOT_RUN_ID"',
                config,
                "--set registry.backend=azureml",
                "> ${{outputs.register}}/register.json",
            ),
            inputs={
                "train": Input(type=folder),
                "evaluate": Input(type=folder),
                "gate": Input(type=folder),
            },
            outputs={"register": Output(type=folder, description="register.json")},
            environment_variables=settings.job_environment(),
            # Registration has side effects in the workspace: never reuse an earlier result.
            is_deterministic=False,
        ),
        "report": component(
            "report",
            "HTML report of the run: the step folders are linked into one run folder first.",
            command=" && ".join(
                [
                    "mkdir -p run",
                    f"cp {CONFIG_FILE} run/{CONFIG_FILE}",
                    "ln -s ${{inputs.train}} run/train",
                    "ln -s ${{inputs.evaluate}} run/evaluate",
                    "cp ${{inputs.gate}}/gate.json run/gate.json",
                    "cp ${{inputs.register}}/register.json run/register.json",
                    _command(PPE, "report", "--run run"),
                    "cp -R run/report/. ${{outputs.report}}/",
                ]
            ),
            inputs={
                "train": Input(type=folder),
                "evaluate": Input(type=folder),
                "gate": Input(type=folder),
                "register": Input(type=folder),
            },
            outputs={"report": Output(type=folder, description="index.html and plots")},
        ),
        "export": component(
            "export",
            "LiteRT export (fp32 and int8) of the registered model, with per-backend metrics.",
            command=_command(
                PPE,
                "export",
                "--model ${{inputs.train}}/model",
                "--data ${{inputs.data}}",
                "--out ${{outputs.export}}",
                config,
            ),
            # `register` is not read: the input orders export after the registration.
            inputs={
                "train": Input(type=folder),
                "data": Input(type=folder),
                "register": Input(type=folder, description="orders export after registration"),
            },
            outputs={"export": Output(type=folder, description="*.tflite and metrics")},
        ),
    }
