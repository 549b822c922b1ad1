"""infrastructure/README.md's "What gets created" names what `terraform apply` creates for the edge.

Issue 14 asks that the alert route, its consumer and the notification appear in that list, and the
registry password rotation adds a second token: the names are read from the Terraform code, so
the list cannot drift from it.
"""

from __future__ import annotations

import re

from .terraform_config import INFRASTRUCTURE, iter_blocks, parse_files

README = INFRASTRUCTURE / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## What gets created")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _named_in_backticks(section: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", section))


def test_the_list_names_the_alert_path_and_both_registry_tokens() -> None:
    files = [INFRASTRUCTURE / "locals.tf", INFRASTRUCTURE / "main.alerts.tf"]
    files += sorted((INFRASTRUCTURE / "modules" / "alerts").glob("*.tf"))
    files += sorted((INFRASTRUCTURE / "modules" / "edge").glob("*.tf"))
    blocks = list(iter_blocks(parse_files(files)))
    local_values: dict[str, object] = {}
    for block in blocks:
        if block.kind == "locals":
            local_values.update(block.body)
    alert_literals = {
        str(b.body["name"])
        for b in blocks
        if b.kind == "resource"
        and b.file.parent.name == "alerts"
        and "${" not in str(b.body.get("name", "${"))
    }
    # The route, its endpoint, the records, the webhook secret: all literal names in the module.
    assert {"edge-alerts", "edge-telemetry", "alerts", "alert-webhook-url"} <= alert_literals
    names = local_values["names"]
    assert isinstance(names, dict)
    slots = local_values["password_slots"]
    assert isinstance(slots, dict)
    wanted = alert_literals | {
        str(local_values["alert_names"]["queue"]),  # type: ignore[index]
        str(names["edge_registry_kv_name"]),
        *(f"{names['edge_registry_token']}-{slot}" for slot in slots),
    }
    missing = sorted(wanted - _named_in_backticks(_section()))
    assert missing == [], f"infrastructure/README.md, What gets created, lacks {missing}"
