"""The training pipeline's step graph, written once.

Each :class:`Step` names its inputs (the graph input ``data`` or earlier steps' outputs), its one
output folder (named after the step) and the ``ppe`` command line that runs it, as tokens:
:class:`In` (a path inside an input folder), :class:`Out` (a path inside the step's output
folder) and the :class:`Token` values that each runner renders its own way (the config file, the
run id, whether to track). Both runners are generated from :data:`STEPS`:

* :mod:`ppe.pipeline.local` (``ppe pipeline run``) renders the tokens to folders of the run
  (:class:`ppe.run.layout.RunLayout`) and runs the steps in order, in one process;
* :mod:`ppe.aml.components` renders them to Azure ML's ``${{inputs.*}}``/``${{outputs.*}}``
  bindings, one command component per step, wired by the same inputs.

So a step, an input or an output cannot exist in one runner and not the other. Resolving the
registry's champion and evaluating it on the run's data is the ``champion`` step: on Azure ML it
runs inside the job against the workspace's registry, so no caller has to pass it in.

Standard library only (the CLI and the Azure ML builder import it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from ppe.errors import GraphError
from ppe.run import layout

#: The pipeline's inputs (on Azure ML: the registered data asset; locally: the prepared data).
GRAPH_INPUTS: tuple[str, ...] = (layout.DATA_DIR,)


@dataclass(frozen=True)
class In:
    """A path inside an input folder: ``port`` (a graph input or a step), then ``path``."""

    port: str
    path: str = ""


@dataclass(frozen=True)
class Out:
    """A path inside the step's own output folder."""

    path: str = ""


class Token(enum.Enum):
    """Arguments each runner renders differently."""

    #: The resolved config file (the run's ``config.yaml``; the snapshot's on Azure ML).
    CONFIG = "config"
    #: The pipeline run id (``$AZUREML_ROOT_RUN_ID`` on Azure ML).
    RUN_ID = "run_id"
    #: ``--no-tracking`` when the local run is asked not to track (Azure ML always tracks).
    NO_TRACKING = "no_tracking"


Arg = str | In | Out | Token


@dataclass(frozen=True)
class Step:
    """One step of the graph.

    Attributes:
        name: Step name, also the name of its output folder (and of the Azure ML node).
        description: One line for the component and the docs.
        argv: The ``ppe`` arguments (after ``ppe``).
        after: Steps this one must follow without reading their output (an order-only input).
        compute: ``gpu`` for the training cluster, ``cpu`` for the rest.
        registry: Whether the step reads or writes the model registry (on Azure ML it gets the
            workspace's names as environment variables).
        deterministic: False when the step has side effects (Azure ML must not reuse a result).
        distributed: Whether the step runs once per worker with ``--gpu-nodes N``.
    """

    name: str
    description: str
    argv: tuple[Arg, ...]
    after: tuple[str, ...] = ()
    compute: Literal["gpu", "cpu"] = "cpu"
    registry: bool = False
    deterministic: bool = True
    distributed: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        """The folders the step reads, in first-use order, then the order-only ones."""
        seen: dict[str, None] = {}
        for arg in self.argv:
            if isinstance(arg, In):
                seen.setdefault(arg.port, None)
        for port in self.after:
            seen.setdefault(port, None)
        return tuple(seen)

    @property
    def output(self) -> str:
        """The step's output folder (named after the step)."""
        return self.name

    def render(
        self,
        source: Callable[[In], str],
        target: Callable[[Out], str],
        token: Callable[[Token], str | None],
    ) -> list[str]:
        """The argv with each token rendered by a runner (a None token is left out)."""
        argv: list[str] = []
        for arg in self.argv:
            if isinstance(arg, In):
                argv.append(source(arg))
            elif isinstance(arg, Out):
                argv.append(target(arg))
            elif isinstance(arg, Token):
                value = token(arg)
                if value is not None:
                    argv.append(value)
            else:
                argv.append(arg)
        return argv


_CONFIG = ("--config", Token.CONFIG)

#: The steps in an order that respects every input (the local runner's order).
STEPS: tuple[Step, ...] = (
    Step(
        name="champion",
        description="Find the registry's champion, download it and evaluate it on this data.",
        argv=("champion", "--data", In("data"), "--out", Out(), *_CONFIG),
        registry=True,
        # The champion may change between runs: never reuse an earlier result.
        deterministic=False,
    ),
    Step(
        name="train",
        description="Train YOLOv3 on the VOC data (MultiWorkerMirroredStrategy across nodes).",
        argv=("train", "--data", In("data"), "--out", Out(), *_CONFIG, Token.NO_TRACKING),
        compute="gpu",
        distributed=True,
    ),
    Step(
        name="evaluate",
        description="mAP@0.5 (PASCAL VOC) of the trained model on the evaluation split.",
        argv=(
            "evaluate",
            "--model",
            In("train", layout.MODEL_DIR),
            "--data",
            In("data"),
            "--out",
            Out(),
            *_CONFIG,
        ),
    ),
    Step(
        name="gate",
        description="Champion/challenger decision on the same data; the first model wins.",
        argv=(
            "gate",
            "--challenger",
            In("evaluate", layout.METRICS_FILE),
            "--champion-dir",
            In("champion"),
            "--out",
            Out(layout.GATE_FILE),
            *_CONFIG,
        ),
    ),
    Step(
        name="register",
        description="Register the candidate in the model registry; champion if promoted.",
        argv=(
            "register",
            "--model",
            In("train", layout.MODEL_DIR),
            "--gate",
            In("gate", layout.GATE_FILE),
            "--metrics",
            In("evaluate", layout.METRICS_FILE),
            "--run-id",
            Token.RUN_ID,
            "--out",
            Out(layout.REGISTER_FILE),
            *_CONFIG,
        ),
        registry=True,
        deterministic=False,
    ),
    Step(
        name="export",
        description="LiteRT export (fp32 and int8) of the candidate, with per-backend metrics.",
        argv=(
            "export",
            "--model",
            In("train", layout.MODEL_DIR),
            "--data",
            In("data"),
            "--out",
            Out(),
            *_CONFIG,
        ),
        # Export after registration, so a failed registration stops the run before it.
        after=("register",),
    ),
    Step(
        name="report",
        description="HTML report of the run (evaluation, gate, champion, training, samples).",
        argv=(
            "report",
            "--train",
            In("train"),
            "--evaluate",
            In("evaluate"),
            "--champion",
            In("champion"),
            "--gate",
            In("gate"),
            "--register",
            In("register"),
            "--data",
            In("data"),
            "--run-id",
            Token.RUN_ID,
            "--out",
            Out(),
        ),
    ),
)


def check_graph(steps: tuple[Step, ...] = STEPS, inputs: tuple[str, ...] = GRAPH_INPUTS) -> None:
    """Check names are unique and every input exists before the step that reads it.

    Raises:
        GraphError: a duplicate name, or an input that no earlier step or graph input provides.
    """
    available = set(inputs)
    for step in steps:
        if step.name in available:
            raise GraphError(f"step {step.name!r}: the name is already used")
        missing = [port for port in step.inputs if port not in available]
        if missing:
            raise GraphError(f"step {step.name!r} reads {missing} before any step writes them")
        available.add(step.output)


def step(name: str) -> Step:
    """The step called ``name``."""
    for item in STEPS:
        if item.name == name:
            return item
    raise KeyError(name)


def step_names() -> tuple[str, ...]:
    """The step names in order."""
    return tuple(item.name for item in STEPS)


def edges() -> Iterator[tuple[str, str]]:
    """(source, step) for every input of every step, graph inputs included."""
    for item in STEPS:
        for port in item.inputs:
            yield port, item.name
