"""``ppe aml run-local``'s parts: Azure ML's command substitution, node order, TF_CONFIG, and the
refusals of a job file it cannot run (the end-to-end runs are in testing/integration/aml)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from ppe.aml.local_run import (
    Node,
    RunLocalError,
    free_ports,
    load_pipeline_job,
    order_nodes,
    run_pipeline_job,
    substitute,
    tf_config,
)
from ppe.cli import main


def test_bindings_become_folders_and_optional_blocks_follow_their_inputs() -> None:
    command = (
        "python -m ppe gate --challenger ${{inputs.evaluate}}/metrics.json "
        "$[[--champion ${{inputs.champion}}/metrics.json]] --out ${{outputs.gate}}/gate.json"
    )
    outputs = {"gate": Path("/o/gate")}
    with_champion = substitute(
        command, {"evaluate": Path("/i/e"), "champion": Path("/i/c")}, outputs
    )
    assert with_champion == (
        "python -m ppe gate --challenger /i/e/metrics.json --champion /i/c/metrics.json "
        "--out /o/gate/gate.json"
    )
    # An optional input that is not bound drops its whole $[[...]] block, as Azure ML does.
    without = substitute(command, {"evaluate": Path("/i/e")}, outputs)
    assert without == ("python -m ppe gate --challenger /i/e/metrics.json  --out /o/gate/gate.json")
    with pytest.raises(RunLocalError, match=r"inputs.evaluate, which is not bound"):
        substitute(command, {}, outputs)


def _node(name: str, *sources: str) -> Node:
    return Node(
        name=name,
        command="true",
        code=Path("."),
        environment_variables={},
        inputs={s: f"${{{{parent.jobs.{s}.outputs.{s}}}}}" for s in sources},
        outputs=(name,),
    )


def test_nodes_run_after_the_nodes_they_read() -> None:
    nodes = {
        "report": _node("report", "gate", "train"),
        "gate": _node("gate", "train"),
        "train": _node("train"),
    }
    assert order_nodes(nodes) == ["train", "gate", "report"]
    with pytest.raises(RunLocalError, match="cycle"):
        order_nodes({"a": _node("a", "b"), "b": _node("b", "a")})
    with pytest.raises(RunLocalError, match="unknown"):
        order_nodes({"a": _node("a", "missing")})


def test_tf_config_is_azure_mls_worker_cluster_on_loopback() -> None:
    ports = free_ports(2)
    assert len(set(ports)) == 2
    document = json.loads(tf_config(ports, 1))
    assert document == {
        "cluster": {"worker": [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"]},
        "task": {"type": "worker", "index": 1},
    }


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("type: command\ncommand: echo hi\n", "not an Azure ML pipeline job \\(type 'command'\\)"),
        ("- a\n- b\n", "not an Azure ML pipeline job \\(type 'list'\\)"),
        ("type: pipeline\njobs: {}\n", "has no jobs"),
        ("type: pipeline\njobs:\n  a:\n    component: azureml:x:1\n", "no inline command"),
        (": : :\n", "not valid YAML"),
    ],
)
def test_a_file_that_is_not_a_built_pipeline_job_is_refused(
    tmp_path: Path, content: str, match: str
) -> None:
    job = tmp_path / "job.yml"
    job.write_text(content)
    with pytest.raises(RunLocalError, match=match):
        load_pipeline_job(job)
    with pytest.raises(RunLocalError, match="no such file"):
        load_pipeline_job(tmp_path / "missing.yml")


def test_only_tensorflow_distributions_run(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    node = {
        "type": "command",
        "component": {"command": "true", "code": "."},
        "distribution": {"type": "pytorch", "process_count_per_instance": 2},
    }
    job.write_text(yaml.safe_dump({"type": "pipeline", "jobs": {"train": node}}))
    with pytest.raises(RunLocalError, match="'pytorch' distribution"):
        load_pipeline_job(job)


def test_the_cli_names_the_file_and_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = tmp_path / "job.yml"
    job.write_text("type: command\ncommand: echo hi\n")
    out, registry = tmp_path / "out", tmp_path / "registry"
    argv = ["aml", "run-local", "--job", str(job), "--out", str(out), "--registry", str(registry)]
    assert main(argv) == 1
    assert "not an Azure ML pipeline job" in caplog.text
    assert "ppe aml build --out FILE" in caplog.text
    assert not out.exists() and not registry.exists()
    assert main(["aml", "run-local", "--job", str(job), "--out", str(out), "--input", "x"]) == 1
    assert "write NAME=DIR" in caplog.text


def _two_node_job(tmp_path: Path, second: dict[str, object]) -> Path:
    """A pipeline job whose first node leaves a mark when it runs (plain shell, no ppe)."""
    (tmp_path / "code").mkdir()
    first = {
        "type": "command",
        "component": {
            "code": "code",
            "command": "touch ${{outputs.first}}/ran",
            "outputs": {"first": {"type": "uri_folder"}},
        },
    }
    job = tmp_path / "job.yml"
    document = {"type": "pipeline", "jobs": {"first": first, "second": second}}
    job.write_text(yaml.safe_dump(document))
    return job


@pytest.mark.parametrize(
    ("second", "match"),
    [
        (
            {
                "type": "command",
                "inputs": {"a": {"path": "${{parent.jobs.first.outputs.first}}"}},
                "component": {
                    "code": "code",
                    "command": "ls ${{inputs.a}} ${{inputs.b}}",
                    "inputs": {"a": {"type": "uri_folder"}, "b": {"type": "uri_folder"}},
                },
            },
            r"node 'second': required input\(s\) \['b'\] are not bound .*ppe aml build",
        ),
        (
            {
                "type": "command",
                "inputs": {"a": {"path": "${{parent.jobs.first.outputs.model}}"}},
                "component": {"code": "code", "command": "ls ${{inputs.a}}"},
            },
            r"node 'second': input 'a' reads .*which node 'first' does not output",
        ),
        (
            {
                "type": "command",
                "component": {"code": "code", "command": "ls ${{inputs.a}}"},
            },
            r"inputs\.a, which is not bound",
        ),
        (
            {"type": "command", "component": {"code": "missing", "command": "true"}},
            r"node 'second': its code folder .*missing does not exist",
        ),
    ],
)
def test_a_bad_binding_in_a_later_node_is_refused_before_any_node_runs(
    tmp_path: Path, second: dict[str, object], match: str
) -> None:
    job = _two_node_job(tmp_path, second)
    out, registry = tmp_path / "out", tmp_path / "registry"
    with pytest.raises(RunLocalError, match=match):
        run_pipeline_job(
            job, out, data={}, registry_root=registry, run_id="r", environ=dict(os.environ)
        )
    # Nothing ran: the first node left no mark, and neither folder was made.
    assert not out.exists() and not registry.exists()


def test_a_job_with_good_bindings_runs_its_nodes_in_order(tmp_path: Path) -> None:
    second = {
        "type": "command",
        "inputs": {"a": {"path": "${{parent.jobs.first.outputs.first}}"}},
        "component": {
            "code": "code",
            "command": "cp ${{inputs.a}}/ran ${{outputs.second}}/copied",
            "inputs": {"a": {"type": "uri_folder"}},
            "outputs": {"second": {"type": "uri_folder"}},
        },
    }
    job = _two_node_job(tmp_path, second)
    result = run_pipeline_job(
        job,
        tmp_path / "out",
        data={},
        registry_root=tmp_path / "registry",
        run_id="r",
        environ=dict(os.environ),
    )
    assert result.order == ("first", "second")
    assert (result.outputs["second"]["second"] / "copied").is_file()
