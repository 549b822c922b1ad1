#!/usr/bin/env bash
# Stage an exported model in the edge module's build context, where Dockerfile.<platform> copies
# it from: environments/docker/model/, holding exactly the files ppe.iotedge.staging.MODEL_FILES
# names (the one list of them), read-only (0444), the mode they keep inside the image.
#
#   environments/docker/stage_model.sh <export folder>
#
# <export folder> is what `ppe export --out` wrote (the edge deployment pipeline passes its export;
# locally, for example, outputs/runs/<id>/export). The staging folder is replaced as a whole, so a
# model from an earlier build can never end up in the image; an incomplete export stages nothing
# and names the fix. PPE: the `ppe` command to run (default: ppe on PATH).
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 <folder written by 'ppe export'>" >&2
  exit 2
fi
read -r -a ppe <<<"${PPE:-ppe}"
model_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/model"
exec "${ppe[@]}" edge stage-model --export "$1" --out "${model_dir}"
