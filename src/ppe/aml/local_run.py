"""``ppe aml run-local``: run the pipeline job YAML that ``ppe aml build`` wrote, on this machine.

What Azure ML does for each node, done here (so a pipeline change can be checked before paying
for a cluster, and the suite checks the cloud graph's behaviour, not only its shape):

* nodes run in dependency order (an input bound to ``${{parent.jobs.<node>.outputs.<name>}}``
  waits for that node);
* each node runs in its own copy of the component's ``code`` folder, the job's working folder;
* ``${{inputs.<name>}}`` and ``${{outputs.<name>}}`` in the command become folders, and an
  optional block ``$[[...]]`` is kept only when every input it names is bound
  (https://learn.microsoft.com/azure/machine-learning/how-to-use-optional-input-output);
* the command runs through a shell with the component's ``environment_variables`` plus the
  variables Azure ML sets in a job (``AZUREML_ROOT_RUN_ID``, ``AZUREML_RUN_ID``,
  ``MLFLOW_TRACKING_URI``) and, for a TensorFlow distribution, one process per worker with
  ``TF_CONFIG`` (https://learn.microsoft.com/azure/machine-learning/how-to-train-tensorflow);
* the model registry: the working copy's ``config.yaml`` names the local registry backend at
  ``--registry`` instead of the workspace's (the one change from the cloud).

The interpreter running ``ppe`` is the job's ``python`` (it comes first on ``PATH``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ppe.errors import RunLocalError
from ppe.run.layout import CONFIG_FILE

logger = logging.getLogger(__name__)

_BINDING = re.compile(r"\$\{\{(inputs|outputs)\.([A-Za-z0-9_]+)\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.DOTALL)
_PARENT_INPUT = re.compile(r"^\$\{\{parent\.inputs\.([A-Za-z0-9_]+)\}\}$")
_PARENT_OUTPUT = re.compile(r"^\$\{\{parent\.jobs\.([A-Za-z0-9_]+)\.outputs\.([A-Za-z0-9_]+)\}\}$")
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class Node:
    """One node of the pipeline job, as the YAML holds it."""

    name: str
    command: str
    code: Path
    environment_variables: dict[str, str]
    inputs: dict[str, str]  # input name -> the binding of the node's input
    outputs: tuple[str, ...]
    worker_count: int = 1
    declared_inputs: dict[str, bool] = field(default_factory=dict)  # name -> optional

    def sources(self) -> set[str]:
        """The nodes whose outputs this node reads."""
        found = set()
        for binding in self.inputs.values():
            match = _PARENT_OUTPUT.match(binding)
            if match:
                found.add(match.group(1))
        return found


@dataclass(frozen=True)
class LocalRunResult:
    """What ``run-local`` did: the nodes in the order they ran and their output folders."""

    run_id: str
    order: tuple[str, ...]
    outputs: dict[str, dict[str, Path]]


def load_pipeline_job(path: Path) -> tuple[dict[str, Any], dict[str, Node]]:
    """Read a pipeline job YAML and its nodes.

    Returns:
        (the job's ``inputs`` mapping, node name -> :class:`Node`).

    Raises:
        RunLocalError: not a YAML mapping, not a pipeline job, or a node without an inline
            command component.
    """
    fix = "pass the YAML that `ppe aml build --out FILE` wrote"
    if not path.is_file():
        raise RunLocalError(f"{path}: no such file; {fix}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RunLocalError(f"{path}: not valid YAML ({error}); {fix}") from None
    if not isinstance(document, dict) or document.get("type") != "pipeline":
        kind = document.get("type") if isinstance(document, dict) else type(document).__name__
        raise RunLocalError(f"{path}: not an Azure ML pipeline job (type {kind!r}); {fix}")
    jobs = document.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise RunLocalError(f"{path}: the pipeline job has no jobs; {fix}")
    nodes: dict[str, Node] = {}
    for name, job in jobs.items():
        component = job.get("component") if isinstance(job, dict) else None
        if not isinstance(component, dict) or not isinstance(component.get("command"), str):
            raise RunLocalError(
                f"{path}: node {name!r} has no inline command component; run-local runs the "
                f"command components `ppe aml build` writes; {fix}"
            )
        distribution = job.get("distribution") or {}
        workers = 1
        if distribution:
            if distribution.get("type") != "tensorflow":
                raise RunLocalError(
                    f"{path}: node {name!r} has a {distribution.get('type')!r} distribution; "
                    "run-local runs TensorFlow multi-worker jobs only"
                )
            workers = int(distribution.get("worker_count") or 1)
        code = Path(str(component.get("code", ".")))
        nodes[name] = Node(
            name=name,
            command=component["command"],
            code=code if code.is_absolute() else (path.parent / code).resolve(),
            environment_variables={
                str(k): str(v) for k, v in (component.get("environment_variables") or {}).items()
            },
            inputs={
                key: str(value.get("path", "")) if isinstance(value, dict) else str(value)
                for key, value in (job.get("inputs") or {}).items()
            },
            outputs=tuple(component.get("outputs") or {}),
            worker_count=workers,
            declared_inputs={
                key: bool(spec.get("optional", False)) if isinstance(spec, dict) else False
                for key, spec in (component.get("inputs") or {}).items()
            },
        )
    return document.get("inputs") or {}, nodes


def order_nodes(nodes: Mapping[str, Node]) -> list[str]:
    """The nodes in dependency order (ties in the YAML's order).

    Raises:
        RunLocalError: a node reads an unknown node or the nodes form a cycle.
    """
    for node in nodes.values():
        unknown = node.sources() - set(nodes)
        if unknown:
            raise RunLocalError(
                f"node {node.name!r} reads the outputs of unknown {sorted(unknown)}"
            )
    done: list[str] = []
    pending = list(nodes)
    while pending:
        ready = [name for name in pending if nodes[name].sources() <= set(done)]
        if not ready:
            raise RunLocalError(f"the nodes {pending} depend on each other in a cycle")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def substitute(command: str, inputs: Mapping[str, Path], outputs: Mapping[str, Path]) -> str:
    """Azure ML's command substitution: bindings to paths, optional blocks kept or dropped.

    Raises:
        RunLocalError: the command names an input or output that is not bound.
    """

    def optional(match: re.Match[str]) -> str:
        names = [m.group(2) for m in _BINDING.finditer(match.group(1)) if m.group(1) == "inputs"]
        return match.group(1) if all(name in inputs for name in names) else ""

    text = _OPTIONAL.sub(optional, command)

    def binding(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        table = inputs if kind == "inputs" else outputs
        if name not in table:
            raise RunLocalError(f"the command names {kind}.{name}, which is not bound: {command}")
        return str(table[name])

    return _BINDING.sub(binding, text)


def free_ports(count: int) -> list[int]:
    """``count`` free TCP ports on the loopback interface."""
    sockets = []
    try:
        for _ in range(count):
            handle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            handle.bind(("127.0.0.1", 0))
            sockets.append(handle)
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def tf_config(ports: list[int], index: int) -> str:
    """``TF_CONFIG`` as Azure ML's TensorFlow distribution sets it (workers only)."""
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def _prepare_code(node: Node, work: Path, registry_root: Path) -> None:
    """Copy the node's code snapshot and point its config at the local registry."""
    from ppe.config import load_config

    shutil.copytree(node.code, work)
    config_path = work / CONFIG_FILE
    if config_path.is_file():
        overrides = ["registry.backend=local", f"registry.root={registry_root}"]
        load_config(str(config_path), overrides).save(config_path)


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def run_pipeline_job(
    job_file: Path,
    out: Path,
    *,
    data: Mapping[str, Path],
    registry_root: Path,
    run_id: str,
    environ: Mapping[str, str],
) -> LocalRunResult:
    """Run every node of a pipeline job YAML on this machine.

    Args:
        job_file: The job YAML (``ppe aml build --out``).
        out: A new or empty folder: ``outputs/<node>/<output>/``, ``work/<node>/`` (the job's
            working folders), ``logs/<node>[.<worker>].log`` and ``mlflow.db``.
        data: Pipeline input name -> local folder (for inputs bound to ``azureml:`` assets).
        registry_root: The local registry that stands in for the workspace's.
        run_id: The pipeline run id (``AZUREML_ROOT_RUN_ID``).
        environ: The base environment of the component processes (``PATH``, ``HOME``...).

    Returns:
        The :class:`LocalRunResult`.

    Raises:
        RunLocalError: bad YAML, an input without a local folder, or a node that failed (the
            message names it and its log; later nodes do not run).
    """
    job_inputs, nodes = load_pipeline_job(job_file)
    order = order_nodes(nodes)
    bound: dict[str, Path] = {}
    for name, spec in job_inputs.items():
        if name in data:
            bound[name] = Path(data[name]).resolve()
            continue
        path = str(spec.get("path", "")) if isinstance(spec, dict) else str(spec)
        if path and not path.startswith("azureml:") and "://" not in path:
            bound[name] = (job_file.parent / path).resolve()
        else:
            raise RunLocalError(
                f"{job_file}: pipeline input {name!r} is {path!r}, which is not on this machine; "
                f"pass --input {name}=DIR (a local folder with the same content)"
            )
    for name, folder in bound.items():
        if not folder.exists():
            raise RunLocalError(f"pipeline input {name!r}: {folder} does not exist")
    if out.exists() and any(out.iterdir()):
        raise RunLocalError(f"{out} is not empty; choose a new --out folder")
    out = out.resolve()
    registry_root = registry_root.resolve()
    base_env = dict(environ)
    base_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base_env.get("PATH", "")])
    base_env["AZUREML_ROOT_RUN_ID"] = run_id
    base_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlflow.db'}"
    base_env.pop("TF_CONFIG", None)
    plans = _bind_nodes(nodes, order, bound, job_file)
    produced = {
        name: {key: out / "outputs" / name / key for key in nodes[name].outputs} for name in order
    }
    (out / "logs").mkdir(parents=True)
    for name in order:
        node = nodes[name]
        inputs = {
            key: bound[source] if output is None else produced[source][output]
            for key, (source, output) in plans[name].items()
        }
        for folder in produced[name].values():
            folder.mkdir(parents=True)
        work = out / "work" / name
        _prepare_code(node, work, registry_root)
        command = substitute(node.command, inputs, produced[name])
        env = {**base_env, **node.environment_variables, "AZUREML_RUN_ID": f"{run_id}_{name}"}
        _run_node(name, command, work, env, node.worker_count, out / "logs")
        logger.info("node %s finished", name)
    return LocalRunResult(run_id, tuple(order), produced)


#: Where a node's input comes from: (pipeline input, None) or (node, that node's output).
Source = tuple[str, str | None]


def _bind_nodes(
    nodes: Mapping[str, Node], order: list[str], bound: Mapping[str, Path], job_file: Path
) -> dict[str, dict[str, Source]]:
    """Resolve every node's inputs before any node runs (a bad job changes nothing).

    Raises:
        RunLocalError: an input bound to an unknown pipeline input or node output, a binding
            run-local does not know, or a required input that is not bound.
    """
    fix = "rebuild the job with `ppe aml build`"
    plans: dict[str, dict[str, Source]] = {}
    for name in order:
        node = nodes[name]
        plan: dict[str, Source] = {}
        for key, binding in node.inputs.items():
            parent = _PARENT_INPUT.match(binding)
            source = _PARENT_OUTPUT.match(binding)
            if parent and parent.group(1) in bound:
                plan[key] = (parent.group(1), None)
            elif source and source.group(2) in nodes[source.group(1)].outputs:
                plan[key] = (source.group(1), source.group(2))
            elif source:
                raise RunLocalError(
                    f"node {name!r}: input {key!r} reads {binding}, which node "
                    f"{source.group(1)!r} does not output; {fix}"
                )
            elif parent:
                raise RunLocalError(
                    f"node {name!r}: input {key!r} reads an unknown pipeline input; {fix}"
                )
            else:
                raise RunLocalError(
                    f"node {name!r}: input {key!r} has an unsupported binding {binding!r}; {fix}"
                )
        missing = [
            key
            for key, optional in node.declared_inputs.items()
            if not optional and key not in plan
        ]
        if missing:
            raise RunLocalError(
                f"node {name!r}: required input(s) {missing} are not bound in {job_file}; bind "
                f"them in the job ({fix})"
            )
        # The command names only bound inputs and declared outputs (checked with stand-ins).
        substitute(
            node.command, {key: Path(key) for key in plan}, {k: Path(k) for k in node.outputs}
        )
        if not node.code.is_dir():
            raise RunLocalError(
                f"node {name!r}: its code folder {node.code} does not exist; run-local needs the "
                "code snapshot `ppe aml build --out` writes beside the job YAML"
            )
        plans[name] = plan
    return plans


def _run_node(
    name: str, command: str, work: Path, env: dict[str, str], workers: int, logs: Path
) -> None:
    """Run the node's command (once per worker) and wait; raise if any process fails."""
    logger.info("== node %s%s: %s", name, f" ({workers} workers)" if workers > 1 else "", command)
    ports = free_ports(workers) if workers > 1 else []
    processes = []
    for index in range(workers):
        log = logs / (f"{name}.{index}.log" if workers > 1 else f"{name}.log")
        worker_env = dict(env)
        if workers > 1:
            worker_env["TF_CONFIG"] = tf_config(ports, index)
        handle = log.open("w", encoding="utf-8")
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=work,
            env=worker_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, handle, log))
    failures: list[tuple[int, Path]] = []
    running = list(processes)
    while running:
        for item in list(running):
            process, handle, log = item
            status = process.poll()
            if status is None:
                continue
            running.remove(item)
            handle.close()
            if status != 0:
                failures.append((status, log))
        if failures:
            # A failed worker leaves the others waiting for it forever: stop them.
            for process, handle, _ in running:
                process.terminate()
                process.wait()
                handle.close()
            running = []
        elif running:
            time.sleep(0.2)
    if failures:
        status, log = failures[0]
        raise RunLocalError(
            f"node {name!r} failed (exit status {status}); the later nodes did not run. Its log "
            f"{log} ends with:\n{_tail(log)}\nFix the cause and run again into a new --out folder"
        )
