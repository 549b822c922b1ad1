"""The Azure ML pipeline job and its components, built offline with azure-ai-ml.

azure-ai-ml's own checks decide validity (``_validate()`` on each component and on the job: the
job-level check does not look inside a node's command). The YAML round trip goes through the
public ``load_job``.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.ai.ml import TensorFlowDistribution, load_job

from ppe.aml.components import CONFIG_FILE, PPE, STEPS
from ppe.aml.environments import (
    CPU_ENVIRONMENT,
    TRAIN_ENVIRONMENT,
    content_version,
    ensure_registered,
    environment_specs,
)
from ppe.aml.pipeline import job_yaml, validation_errors
from ppe.aml.settings import BASE_IMAGE, AmlSettings
from ppe.cli import get_args_parser, main
from ppe.config import load_config

from .aml_helpers import CONDA_DIR, REPO_ROOT, build

# azure-ai-ml's marshmallow schemas warn about marshmallow 4 on every dump and load (not ours).
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

BINDING = re.compile(r"\$\{\{(inputs|outputs)\.([A-Za-z0-9_]+)\}\}")
OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]")


def test_every_component_passes_azure_ai_ml_validation(built: Any) -> None:
    assert set(built.components) == set(STEPS)
    for step, component in built.components.items():
        result = component._validate()
        assert result.passed, f"{step}: {result.error_messages}"


def test_pipeline_passes_azure_ai_ml_validation(built: Any) -> None:
    result = built.job._validate()
    assert result.passed, result.error_messages
    assert validation_errors(built) == {}


def test_validation_catches_a_bad_binding(built: Any) -> None:
    # The check above can fail: a command naming an undeclared input does not validate.
    broken = copy.deepcopy(built.components["gate"])
    broken.command = broken.command.replace("${{inputs.evaluate}}", "${{inputs.missing}}")
    assert not broken._validate().passed


def _normalised(job_dict: dict[str, Any], code_dir: Path, base: Path) -> dict[str, Any]:
    """Inline components come back from YAML as anonymous (``azureml_anonymous``, version 1):
    Azure ML registers inline components by content, not by name, so name and version are not
    part of the job. Code paths are compared resolved (a relative one from the YAML's folder)."""
    data = copy.deepcopy(job_dict)
    for node in data["jobs"].values():
        component = node["component"]
        component.pop("name", None)
        component.pop("version", None)
        assert (base / component["code"]).resolve() == code_dir.resolve()
        component["code"] = "<code>"
    return data


def test_dumped_yaml_loads_back_to_an_equal_job(built: Any, tmp_path: Path) -> None:
    text = job_yaml(built.job, tmp_path)
    assert str(built.code_dir) not in text, "the YAML must not hold this machine's paths"
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    document = yaml.safe_load(text)
    codes = {node["component"]["code"] for node in document["jobs"].values()}
    assert codes == {Path(os.path.relpath(built.code_dir, tmp_path)).as_posix()}

    loaded = load_job(path)
    assert loaded._validate().passed
    assert _normalised(loaded._to_dict(), built.code_dir, tmp_path) == _normalised(
        built.job._to_dict(), built.code_dir, tmp_path
    )
    assert {name: node.component.display_name for name, node in loaded.jobs.items()} == {
        step: step for step in STEPS
    }


def test_compute_and_environment_names_come_from_terraform_outputs(
    built: Any, settings: AmlSettings
) -> None:
    document = yaml.safe_load(job_yaml(built.job, Path.cwd()))
    computes = {name: node["compute"] for name, node in document["jobs"].items()}
    assert computes == {
        step: f"azureml:{settings.gpu_cluster if step == 'train' else settings.cpu_cluster}"
        for step in STEPS
    }
    assert document["settings"]["default_compute"] == f"azureml:{settings.cpu_cluster}"
    specs = environment_specs(CONDA_DIR, BASE_IMAGE)
    for step, node in document["jobs"].items():
        name = TRAIN_ENVIRONMENT if step == "train" else CPU_ENVIRONMENT
        assert node["component"]["environment"] == f"azureml:{name}:{specs[name].version}"
    # The steps that use the workspace's model registry reach it with Terraform's names.
    for step in ("champion", "register"):
        register_env = document["jobs"][step]["component"]["environment_variables"]
        assert register_env["AML_WORKSPACE"] == settings.workspace
        assert register_env["AZURE_SUBSCRIPTION_ID"] == settings.subscription_id
        assert register_env["AZURE_RESOURCE_GROUP"] == settings.resource_group
        assert register_env["MODEL_NAME"] == settings.model_name
    for step in ("train", "evaluate", "gate", "export", "report"):
        assert "AML_WORKSPACE" not in document["jobs"][step]["component"]["environment_variables"]


def test_pipeline_wiring(built: Any) -> None:
    document = yaml.safe_load(job_yaml(built.job, Path.cwd()))
    jobs = document["jobs"]

    def sources(step: str) -> set[str]:
        found = set()
        for value in jobs[step].get("inputs", {}).values():
            match = re.match(r"\$\{\{parent\.jobs\.(\w+)\.outputs", str(value.get("path", "")))
            if match:
                found.add(match.group(1))
        return found

    assert sources("champion") == set()
    assert sources("train") == set()
    assert sources("evaluate") == {"train"}
    # The gate reads the champion step's output: the job finds its champion itself.
    assert sources("gate") == {"evaluate", "champion"}
    assert sources("register") == {"train", "evaluate", "gate"}
    assert sources("report") == {"train", "evaluate", "champion", "gate", "register"}
    assert sources("export") == {"train", "register"}
    for step in ("champion", "train", "evaluate", "export", "report"):
        assert jobs[step]["inputs"]["data"]["path"] == "${{parent.inputs.data}}", step
    assert set(document["inputs"]) == {"data"}, "no pipeline input a caller could forget"
    assert document["inputs"]["data"]["path"] == "azureml:ppe-hardhat-voc@latest"


def test_distribution_only_for_several_gpu_nodes(
    built: Any, settings: AmlSettings, tmp_path: Path
) -> None:
    assert built.components["train"].distribution is None
    several = build(settings, tmp_path / "code", gpu_nodes=3)
    train = several.components["train"]
    assert isinstance(train.distribution, TensorFlowDistribution)
    assert train.distribution.worker_count == 3
    assert train.resources.instance_count == 3
    assert validation_errors(several) == {}
    for step in STEPS:
        if step != "train":
            assert several.components[step].distribution is None, step
    document = yaml.safe_load(job_yaml(several.job, tmp_path))
    assert document["jobs"]["train"]["distribution"]["type"] == "tensorflow"
    assert document["jobs"]["train"]["distribution"]["worker_count"] == 3
    assert document["jobs"]["train"]["resources"]["instance_count"] == 3


def _ppe_argvs(command: str, with_optional: bool) -> list[list[str]]:
    """The ``ppe`` invocations of a component command, with placeholder paths.

    ``$[[...]]`` (Azure ML's optional-input syntax) is kept or dropped, a shell redirect is cut.
    """
    text = OPTIONAL.sub(lambda match: match.group(1) if with_optional else "", command)
    text = BINDING.sub(lambda match: f"/mnt/azureml/{match.group(1)}/{match.group(2)}", text)
    argvs = []
    for segment in text.split("&&"):
        segment = segment.split(">", 1)[0].strip()
        if segment.startswith(PPE + " "):
            argvs.append(shlex.split(segment)[len(PPE.split()) :])
    return argvs


def _parse(argv: list[str], what: str) -> Any:
    parser = get_args_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"{what}: `ppe {' '.join(argv)}` is not a valid ppe invocation ({error})")


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("with_optional", [True, False], ids=["optional-set", "optional-unset"])
def test_every_component_command_is_a_valid_ppe_invocation(
    built: Any, step: str, with_optional: bool
) -> None:
    command = built.components[step].command
    argvs = _ppe_argvs(command, with_optional)
    assert len(argvs) == 1, f"{step}: expected one ppe invocation in {command!r}"
    args = _parse(argvs[0], step)
    assert args.command == step
    if step != "report":
        assert args.config == CONFIG_FILE


def test_model_download_runs_a_valid_ppe_invocation(tmp_path: Path) -> None:
    from ppe.cli.aml import model_download_argv

    argv = model_download_argv(tmp_path / "champion", "smoke", ["train.epochs=1"])
    args = _parse([*argv, "--set", "registry.model_name=x"], "ppe aml models download")
    assert (args.command, args.action, args.champion, args.version) == (
        "models",
        "download",
        True,
        None,
    )
    assert "registry.backend=azureml" in args.overrides
    pinned = model_download_argv(tmp_path / "v7", "smoke", [], version=7)
    args = _parse(pinned, "ppe aml models download --version 7")
    assert (args.champion, args.version) == (False, 7)


def test_aml_models_download_takes_exactly_one_of_champion_or_version(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    dest = str(tmp_path / "model")
    for argv in (
        ["aml", "models", "download", "--dest", dest],
        ["aml", "models", "download", "--champion", "--version", "3", "--dest", dest],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "--champion" in capsys.readouterr().err
    assert main(["aml", "models", "download", "--version", "0", "--dest", dest]) == 1
    assert "--version 0: versions start at 1" in caplog.text
    assert not (tmp_path / "model").exists()


def test_code_snapshot_runs_ppe_like_the_job(built: Any, settings: AmlSettings) -> None:
    code = Path(built.code_dir)
    assert (code / "src" / "ppe" / "__init__.py").is_file()
    assert (code / "src" / "ppe" / "aml" / "components.py").is_file()
    assert (code / "pyproject.toml").read_bytes() == (REPO_ROOT / "pyproject.toml").read_bytes()
    assert not list(code.rglob("__pycache__")) and not list(code.rglob("*.pyc"))
    config = load_config(str(code / CONFIG_FILE))
    assert config.registry.backend == "azureml"
    assert config.registry.model_name == settings.model_name
    assert config.tracking.uri is None
    # The job's working folder is the snapshot, with PYTHONPATH=src (the component's env).
    for component in built.components.values():
        assert component.environment_variables["PYTHONPATH"] == "src"
    result = subprocess.run(
        [sys.executable, "-m", "ppe", "gate", "--help"],
        cwd=code,
        env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--challenger" in result.stdout


def test_environment_versions_follow_content(tmp_path: Path) -> None:
    specs = environment_specs(CONDA_DIR, BASE_IMAGE)
    assert specs == environment_specs(CONDA_DIR, BASE_IMAGE)
    assert all(len(spec.version) == 16 for spec in specs.values())
    assert specs[TRAIN_ENVIRONMENT].version != specs[CPU_ENVIRONMENT].version
    copy_dir = tmp_path / "conda"
    copy_dir.mkdir()
    for path in CONDA_DIR.glob("*.yml"):
        (copy_dir / path.name).write_bytes(path.read_bytes())
    assert environment_specs(copy_dir, BASE_IMAGE) == {
        name: spec.__class__(
            name, spec.version, spec.image, copy_dir.resolve() / spec.conda_file.name
        )
        for name, spec in specs.items()
    }
    edited = copy_dir / "cpu.yml"
    edited.write_text(edited.read_text() + "# edited\n")
    assert content_version(BASE_IMAGE, edited) != specs[CPU_ENVIRONMENT].version
    assert (
        content_version("another/image:1", CONDA_DIR / "cpu.yml") != specs[CPU_ENVIRONMENT].version
    )
    entity = specs[CPU_ENVIRONMENT].entity()
    assert (entity.name, entity.version, entity.image) == (
        CPU_ENVIRONMENT,
        specs[CPU_ENVIRONMENT].version,
        BASE_IMAGE,
    )


class FakeEnvironments:
    """Records MLClient.environments calls; unknown versions raise like the service."""

    def __init__(self) -> None:
        self.registered: dict[tuple[str, str], Any] = {}
        self.created = 0

    def get(self, name: str, version: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        if (name, version) not in self.registered:
            raise ResourceNotFoundError(f"environment {name}:{version} not found")
        return self.registered[name, version]

    def create_or_update(self, environment: Any) -> Any:
        self.created += 1
        self.registered[environment.name, environment.version] = environment
        return environment


def test_unchanged_environment_is_reused() -> None:
    client = type("FakeMLClient", (), {"environments": FakeEnvironments()})()
    spec = environment_specs(CONDA_DIR, BASE_IMAGE)[TRAIN_ENVIRONMENT]
    assert ensure_registered(client, spec) is True
    assert ensure_registered(client, spec) is False
    assert client.environments.created == 1
    registered = client.environments.registered[spec.name, spec.version]
    assert registered.conda_file["name"] == "ppe-train-gpu"


def _conda_pins(path: Path) -> dict[str, str]:
    document = yaml.safe_load(path.read_text())
    pip = next(item["pip"] for item in document["dependencies"] if isinstance(item, dict))
    pins = {}
    for entry in pip:
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==([^\s;]+)$", entry)
        # Every package is an exact pin of the locked version: a range escapes the lock's joint
        # resolution (azureml-mlflow>=1.62 beside mlflow-skinny 3.17 could never install).
        assert match, f"{path.name}: {entry!r} is not an exact pin (name==version from uv.lock)"
        pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("file_name", ["train-gpu.yml", "cpu.yml"])
def test_conda_pins_match_the_lockfile(file_name: str) -> None:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    locked = {package["name"]: package.get("version") for package in lock["package"]}
    pins = _conda_pins(CONDA_DIR / file_name)
    assert pins, f"{file_name}: no pinned pip packages"
    for name, version in pins.items():
        locked_name = "tensorflow-cpu" if name == "tensorflow" else name
        assert locked.get(locked_name) == version, f"{file_name}: {name}=={version}"
    core = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in core:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in pins, f"{file_name} lacks the core dependency {name}"


def test_cli_build_writes_a_portable_yaml(env_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "job" / "pipeline.yml"
    status = main(
        [
            *("aml", "build", "--config", "smoke", "--gpu-nodes", "2"),
            *("--env-file", str(env_file), "--out", str(out)),
        ]
    )
    assert status == 0
    text = out.read_text()
    assert str(tmp_path) not in text
    loaded = load_job(out)
    assert loaded._validate().passed
    assert loaded.jobs["train"].distribution.worker_count == 2
    assert loaded.jobs["train"].component.code == "code"
    assert (out.parent / "code" / CONFIG_FILE).is_file()
