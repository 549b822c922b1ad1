"""A stand-in for the `az iot edge deployment` commands of the edge pipeline, with the IoT Hub rules
the pipeline's scripts must respect. No IoT Hub (or emulator) runs offline, so this is a mock, and
it says so; what it enforces is taken from Microsoft's documentation:

* without ``--auth-type login`` the azure-iot extension fetches the hub's keys
  (``Microsoft.Devices/IotHubs/listkeys/action``), a right the pipeline identity does not hold:
  the call fails as Azure would (https://learn.microsoft.com/cli/azure/iot/edge/deployment);
* a hub holds at most ``limit`` configurations, 100 on paid tiers and 10 on the free tier
  (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-quotas-throttling); one more fails;
* a configuration id is unique per hub and its content cannot change
  (https://learn.microsoft.com/rest/api/iothub/service/configuration/create-or-update);
* ``--query`` is evaluated with jmespath, the library the Azure CLI evaluates it with, and
  ``--output tsv`` prints one value per line.

Run as ``python fake_iothub.py <az arguments>`` with ``FAKE_HUB_STATE`` naming a JSON file:
``{"limit": 10, "clock": 0, "deployments": [{"id", "createdTimeUtc", "priority", "layered",
"targetCondition"}], "metrics": [{"targetedCount": n, ...}, ...], "polls": 0, "calls": []}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jmespath


def _fail(message: str) -> None:
    """An error line on stderr, as az prints one."""
    sys.stderr.write(message + "\n")


def _options(argv: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key.startswith("--"):
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                options[key] = argv[i + 1]
                i += 2
                continue
            options[key] = True
        i += 1
    return options


def _print(result: Any, options: dict[str, Any]) -> None:
    if "--query" in options:
        result = jmespath.search(options["--query"], result)
    if options.get("--output") == "none":
        return
    if options.get("--output") == "tsv":
        values = result if isinstance(result, list) else [result]
        for value in values:
            sys.stdout.write(f"{value}\n")
    else:
        sys.stdout.write(json.dumps(result) + "\n")


def _timestamp(tick: int) -> str:
    """Creation times one second apart, in the hub's ISO 8601 form."""
    return f"2026-12-01T10:{tick // 60:02d}:{tick % 60:02d}Z"


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_HUB_STATE"])
    state = json.loads(state_path.read_text())
    state["calls"].append(argv)
    try:
        return _run(argv, state)
    finally:
        state_path.write_text(json.dumps(state))


def _run(argv: list[str], state: dict[str, Any]) -> int:
    options = _options(argv)
    if argv[:3] != ["iot", "edge", "deployment"]:
        _fail(f"fake hub: unsupported command {argv}")
        return 2
    if options.get("--auth-type") != "login":
        _fail(
            "(AuthorizationFailed) The client does not have authorization to perform action "
            "'Microsoft.Devices/IotHubs/listkeys/action'"
        )
        return 1
    command = argv[3]
    deployments: list[dict[str, Any]] = state["deployments"]
    if command == "list":
        top = int(options.get("--top", 10))
        _print(deployments[:top], options)
        return 0
    if command == "create":
        ident = options["--deployment-id"]
        if any(d["id"] == ident for d in deployments):
            _fail(f"(Conflict) configuration {ident} already exists")
            return 1
        if len(deployments) >= state["limit"]:
            _fail(f"(IotHubQuotaExceeded) the hub holds {state['limit']} configurations")
            return 1
        state["clock"] += 1
        json.loads(Path(options["--content"]).read_text())  # the content must be JSON
        deployments.append(
            {
                "id": ident,
                "createdTimeUtc": _timestamp(state["clock"]),
                "priority": int(options["--priority"]),
                "layered": bool(options.get("--layered")),
                "targetCondition": options["--target-condition"],
            }
        )
        _print({"id": ident}, options)
        return 0
    if command == "delete":
        ident = options["--deployment-id"]
        if not any(d["id"] == ident for d in deployments):
            _fail(f"(NotFound) configuration {ident}")
            return 1
        state["deployments"] = [d for d in deployments if d["id"] != ident]
        return 0
    if command == "show-metric":
        metric = options["--metric-id"]
        if metric == "targetedCount":
            state["polls"] += 1
        snapshot = state["metrics"][min(state["polls"], len(state["metrics"])) - 1]
        _print({"metric": metric, "result": ["device"] * snapshot[metric]}, options)
        return 0
    _fail(f"fake hub: unsupported deployment command {command}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
