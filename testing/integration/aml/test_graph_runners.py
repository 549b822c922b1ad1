"""The local runner and the Azure ML job are the same graph: same steps, inputs, outputs, argv.

The Azure ML side is read back from the job YAML that ``ppe aml build`` writes (not from the
graph module), the local side from the runner's plan; each Azure ML binding is mapped to the
folder the local runner uses for it. Adding a step, an input or an output to one runner only
fails :func:`test_both_runners_run_the_same_graph`; the negative controls show the comparison
sees each kind of drift.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from ppe.aml.components import PPE, ROOT_RUN_ID
from ppe.aml.pipeline import job_yaml
from ppe.pipeline import local
from ppe.run import graph
from ppe.run.layout import CONFIG_FILE, RunLayout

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.RemovedInMarshmallow4Warning")

BINDING = re.compile(r"\$\{\{(inputs|outputs)\.([A-Za-z0-9_]+)\}\}")
SOURCE = re.compile(r"^\$\{\{parent\.(?:inputs\.(\w+)|jobs\.(\w+)\.outputs\.(\w+))\}\}$")
RUN_ID = "run-1"

StepView = tuple[dict[str, str], tuple[str, ...], list[str]]


def azure_view(document: dict[str, Any], run: RunLayout) -> dict[str, StepView]:
    """Node -> (input -> the folder it reads, outputs, argv with the local run's folders)."""
    views: dict[str, StepView] = {}
    for name, node in document["jobs"].items():
        sources: dict[str, str] = {}
        for key, value in (node.get("inputs") or {}).items():
            match = SOURCE.match(str(value["path"]))
            assert match, f"{name}.{key}: unexpected binding {value}"
            sources[key] = match.group(1) or match.group(2)
            if match.group(2):
                assert match.group(3) == match.group(2), "an output is named after its step"
        outputs = tuple(node["component"].get("outputs") or {})

        def local_path(match: re.Match[str], sources: dict[str, str] = sources) -> str:
            kind, key = match.group(1), match.group(2)
            return str(run.port(sources[key] if kind == "inputs" else key))

        command = BINDING.sub(local_path, node["component"]["command"])
        argv = shlex.split(command.replace(ROOT_RUN_ID, RUN_ID))
        assert argv[: len(PPE.split())] == PPE.split(), f"{name}: not a ppe command"
        argv = [str(run.config) if a == CONFIG_FILE else a for a in argv[len(PPE.split()) :]]
        views[name] = (sources, outputs, argv)
    return views


def local_view(steps: list[tuple[graph.Step, list[str]]]) -> dict[str, StepView]:
    return {
        step.name: ({port: port for port in step.inputs}, (step.output,), argv)
        for step, argv in steps
    }


def differences(azure: dict[str, StepView], here: dict[str, StepView]) -> list[str]:
    found = [f"step {name!r} only on Azure ML" for name in azure.keys() - here.keys()]
    found += [f"step {name!r} only in the local runner" for name in here.keys() - azure.keys()]
    for name in azure.keys() & here.keys():
        for part, left, right in zip(
            ("inputs", "outputs", "argv"), azure[name], here[name], strict=True
        ):
            if left != right:
                found.append(f"{name} {part}: Azure ML {left!r} != local {right!r}")
    return found


@pytest.fixture
def views(built: Any, tmp_path: Path) -> tuple[dict[str, StepView], dict[str, StepView], Any]:
    run = RunLayout(tmp_path / RUN_ID)
    document = yaml.safe_load(job_yaml(built.job, tmp_path))
    planned = local.plan(run, {"data": run.port("data")}, RUN_ID, tracking=True)
    return azure_view(document, run), local_view(planned), document


def test_both_runners_run_the_same_graph(views: Any) -> None:
    azure, here, _ = views
    assert differences(azure, here) == []
    assert list(here) == list(graph.step_names())
    # The local order respects every Azure ML dependency.
    position = {name: index for index, name in enumerate(here)}
    for name, (sources, _, _) in azure.items():
        for source in sources.values():
            assert source == "data" or position[source] < position[name], (source, name)


def test_the_comparison_sees_a_missing_input(built: Any, tmp_path: Path, views: Any) -> None:
    _, here, document = views
    run = RunLayout(tmp_path / RUN_ID)
    broken = copy.deepcopy(document)
    del broken["jobs"]["gate"]["inputs"]["champion"]
    broken["jobs"]["gate"]["component"]["command"] = broken["jobs"]["gate"]["component"][
        "command"
    ].replace("--champion-dir ${{inputs.champion}} ", "")
    found = differences(azure_view(broken, run), here)
    assert any(item.startswith("gate inputs") for item in found), found
    assert any(item.startswith("gate argv") for item in found), found


def test_the_comparison_sees_an_extra_step_or_output(tmp_path: Path, views: Any) -> None:
    azure, here, _ = views
    run = RunLayout(tmp_path / RUN_ID)
    extra = graph.Step(name="lint", description="x", argv=("data", "check", graph.In("data")))
    planned = [*local.plan(run, {"data": run.port("data")}, RUN_ID, True), (extra, [])]
    assert "step 'lint' only in the local runner" in differences(azure, local_view(planned))
    renamed = dict(here)
    inputs, _, argv = renamed["export"]
    renamed["export"] = (inputs, ("export", "extra"), argv)
    assert any(item.startswith("export outputs") for item in differences(azure, renamed))


def test_graph_check_refuses_an_input_read_before_it_is_written() -> None:
    graph.check_graph()
    backwards = tuple(reversed(graph.STEPS))
    with pytest.raises(graph.GraphError, match="reads"):
        graph.check_graph(backwards)
    with pytest.raises(graph.GraphError, match="already used"):
        graph.check_graph((*graph.STEPS, graph.STEPS[0]))
