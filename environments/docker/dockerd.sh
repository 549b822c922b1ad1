#!/usr/bin/env bash
# Print a DOCKER_HOST that answers, starting a private Docker daemon when none does.
#
#   export DOCKER_HOST="$(environments/docker/dockerd.sh)"
#
# A daemon already reachable (DOCKER_HOST, or the default socket) is used as it is. Otherwise, as
# root, Debian's dockerd is started with no bridge network and no iptables rules (builds and
# containers use --network host and talk to loopback only), its state under /var/lib/ppe-edge-docker
# (images stay cached between runs), its socket /run/ppe-edge/docker.sock. It keeps running after
# this script exits; stop it with `kill "$(cat /run/ppe-edge/docker.pid)"`.
set -euo pipefail

docker="${DOCKER:-docker}"
if [ -n "${DOCKER_HOST:-}" ] && "${docker}" info >/dev/null 2>&1; then
  echo "${DOCKER_HOST}"
  exit 0
fi
if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] \
  && DOCKER_HOST=unix:///var/run/docker.sock "${docker}" info >/dev/null 2>&1; then
  echo "unix:///var/run/docker.sock"
  exit 0
fi
run=/run/ppe-edge
host="unix://${run}/docker.sock"
if DOCKER_HOST="${host}" "${docker}" info >/dev/null 2>&1; then
  echo "${host}"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: no Docker daemon answers and only root can start one; start Docker or set" \
    "DOCKER_HOST" >&2
  exit 1
fi
command -v dockerd >/dev/null || { echo "error: dockerd not found; run 'make setup'" >&2; exit 1; }
mkdir -p "${run}"
nohup dockerd --bridge=none --iptables=false --ip6tables=false \
  --data-root /var/lib/ppe-edge-docker --exec-root "${run}/exec" --pidfile "${run}/docker.pid" \
  --host "${host}" >"${run}/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if DOCKER_HOST="${host}" "${docker}" info >/dev/null 2>&1; then
    echo "${host}"
    exit 0
  fi
  sleep 0.5
done
echo "error: dockerd did not answer within 30 s; see ${run}/dockerd.log:" >&2
tail -5 "${run}/dockerd.log" >&2
exit 1
