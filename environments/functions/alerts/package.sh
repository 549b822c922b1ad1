#!/usr/bin/env bash
# Build the alert consumer's deployment package: the function app files and the part of `ppe` it
# imports (ppe/__init__.py, ppe/errors.py, ppe/alerts/), nothing else. Deploy it with
#   az functionapp deployment source config-zip --resource-group "$AZURE_RESOURCE_GROUP" \
#     --name "$(terraform -chdir=infrastructure output -raw alerts_function_app_name)" \
#     --src dist/alerts-function.zip --build-remote true
# (the remote build installs requirements.txt on the Flex Consumption plan), after removing the
# empty AzureWebJobsStorage setting azurerm writes (infrastructure/README.md, "Edge alerts").
#
# Usage: environments/functions/alerts/package.sh [OUT_ZIP]   (default dist/alerts-function.zip)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${1:-$root/dist/alerts-function.zip}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$here/function_app.py" "$here/host.json" "$here/requirements.txt" "$stage/"
mkdir -p "$stage/ppe/alerts"
cp "$root/src/ppe/__init__.py" "$root/src/ppe/errors.py" "$stage/ppe/"
cp "$root"/src/ppe/alerts/*.py "$stage/ppe/alerts/"
mkdir -p "$(dirname "$out")"
rm -f "$out"
(cd "$stage" && python3 -m zipfile -c "$out" function_app.py host.json requirements.txt ppe)
echo "wrote $out" >&2
