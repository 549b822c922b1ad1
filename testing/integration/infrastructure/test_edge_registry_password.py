"""The devices' registry password does not expire the moment its rotation is due.

An expired token password no longer authenticates
(https://learn.microsoft.com/azure/container-registry/container-registry-token-based-repository-permissions),
and the apply that rotates it, and the redeployment that hands devices the new one, always come
after the rotation time; so the password and its key vault secret must outlive that time.
"""

from __future__ import annotations

import re

from .terraform_config import INFRASTRUCTURE, iter_blocks, parse_files

EDGE = INFRASTRUCTURE / "modules" / "edge"


def test_the_password_outlives_its_rotation_time() -> None:
    parsed = parse_files(sorted(EDGE.glob("*.tf")))
    blocks = list(iter_blocks(parsed))
    local_values: dict[str, object] = {}
    for block in blocks:
        if block.kind == "locals":
            local_values.update(block.body)
    resources = {b.labels: b.body for b in blocks if b.kind == "resource"}
    password = resources[("azurerm_container_registry_token_password", "edge_pull")]
    secret = resources[("azurerm_key_vault_secret", "edge_pull_password")]
    assert password["password1"][0]["expiry"] == "${local.password_expiry}"
    assert secret["expiration_date"] == "${local.password_expiry}"
    expiry = str(local_values["password_expiry"])
    rotation = "time_rotating.edge_pull_password.rotation_rfc3339"
    assert expiry == "${timeadd(" + rotation + ', "${local.password_grace_hours}h")}', expiry
    grace = re.fullmatch(r"\$\{(\d+) \* (\d+)\}", str(local_values["password_grace_hours"]))
    assert grace, local_values["password_grace_hours"]
    assert int(grace.group(1)) * int(grace.group(2)) >= 7 * 24
