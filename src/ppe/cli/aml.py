"""``ppe aml``: build and submit the Azure ML pipeline, upload data, download the champion.

* ``ppe aml build`` builds the pipeline job offline and prints its YAML (or writes it with
  ``--out``, next to the code snapshot it references). No login needed.
* ``ppe aml run-local`` runs that YAML on this machine (:mod:`ppe.aml.local_run`).
* ``ppe aml submit`` builds the same job, registers changed environments, submits it, streams
  its logs and exits non-zero unless it completes.
* ``ppe aml data upload`` uploads a VOC folder to the default datastore and registers a
  ``uri_folder`` data asset versioned by content.
* ``ppe aml models download --champion|--version N`` downloads a model version from the
  workspace's registry (the edge pipeline resolves the champion's number once and downloads that
  number, so a promotion in between cannot mix two versions).

Names (workspace, clusters, model) come from Terraform's outputs: the environment overlaid on
``.env`` (see :mod:`ppe.aml.settings`). Only the standard library, ``ppe.config`` and
``ppe.errors`` are imported at top level: the CLI imports this module at start-up, and
azure-ai-ml takes about a second to import.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ppe.cli.options import add_config_arguments
from ppe.config import load_config
from ppe.errors import PpeError

logger = logging.getLogger(__name__)

DEFAULT_CODE_DIR = Path("outputs") / "aml" / "code"
SUCCESS_STATUSES = ("Completed",)


def _source_tree() -> tuple[Path, Path | None, Path]:
    """(package folder, pyproject.toml or None, repository root) of the running ``ppe``."""
    import ppe

    package_dir = Path(ppe.__file__).resolve().parent
    root = package_dir.parents[1]
    pyproject = root / "pyproject.toml"
    return package_dir, (pyproject if pyproject.is_file() else None), root


def _env_file(args: argparse.Namespace) -> Path:
    if args.env_file is not None:
        return Path(args.env_file)
    _, pyproject, root = _source_tree()
    return root / ".env" if pyproject is not None else Path(".env")


def _settings(args: argparse.Namespace) -> Any:
    from ppe.aml.settings import load_settings

    return load_settings(os.environ, _env_file(args))


def _conda_dir(args: argparse.Namespace) -> Path:
    if args.conda_dir is not None:
        return Path(args.conda_dir)
    _, _, root = _source_tree()
    path = root / "environments" / "conda"
    if not path.is_dir():
        raise PpeError(
            f"{path}: no environments/conda folder; run from a source checkout or pass --conda-dir"
        )
    return path


def _build(args: argparse.Namespace, code_dir: Path) -> Any:
    from ppe.aml.pipeline import build_pipeline, validation_errors
    from ppe.aml.settings import JobOptions

    settings = _settings(args)
    options = JobOptions(
        config=args.config,
        overrides=tuple(args.overrides),
        gpu_nodes=args.gpu_nodes,
        experiment=args.experiment,
        data_name=args.data_name,
        data_version=args.data_version,
    )
    package_dir, pyproject, _ = _source_tree()
    built = build_pipeline(
        settings,
        options,
        load_config(args.config, args.overrides),
        package_dir=package_dir,
        pyproject=pyproject,
        conda_dir=_conda_dir(args),
        code_dir=code_dir,
    )
    errors = validation_errors(built)
    if errors:
        details = "; ".join(f"{key}: {value}" for key, value in sorted(errors.items()))
        raise PpeError(f"the pipeline job does not validate: {details}")
    return built


def _build_command(args: argparse.Namespace) -> int:
    from ppe.aml.pipeline import job_yaml

    if args.out is None:
        built = _build(args, Path(args.code_dir or DEFAULT_CODE_DIR))
        sys.stdout.write(job_yaml(built.job, Path.cwd()))
        return 0
    out = Path(args.out)
    built = _build(args, Path(args.code_dir) if args.code_dir else out.parent / "code")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(job_yaml(built.job, out.parent), encoding="utf-8")
    logger.info("wrote %s (code snapshot %s)", out, built.code_dir)
    return 0


def _submit_command(args: argparse.Namespace) -> int:
    from ppe.aml.client import ml_client
    from ppe.aml.environments import ensure_registered

    built = _build(args, Path(args.code_dir or DEFAULT_CODE_DIR))
    client = ml_client(_settings(args))
    for spec in built.environments.values():
        ensure_registered(client, spec)
    job = client.jobs.create_or_update(built.job, experiment_name=args.experiment)
    logger.info("submitted %s: %s", job.name, getattr(job, "studio_url", ""))
    if args.no_wait:
        sys.stdout.write(f"{job.name}\n")
        return 0
    try:
        client.jobs.stream(job.name)
    except Exception as error:  # the SDK raises JobException on a failed job; status decides
        logger.error("streaming %s stopped: %s", job.name, str(error).splitlines()[0])
    status = client.jobs.get(job.name).status
    sys.stdout.write(f"{job.name} {status}\n")
    if status not in SUCCESS_STATUSES:
        raise PpeError(f"pipeline job {job.name} ended {status}; see its logs in the studio")
    return 0


def _data_upload_command(args: argparse.Namespace) -> int:
    from ppe.aml.client import default_credential, ml_client
    from ppe.aml.data import default_container, upload_dataset

    credential = default_credential()
    client = ml_client(_settings(args), credential=credential)
    container, datastore = default_container(client, credential)
    result = upload_dataset(
        Path(args.data),
        container=container,
        assets=client.data,
        datastore=datastore,
        name=args.name,
        prefix=args.prefix,
        workers=args.workers,
    )
    sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    return 0


def _run_local_command(args: argparse.Namespace) -> int:
    from ppe.aml.local_run import run_pipeline_job
    from ppe.config import RegistryConfig
    from ppe.run.layout import new_run_id

    data: dict[str, Path] = {}
    for item in args.inputs:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise PpeError(f"--input {item!r}: write NAME=DIR, e.g. --input data=outputs/voc")
        data[name] = Path(folder)
    registry = Path(args.registry) if args.registry else RegistryConfig().root
    result = run_pipeline_job(
        Path(args.job),
        Path(args.out),
        data=data,
        registry_root=registry,
        run_id=args.run_id or new_run_id(),
        environ=dict(os.environ),
    )
    logger.info("ran %s; outputs in %s", " -> ".join(result.order), Path(args.out) / "outputs")
    sys.stdout.write(
        json.dumps(
            {node: {k: str(v) for k, v in out.items()} for node, out in result.outputs.items()},
            indent=2,
        )
        + "\n"
    )
    return 0


def model_download_argv(
    dest: Path, config: str, overrides: list[str], version: int | None = None
) -> list[str]:
    """The ``ppe models download`` arguments run against the workspace registry.

    Args:
        dest: absent or empty folder.
        config: profile name or config file.
        overrides: ``--set`` overrides.
        version: the version number, or None for the champion.
    """
    chosen = ["--champion"] if version is None else ["--version", str(version)]
    return [
        "models",
        "download",
        *chosen,
        "--dest",
        str(dest),
        "--config",
        config,
        *[item for override in overrides for item in ("--set", override)],
        "--set",
        "registry.backend=azureml",
    ]


def _models_download_command(args: argparse.Namespace) -> int:
    from ppe.aml.client import check_login, default_credential

    if args.version is not None and args.version < 1:
        raise PpeError(f"--version {args.version}: versions start at 1")
    settings = _settings(args)
    check_login(default_credential())
    argv = model_download_argv(Path(args.dest), args.config, args.overrides, args.version)
    argv += ["--set", f"registry.model_name={settings.model_name}"]
    environ = {**os.environ, **settings.job_environment()}
    logger.info("ppe %s", " ".join(argv))
    return subprocess.run([sys.executable, "-m", "ppe", *argv], env=environ, check=False).returncode


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help="the .env written from Terraform's outputs (default: .env at the repository root)",
    )


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    _add_common(parser)
    parser.add_argument(
        "--gpu-nodes",
        type=int,
        default=1,
        metavar="N",
        help="GPU nodes for training; above 1, tf.distribute multi-worker (default: 1)",
    )
    parser.add_argument("--experiment", default="ppe-hardhat", help="Azure ML experiment name")
    parser.add_argument("--data-name", default="ppe-hardhat-voc", help="data asset name")
    parser.add_argument(
        "--data-version", default="latest", help="data asset version (default: latest)"
    )
    parser.add_argument(
        "--code-dir",
        metavar="DIR",
        help=f"where to write the code snapshot (default: {DEFAULT_CODE_DIR}, or beside --out)",
    )
    parser.add_argument("--conda-dir", metavar="DIR", help="default: environments/conda")


def register(subparsers: Any) -> None:
    """Add ``ppe aml build|submit|data upload|models download``."""
    aml = subparsers.add_parser(
        "aml",
        help="Azure ML: build or submit the pipeline, upload data, download the champion",
        description="Azure ML pipeline, data assets and model registry; names come from "
        "Terraform's outputs (.env or the environment).",
    )
    actions = aml.add_subparsers(dest="aml_command", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="build the pipeline job offline and print (or write) its YAML",
        description="Build and validate the pipeline job with azure-ai-ml, offline.",
    )
    _add_job_arguments(build)
    build.add_argument("--out", metavar="FILE", help="write the YAML here instead of stdout")
    build.set_defaults(func=_build_command)

    submit = actions.add_parser(
        "submit",
        help="submit the pipeline job, stream its logs, fail unless it completes",
        description="Build, register changed environments, submit, stream and wait.",
    )
    _add_job_arguments(submit)
    submit.add_argument(
        "--no-wait", action="store_true", help="print the job name and return at once"
    )
    submit.set_defaults(func=_submit_command)

    run_local = actions.add_parser(
        "run-local",
        help="run the job YAML `ppe aml build` wrote on this machine, node by node",
        description=(
            "Execute each component's command in dependency order, with Azure ML's input, "
            "output and optional-block substitution and the environment a component sees; a "
            "TensorFlow distribution starts one process per worker (TF_CONFIG on loopback). "
            "The local registry (--registry) stands in for the workspace's."
        ),
    )
    run_local.add_argument("--job", required=True, metavar="FILE", help="pipeline job YAML")
    run_local.add_argument("--out", required=True, metavar="DIR", help="new or empty folder")
    run_local.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a local folder for a pipeline input bound to an azureml: asset (e.g. data=DIR)",
    )
    run_local.add_argument(
        "--registry", metavar="DIR", help="local registry root (default: outputs/registry)"
    )
    run_local.add_argument("--run-id", help="AZUREML_ROOT_RUN_ID (default: the UTC time)")
    run_local.set_defaults(func=_run_local_command)

    data = actions.add_parser("data", help="data assets in the workspace")
    data_actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    upload = data_actions.add_parser(
        "upload",
        help="upload a VOC folder and register a uri_folder data asset versioned by content",
        description="Upload to the default datastore (resumable, verified) and register the "
        "data asset; the same data again uploads nothing.",
    )
    upload.add_argument("--data", required=True, metavar="DIR", help="Pascal VOC folder")
    upload.add_argument("--name", default="ppe-hardhat-voc", help="data asset name")
    upload.add_argument(
        "--prefix", default="ppe-datasets", help="folder of datasets in the container"
    )
    upload.add_argument("--workers", type=int, default=8, help="parallel uploads (default: 8)")
    _add_common(upload)
    upload.set_defaults(func=_data_upload_command)

    models = actions.add_parser("models", help="the workspace's model registry")
    model_actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    download = model_actions.add_parser(
        "download",
        help="download the champion, or a version, from the workspace",
        description=(
            "Runs `ppe models download --champion|--version N` against the workspace registry. "
            "Automation should resolve the champion's number once and pass --version, so that "
            "everything after (image tag, manifest) names the version it downloaded."
        ),
    )
    chosen = download.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--champion", action="store_true", help="the current champion")
    chosen.add_argument("--version", type=int, metavar="N", help="this version number")
    download.add_argument("--dest", required=True, metavar="DIR", help="absent or empty folder")
    add_config_arguments(download)
    _add_common(download)
    download.set_defaults(func=_models_download_command)
