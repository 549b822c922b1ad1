"""The devices' registry password rotates with overlap, on a schedule, and reaches them in time.

Rules encoded here:

- An ACR token password stops authenticating when it expires
  (https://learn.microsoft.com/azure/container-registry/container-registry-token-based-repository-permissions).
- `azurerm_container_registry_token_password` is one resource per token: a new `expiry` in either
  slot replaces it, and its delete empties both slots of the token
  (https://github.com/hashicorp/terraform-provider-azurerm/pull/19140,
  internal/services/containers/container_registry_token_password_resource.go). Overlap therefore
  needs two tokens taking turns, never the two slots of one.
- edgeAgent pulls module images with the registryCredentials of its desired properties, so a new
  password reaches a device only through a new deployment
  (https://learn.microsoft.com/azure/iot-edge/module-composition).
- A scheduled Azure Pipelines run happens, when nothing was committed since the last one, only
  with `always: true`; cron times are UTC
  (https://learn.microsoft.com/azure/devops/pipelines/yaml-schema/schedules-cron).

The year-long simulation evaluates the Terraform locals (HashiCorp's parser, the evaluator of
terraform_config.py) at every simulated plan, and takes the run times from the pipelines' own
cron schedules.
"""

from __future__ import annotations

import datetime as dt
import heapq
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .terraform_config import (
    INFRASTRUCTURE,
    PLAN_TIMESTAMP,
    REPO_ROOT,
    Block,
    evaluate,
    expression_asts,
    iter_blocks,
    parse_files,
    unwrap,
)

EDGE = INFRASTRUCTURE / "modules" / "edge"
PIPELINES = REPO_ROOT / "ado_pipelines"
SCHEDULED = {"iac": "iac_pipeline.yml", "edge": "edge_deployment_pipeline.yml"}
DAY = dt.timedelta(days=1)


# ------------------------------------------------------------------------------------------------
# The Terraform side, evaluated
# ------------------------------------------------------------------------------------------------


class _Lazy(Mapping[str, Any]):
    """Values computed on first access from syntax trees (Terraform's `local` and module `var`)."""

    def __init__(
        self, trees: Mapping[str, Any], scope: dict[str, Any], fallback: Mapping[str, Any]
    ) -> None:
        self._trees, self._scope, self._fallback = trees, scope, fallback
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            if name in self._trees:
                self._values[name] = self._evaluate(self._trees[name])
            else:
                self._values[name] = self._fallback[name]
        return self._values[name]

    def _evaluate(self, tree: Any) -> Any:
        # hcl2json writes an object constructor as a JSON object of expressions.
        if isinstance(tree, _Object):
            return {key: self._evaluate(value) for key, value in tree.items()}
        return evaluate(tree, self._scope)

    def __iter__(self) -> Iterator[str]:
        return iter({*self._trees, *self._fallback})

    def __len__(self) -> int:
        return len({*self._trees, *self._fallback})


class _Object(dict[str, Any]):
    """An HCL object constructor: its attributes' syntax trees."""


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    else:
        yield path, unwrap(value)


def _trees(values: Mapping[str, Any]) -> dict[str, Any]:
    """Syntax trees of named expressions, objects kept as `_Object`s of trees."""
    leaves = [(name, path, text) for name, value in values.items() for path, text in _leaves(value)]
    result: dict[str, Any] = {}
    for (name, path, _), tree in zip(leaves, expression_asts([t for *_, t in leaves]), strict=True):
        if not path:
            result[name] = tree
            continue
        node = result.setdefault(name, _Object())
        for key in path[:-1]:
            node = node.setdefault(key, _Object())
        node[path[-1]] = tree
    return result


@dataclass
class Stack:
    """Syntax trees of what the rotation depends on, root module and module edge."""

    root_defaults: dict[str, Any]
    root_locals: dict[str, Any]
    module_arguments: dict[str, Any]
    module_defaults: dict[str, Any]
    module_locals: dict[str, Any]
    preconditions: list[tuple[Any, str]]
    blocks: list[Block] = field(repr=False)

    def scopes(
        self, overrides: Mapping[str, Any], module_path: Path = INFRASTRUCTURE
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Root and module scopes for one plan, with root variables overridden."""
        root: dict[str, Any] = {"path": {"module": str(module_path)}}
        root["var"] = {**self.root_defaults, **overrides}
        root["local"] = _Lazy(self.root_locals, root, {})
        module: dict[str, Any] = {"path": {"module": str(module_path / "modules" / "edge")}}
        module["var"] = _Lazy(self.module_arguments, root, self.module_defaults)
        module["local"] = _Lazy(self.module_locals, module, {})
        return root, module

    def plan(self, at: dt.datetime, overrides: Mapping[str, Any]) -> Desired:
        """What a plan at `at` wants: each slot's generation and expiry, and the current slot."""
        token = PLAN_TIMESTAMP.set(at)
        try:
            _, module = self.scopes(overrides)
            local = module["local"]
            slots = {
                slot: (generation, _time(local["password_slot_expiry"][slot]))
                for slot, generation in local["password_slot_generation"].items()
            }
            return Desired(slots, local["password_current_slot"])
        finally:
            PLAN_TIMESTAMP.reset(token)

    def refusals(
        self, overrides: Mapping[str, Any], module_path: Path = INFRASTRUCTURE
    ) -> list[str]:
        """Error messages of the failing preconditions of output edge_registry_password_rotation."""
        root, _ = self.scopes(overrides, module_path)
        return [message for tree, message in self.preconditions if evaluate(tree, root) is not True]


@dataclass(frozen=True)
class Desired:
    slots: dict[str, tuple[int, dt.datetime]]
    current: str


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _defaults(blocks: list[Block], folder: Path) -> dict[str, Any]:
    return {
        b.labels[0]: b.body.get("default")
        for b in blocks
        if b.kind == "variable" and b.file.parent == folder
    }


@pytest.fixture(scope="module")
def stack() -> Stack:
    files = [
        INFRASTRUCTURE / name for name in ("variables.tf", "main.edge.tf", "outputs.tf")
    ] + sorted(EDGE.glob("*.tf"))
    blocks = list(iter_blocks(parse_files(files)))
    root_locals: dict[str, Any] = {}
    module_locals: dict[str, Any] = {}
    for block in blocks:
        if block.kind == "locals":
            (module_locals if block.file.parent == EDGE else root_locals).update(block.body)
    module_block = next(b for b in blocks if b.kind == "module" and b.labels == ("edge",))
    arguments = {k: v for k, v in module_block.body.items() if k not in ("source", "depends_on")}
    wanted = ("edge_registry_password_rotation",)
    output = next((b for b in blocks if b.kind == "output" and b.labels == wanted), None)
    conditions = output.body.get("precondition", []) if output else []
    # One parser run for every expression (each run starts the WASM parser).
    trees = _trees(
        {
            "root": root_locals,
            "argument": arguments,
            "module": module_locals,
            "precondition": {str(i): c["condition"] for i, c in enumerate(conditions)},
        }
    )
    return Stack(
        root_defaults=_defaults(blocks, INFRASTRUCTURE),
        root_locals=dict(trees.get("root", {})),
        module_arguments=dict(trees.get("argument", {})),
        module_defaults=_defaults(blocks, EDGE),
        module_locals=dict(trees.get("module", {})),
        preconditions=[
            (trees["precondition"][str(i)], c["error_message"]) for i, c in enumerate(conditions)
        ],
        blocks=blocks,
    )


# ------------------------------------------------------------------------------------------------
# The pipeline side: cron schedules
# ------------------------------------------------------------------------------------------------


def _schedules(pipeline: str) -> list[dict[str, Any]]:
    document = yaml.safe_load((PIPELINES / pipeline).read_text(encoding="utf-8"))
    return list(document.get("schedules") or [])


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            first, last = low, high
        elif "-" in spec:
            first, last = (int(x) for x in spec.split("-"))
        else:
            first = last = int(spec)
        values.update(range(first, last + 1, step))
    return values


def cron_times(cron: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The UTC times a five-field cron expression fires in [start, end)."""
    minute, hour, day, month, weekday = cron.split()
    minutes, hours = _cron_field(minute, 0, 59), _cron_field(hour, 0, 23)
    days, months = _cron_field(day, 1, 31), _cron_field(month, 1, 12)
    weekdays = {d % 7 for d in _cron_field(weekday, 0, 7)}
    times = []
    date = start.date()
    while date <= end.date():
        # Cron: when both day fields are restricted, either one matching is enough.
        day_ok = date.day in days
        weekday_ok = (date.isoweekday() % 7) in weekdays
        both = day != "*" and weekday != "*"
        matches = (day_ok or weekday_ok) if both else (day_ok and weekday_ok)
        if matches and date.month in months:
            for h in sorted(hours):
                for m in sorted(minutes):
                    moment = dt.datetime(date.year, date.month, date.day, h, m, tzinfo=dt.UTC)
                    if start <= moment < end:
                        times.append(moment)
        date += DAY
    return times


# ------------------------------------------------------------------------------------------------
# The simulation
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Password:
    slot: str
    generation: int
    expiry: dt.datetime


@dataclass
class Outcome:
    problems: list[str]
    generations_deployed: list[int]
    smallest_margin: dt.timedelta | None


def simulate(
    stack: Stack,
    overrides: Mapping[str, Any],
    start: dt.datetime,
    *,
    days: int = 365,
    apply_delay: dt.timedelta,
    deploy_delay: dt.timedelta,
) -> Outcome:
    """A year of scheduled plans/applies and redeployments; report every moment devices lock out.

    The platform is set up at `start` (first apply, then a deployment, as the READMEs say). Each
    scheduled IaC run plans at its cron time; when the plan has changes, its apply runs
    `apply_delay` later after planning again (a different plan then fails the digest check, as
    terraform_apply.yml does, and nothing is applied). Each scheduled edge run reads the secret
    at its start and has deployed it `deploy_delay` later.
    """
    end = start + dt.timedelta(days=days)
    state: dict[str, Password] = {}
    secret: Password | None = None
    problems: list[str] = []
    deployed_generations: list[int] = []
    margins: list[dt.timedelta] = []

    def apply(at: dt.datetime, desired: Desired) -> None:
        nonlocal secret
        for slot, (generation, expiry) in desired.slots.items():
            if slot not in state or state[slot].expiry != expiry:
                state[slot] = Password(slot, generation, expiry)
        secret = state[desired.current]

    def changes(desired: Desired) -> bool:
        return any(
            slot not in state or state[slot].expiry != expiry
            for slot, (_, expiry) in desired.slots.items()
        )

    apply(start, stack.plan(start, overrides))
    deployed = secret
    assert deployed is not None
    deployed_generations.append(deployed.generation)

    events: list[tuple[dt.datetime, int, str, Any]] = []
    for run in cron_times(_schedules(SCHEDULED["iac"])[0]["cron"], start + DAY / 24, end):
        heapq.heappush(events, (run, 1, "plan", None))
    for run in cron_times(_schedules(SCHEDULED["edge"])[0]["cron"], start + DAY / 24, end):
        # Reading the secret sorts before an apply at the same moment: the worse order.
        heapq.heappush(events, (run, 0, "read", None))
    heapq.heappush(events, (end, 9, "end", None))

    while events:
        at, _, kind, payload = heapq.heappop(events)
        if deployed.expiry <= at:
            problems.append(
                f"{deployed.expiry:%Y-%m-%d %H:%M}: the devices' password (generation "
                f"{deployed.generation}, token {deployed.slot}) expired"
            )
            break
        if kind == "plan":
            planned = stack.plan(at, overrides)
            if changes(planned):
                heapq.heappush(events, (at + apply_delay, 1, "apply", planned))
        elif kind == "apply":
            again = stack.plan(at, overrides)
            if again == payload:
                apply(at, again)
                if state[deployed.slot] != deployed:
                    problems.append(
                        f"{at:%Y-%m-%d %H:%M}: the apply replaced token {deployed.slot}'s "
                        f"password (generation {deployed.generation}) while devices use it"
                    )
                    break
        elif kind == "read":
            heapq.heappush(events, (at + deploy_delay, 0, "deploy", secret))
        elif kind == "deploy":
            assert isinstance(payload, Password)
            if payload.generation > deployed.generation:
                margins.append(deployed.expiry - at)
            deployed = payload
            deployed_generations.append(deployed.generation)
    return Outcome(problems, deployed_generations, min(margins) if margins else None)


STARTS = [
    dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 14, 23, 59, tzinfo=dt.UTC),
    dt.datetime(2026, 7, 2, 3, 0, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC),
]


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEDULED))
def test_the_pipelines_schedule_the_rotation(stack: Stack, name: str) -> None:
    schedules = _schedules(SCHEDULED[name])
    assert len(schedules) == 1, (
        f"{SCHEDULED[name]} needs one schedule: nothing else rotates or redeploys the password"
    )
    schedule = schedules[0]
    # Without `always: true` a scheduled run is skipped when nothing was committed.
    assert schedule.get("always") is True, f"{SCHEDULED[name]}: set `always: true`"
    default_branch = stack.root_defaults["ado_default_branch"].removeprefix("refs/heads/")
    assert schedule["branches"]["include"] == [default_branch]
    # The IaC pipeline's apply stage runs only for the default branch (terraform.yml).
    assert cron_times(schedule["cron"], STARTS[0], STARTS[0] + dt.timedelta(days=31))


def test_each_password_generation_has_a_token_of_its_own(stack: Stack) -> None:
    resources = {b.labels: b.body for b in stack.blocks if b.kind == "resource"}
    tokens = resources[("azurerm_container_registry_token", "edge_pull")]
    passwords = resources[("azurerm_container_registry_token_password", "edge_pull")]
    secret = resources[("azurerm_key_vault_secret", "edge_pull_password")]
    assert tokens["for_each"] == passwords["for_each"] == "${local.password_slots}"
    assert tokens["name"] == "${var.registry_token_name}-${each.key}"
    # One password resource per token: replacing one never touches the other token.
    assert passwords["container_registry_token_id"] == (
        "${azurerm_container_registry_token.edge_pull[each.key].id}"
    )
    assert passwords["password1"][0]["expiry"] == "${local.password_slot_expiry[each.key]}"
    assert "password2" not in passwords
    current = "[local.password_current_slot]"
    assert current in secret["value"] and current in secret["expiration_date"]
    assert secret["tags"].count(current) == 1 and '"acr-token"' in secret["tags"]
    _, module = stack.scopes({})
    token = PLAN_TIMESTAMP.set(STARTS[0])
    try:
        assert sorted(module["local"]["password_slots"]) == ["even", "odd"]
    finally:
        PLAN_TIMESTAMP.reset(token)


def test_the_current_password_is_newest_and_the_other_one_still_valid(stack: Stack) -> None:
    period = dt.timedelta(days=stack.root_defaults["edge_registry_password_rotation_days"])
    for at in STARTS:
        desired = stack.plan(at, {})
        (current_generation, current_expiry) = desired.slots[desired.current]
        other = next(s for s in desired.slots if s != desired.current)
        other_generation, other_expiry = desired.slots[other]
        assert other_generation == current_generation - 1
        # Generation g runs from g * period (Unix epoch) and its password lives two periods.
        generation_start = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + current_generation * period
        assert generation_start <= at < generation_start + period
        assert current_expiry == generation_start + 2 * period
        assert other_expiry == generation_start + period > at


@pytest.mark.parametrize("start", STARTS, ids=lambda s: f"{s:%m-%d}")
def test_a_year_of_rotation_never_leaves_devices_with_an_expired_password(
    stack: Stack, start: dt.datetime
) -> None:
    allowance = dt.timedelta(days=stack.root_defaults["edge_registry_rollout_allowance_days"])
    margin = dt.timedelta(days=stack.root_defaults["edge_registry_password_margin_days"])
    assert stack.refusals({}) == []
    quick = (dt.timedelta(hours=1), dt.timedelta(hours=2))
    for apply_delay, deploy_delay in (quick, (allowance, allowance)):
        outcome = simulate(stack, {}, start, apply_delay=apply_delay, deploy_delay=deploy_delay)
        assert outcome.problems == []
        # It rotated: a 90-day period hands the devices at least four generations in a year.
        assert len(set(outcome.generations_deployed)) >= 4, outcome.generations_deployed
        assert outcome.smallest_margin is not None and outcome.smallest_margin >= margin


def test_the_plan_refuses_a_period_too_short_for_the_schedules(stack: Stack) -> None:
    allowance = stack.root_defaults["edge_registry_rollout_allowance_days"]
    margin = stack.root_defaults["edge_registry_password_margin_days"]
    root, _ = stack.scopes({})
    needed = root["local"]["edge_password_days_to_devices"] + margin
    # Daily IaC plan, monthly redeployment: 1 + 31 + 2 x allowance days to reach the devices.
    assert needed == 1 + 31 + 2 * allowance + margin
    assert stack.refusals({"edge_registry_password_rotation_days": needed}) == []
    refused = stack.refusals({"edge_registry_password_rotation_days": needed - 1})
    assert len(refused) == 1 and "too short" in refused[0]
    # The shortest accepted period holds over a year, in the worst case ...
    week = dt.timedelta(days=allowance)
    for start in STARTS:
        outcome = simulate(
            stack,
            {"edge_registry_password_rotation_days": needed},
            start,
            apply_delay=week,
            deploy_delay=week,
        )
        assert outcome.problems == []
    # ... and a period the plan refuses does lock devices out: the check is not decoration.
    locked = [
        simulate(
            stack,
            {"edge_registry_password_rotation_days": 20},
            start,
            apply_delay=week,
            deploy_delay=week,
        ).problems
        for start in STARTS
    ]
    assert all(locked), locked
    assert stack.refusals({"edge_registry_password_rotation_days": 20})


@pytest.mark.parametrize(
    ("pipeline", "before", "after"),
    [
        ("iac_pipeline.yml", "    always: true\n", ""),
        ("edge_deployment_pipeline.yml", '  - cron: "0 4 1 * *"', '  - cron: "0 4 29 * *"'),
        ("edge_deployment_pipeline.yml", "- main\n    always", "- develop\n    always"),
    ],
    ids=["no-always", "day-29", "other-branch"],
)
def test_the_plan_refuses_a_schedule_it_cannot_rely_on(
    stack: Stack, tmp_path: Path, pipeline: str, before: str, after: str
) -> None:
    shutil.copytree(PIPELINES, tmp_path / "ado_pipelines")
    path = tmp_path / "ado_pipelines" / pipeline
    text = path.read_text(encoding="utf-8")
    assert text.count(before) == 1
    path.write_text(text.replace(before, after), encoding="utf-8")
    (tmp_path / "infrastructure").mkdir()
    refused = stack.refusals({}, tmp_path / "infrastructure")
    assert len(refused) == 1 and "exactly one schedule" in refused[0]
    assert stack.refusals({}, INFRASTRUCTURE) == []
