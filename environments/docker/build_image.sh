#!/usr/bin/env bash
# Build the ppedetector module image offline: `make edge-image PLATFORM=amd64|arm64v8`.
#
#   environments/docker/build_image.sh <amd64|arm64v8> <staged model folder> <image tag>
#
# Nothing is pulled from a registry and nothing is fetched during the build:
#   1. base: a Debian bookworm minbase root filesystem with Python 3.11 (the minor version of the
#      official python:3.11.x image the Dockerfile names by default), made by mmdebstrap from
#      Debian's packages and added to an image FROM scratch; Python lives in a venv at /usr/local,
#      where the official image has it. Made once per platform; the tarball is cached.
#   2. wheels: every package of requirements-edge.txt and requirements-build.txt (the build
#      backend) downloaded on the host with `pip download --require-hashes` into the wheelhouse;
#      the build installs them with --no-index, so pip checks every hash again.
#   3. the image: Dockerfile.<platform> with BASE_IMAGE=<the local base> and PIP_OFFLINE=1, built
#      from a private context (the package source, the requirements, the wheels and the given
#      model), with --network host (the daemon may have no bridge). The wheels, requirements and
#      source go to the Dockerfile's install stage only; the image copies what it installed.
# Every build uses Docker's classic builder (DOCKER_BUILDKIT=0), the one iotedgedev builds with
# through the Docker API, so a Dockerfile that needs BuildKit fails here first.
# Users with a registry build the same Dockerfile without build arguments (official base image).
#
# Environment: PPE_EDGE_CACHE (default .cache/edge-image: base tarballs, wheels), PIP (a pip
# command for the host, default `python3 -m pip`), PPE (the `ppe` command that checks and copies
# the staged model, default ppe on PATH), DOCKER (default docker).
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 <amd64|arm64v8> <staged model folder> <image tag>" >&2
  exit 2
fi
platform="$1"
model_dir="$2"
tag="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cache="${PPE_EDGE_CACHE:-${repo}/.cache/edge-image}"
docker="${DOCKER:-docker}"
export DOCKER_BUILDKIT=0
read -r -a pip <<<"${PIP:-python3 -m pip}"

case "${platform}" in
  amd64) debian_arch=amd64; docker_platform=linux/amd64
    machine=x86_64 ;;
  arm64v8) debian_arch=arm64; docker_platform=linux/arm64
    machine=aarch64 ;;
  *) echo "error: platform must be amd64 or arm64v8, got '${platform}'" >&2; exit 2 ;;
esac
# The build context, private to this build; the model first, so a folder without it stops here
# with the fix named (`ppe edge stage-model` copies exactly the files the image bakes in).
read -r -a ppe <<<"${PPE:-ppe}"
context="$(mktemp -d)"
trap 'rm -rf "${context}"' EXIT
"${ppe[@]}" edge stage-model --export "${model_dir}" --out "${context}/environments/docker/model"
if [ "${platform}" = arm64v8 ]; then
  "${here}/binfmt.sh"  # arm64 programs (the base's hooks, the build's RUN steps) under QEMU
fi
for tool in "${docker}" mmdebstrap; do
  command -v "${tool}" >/dev/null || { echo "error: ${tool} not found; run 'make setup'" >&2; exit 1; }
done

# 1. The base image, from Debian's packages.
base="ppe-local/python:3.11-bookworm-${platform}"
base_tar="${cache}/base-bookworm-python3.11-${platform}.tar"
if ! "${docker}" image inspect "${base}" >/dev/null 2>&1; then
  if [ ! -s "${base_tar}" ]; then
    mkdir -p "${cache}"
    echo "making the ${platform} base with mmdebstrap (Debian bookworm, python3.11)"
    mmdebstrap --quiet --variant=minbase --format=tar --architectures="${debian_arch}" \
      --include=python3.11,python3.11-venv,ca-certificates \
      --customize-hook='chroot "$1" python3.11 -m venv /usr/local' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
      bookworm "${base_tar}.tmp"
    mv "${base_tar}.tmp" "${base_tar}"
  fi
  # `FROM scratch` + ADD of the tarball rather than `docker import`: Docker 20.10 records an
  # imported image as the daemon's architecture whatever --platform says, and the arm64v8 build
  # then refuses it; a build from scratch records the platform it was asked for.
  base_context="$(mktemp -d)"
  ln "${base_tar}" "${base_context}/rootfs.tar" 2>/dev/null || cp "${base_tar}" "${base_context}/rootfs.tar"
  printf '%s\n' 'FROM scratch' 'ADD rootfs.tar /' \
    'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' 'CMD ["python3"]' \
    >"${base_context}/Dockerfile"
  "${docker}" build --quiet --network host --platform "${docker_platform}" -t "${base}" \
    "${base_context}" >/dev/null
  rm -rf "${base_context}"
fi

# 2. The wheels, hash-checked on download (and again by pip inside the build).
wheels="${cache}/wheels-${platform}"
requirements=("${here}/requirements-edge.txt" "${here}/requirements-build.txt")
stamp="${wheels}/.requirements.sha256"
want="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "${stamp}" 2>/dev/null)" != "${want}" ]; then
  rm -rf "${wheels}"
  mkdir -p "${wheels}"
  # Wheels for bookworm's glibc 2.36 and older; a package published only as source (paho-mqtt)
  # comes as its hash-checked archive and is built in the image on requirements-build.txt.
  platform_args=(--platform "manylinux2014_${machine}")
  for minor in $(seq 36 -1 17); do platform_args+=(--platform "manylinux_2_${minor}_${machine}"); done
  "${pip[@]}" download --quiet --require-hashes --no-deps --prefer-binary \
    --ignore-requires-python --python-version 3.11 --implementation cp --abi cp311 --abi abi3 \
    --abi none "${platform_args[@]}" --dest "${wheels}" -r "${requirements[0]}" -r "${requirements[1]}"
  echo "${want}" >"${stamp}"
fi

# 3. The image, from the private build context.
mkdir -p "${context}/environments/docker/wheelhouse"
cp "${repo}/pyproject.toml" "${context}/"
cp -r "${repo}/src" "${context}/src"
find "${context}/src" -name __pycache__ -prune -exec rm -rf {} +
cp "${requirements[@]}" "${context}/environments/docker/"
cp "${wheels}"/*.whl "${wheels}"/*.tar.gz "${context}/environments/docker/wheelhouse/"
cp "${repo}/.dockerignore" "${context}/.dockerignore"
"${docker}" build --quiet --network host --platform "${docker_platform}" \
  --build-arg "BASE_IMAGE=${base}" --build-arg PIP_OFFLINE=1 \
  -f "${here}/Dockerfile.${platform}" -t "${tag}" "${context}" >/dev/null
echo "built ${tag} (${platform}) from base ${base}"
