#!/usr/bin/env bash
# Create an IoT Edge device identity, the supported way: IoT Hub device identities are data-plane
# objects that neither azurerm nor azapi can manage, so Terraform creates the hub and this script
# (or the same commands in the edge deployment pipeline) registers devices.
#
# Usage: infrastructure/scripts/create_edge_device.sh DEVICE_ID --environment ENV --platform P [--dps] [--connection-string-file FILE]
#   DEVICE_ID                    lower-case letters, digits and - . _ : (at most 128 characters)
#   --environment ENV            staging or production: twin tag `environment`, which the edge
#                                pipeline's base and layered deployments target
#   --platform P                 amd64 or arm64v8: twin tag `platform` (which image the device gets)
#   --dps                        create a DPS individual enrollment (symmetric key, edge-enabled,
#                                the same tags as its initial twin) instead of a hub identity;
#                                needs DPS_NAME (dps_enabled = true)
#   --connection-string-file F   write the device connection string to F (mode 600) for the device's
#                                /etc/aziot/config.toml; it is never printed
# The device gets its modules only from the automatic deployments the edge deployment pipeline
# maintains (environments/iotedge/README.md); per-device `set-modules` is not used, because a
# device configured that way is no longer managed by automatic deployments.
#
# Reads IOTHUB_NAME and AZURE_RESOURCE_GROUP (and DPS_NAME with --dps) from the environment or the
# repository's .env (infrastructure/scripts/write_env.py; PPE_DOTENV names another file). Signs in with Entra ID (--auth-type
# login): the caller needs "IoT Hub Data Contributor" on the hub, which the pipeline identity has.
set -euo pipefail

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dotenv="${PPE_DOTENV:-$repo_root/.env}"
if [[ -f "$dotenv" ]]; then
  set -a
  # shellcheck disable=SC1090
  source "$dotenv"
  set +a
fi

device_id=""
use_dps=false
environment=""
platform=""
connection_string_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dps) use_dps=true; shift ;;
    --environment) environment="${2:?--environment needs staging or production}"; shift 2 ;;
    --platform) platform="${2:?--platform needs amd64 or arm64v8}"; shift 2 ;;
    --connection-string-file) connection_string_file="${2:?--connection-string-file needs a path}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) device_id="$1"; shift ;;
  esac
done

if [[ ! "$device_id" =~ ^[a-z0-9][a-z0-9.:_-]{0,127}$ ]]; then
  echo "DEVICE_ID must be 1-128 lower-case letters, digits, '-', '.', '_' or ':' (got '${device_id}')" >&2
  exit 2
fi
: "${IOTHUB_NAME:?IOTHUB_NAME is not set: run infrastructure/scripts/write_env.py after terraform apply}"
: "${AZURE_RESOURCE_GROUP:?AZURE_RESOURCE_GROUP is not set: run infrastructure/scripts/write_env.py}"
if [[ "$environment" != staging && "$environment" != production ]]; then
  echo "--environment must be staging or production (got '${environment}'): the edge deployments target tags.environment" >&2
  exit 2
fi
if [[ "$platform" != amd64 && "$platform" != arm64v8 ]]; then
  echo "--platform must be amd64 or arm64v8 (got '${platform}'): the edge deployments target tags.platform" >&2
  exit 2
fi
tags="{\"environment\": \"${environment}\", \"platform\": \"${platform}\"}"

az extension add --upgrade --yes --name azure-iot --only-show-errors

if [[ "$use_dps" == true ]]; then
  : "${DPS_NAME:?DPS_NAME is not set: set dps_enabled = true, apply, then export DPS_NAME=$(terraform -chdir=infrastructure output -raw dps_name)}"
  az iot dps enrollment create \
    --dps-name "$DPS_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
    --enrollment-id "$device_id" --device-id "$device_id" \
    --attestation-type symmetrickey --edge-enabled true \
    --iot-hubs "${IOTHUB_HOSTNAME:-$IOTHUB_NAME.azure-devices.net}" \
    --initial-twin-tags "$tags" \
    --output none
  echo "DPS enrollment '$device_id' created; the device provisions itself on first boot." >&2
else
  az iot hub device-identity create \
    --hub-name "$IOTHUB_NAME" --device-id "$device_id" --edge-enabled \
    --auth-type login --output none
  echo "IoT Edge device '$device_id' created in $IOTHUB_NAME." >&2
  az iot hub device-twin update \
    --hub-name "$IOTHUB_NAME" --device-id "$device_id" --tags "$tags" \
    --auth-type login --output none
  echo "Twin tags $tags set: the ${environment} deployments for ${platform} now target it." >&2
  if [[ -n "$connection_string_file" ]]; then
    (umask 077 && az iot hub device-identity connection-string show \
      --hub-name "$IOTHUB_NAME" --device-id "$device_id" --auth-type login \
      --query connectionString --output tsv > "$connection_string_file")
    echo "Connection string written to $connection_string_file (mode 600)." >&2
  fi
fi
