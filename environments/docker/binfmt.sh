#!/usr/bin/env bash
# Let this host run arm64 (aarch64) programs under QEMU user-mode emulation, for building and
# running the arm64v8 module image on an amd64 machine: registers a pinned, statically linked
# qemu-aarch64 with binfmt_misc (flag F: the kernel opens the interpreter now, so it also works
# inside containers and chroots). Needs root; a no-op on an arm64 host or when that QEMU is
# already the registered handler. It replaces any other qemu-aarch64 handler of the host.
#
# Why not Debian bookworm's qemu-user-static (7.2): under it LiteRT's interpreter hangs or dies
# with SIGSEGV inside a container, so the image build's model check and the module never finish.
# QEMU 10 from Debian trixie runs them. Its qemu-aarch64 is a static binary, so the trixie
# package works on bookworm: the .deb is downloaded once from Debian's archive, checked against
# the pinned sha256 below and only that binary is extracted.
#
# Debian's pool keeps only a stable release's current packages, so the pinned version vanishes at
# trixie's next point release. Then the script takes trixie's current qemu-user from the release's
# signed index instead: InRelease verified with gpgv against Debian's archive keyring, the
# Packages index checked against the SHA256 that InRelease lists, the .deb against the SHA256 the
# index lists, and a major version of 10 or more. It prints the new pin to put below.
#
# Usage: binfmt.sh [--install-only] (--install-only: download and install the binary, do not
# register it). Environment: PPE_EDGE_CACHE (default .cache/edge-image: the downloaded .deb),
# PPE_QEMU_DIR (default /usr/local/libexec/ppe-edge: where the binary is installed),
# PPE_DEBIAN_MIRROR (default http://deb.debian.org/debian), PPE_DEBIAN_KEYRING (default
# /usr/share/keyrings/debian-archive-keyring.gpg).
set -euo pipefail

# Debian trixie's qemu-user (https://packages.debian.org/trixie/qemu-user): version (without the
# epoch) and the SHA256 that `apt-cache show qemu-user` prints on a trixie machine.
QEMU_VERSION=10.0.13+ds-0+deb13u1
QEMU_DEB_SHA256=ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336
QEMU_SUITE=trixie
QEMU_MIN_MAJOR=10
MIRROR="${PPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
KEYRING="${PPE_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
QEMU_DEB_URL="${MIRROR}/pool/main/q/qemu/qemu-user_${QEMU_VERSION}_amd64.deb"
# The ELF header of an aarch64 executable, as Debian's qemu-user-binfmt registers it.
MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

register=1
case "${1:-}" in
  "") ;;
  --install-only) register=0 ;;
  *)
    echo "error: unknown argument ${1}; usage: binfmt.sh [--install-only]" >&2
    exit 2
    ;;
esac

# The current qemu-user of ${QEMU_SUITE} (amd64) from the release's signed index, as
# "VERSION SHA256 POOL_PATH" (VERSION without the epoch).
current_qemu() {
  local work release listed sum
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' RETURN
  curl --fail --silent --show-error --location --output "${work}/InRelease" \
    "${MIRROR}/dists/${QEMU_SUITE}/InRelease" || {
    echo "error: cannot download ${MIRROR}/dists/${QEMU_SUITE}/InRelease" >&2
    return 1
  }
  release="${work}/Release"
  if ! gpgv --keyring "${KEYRING}" --output "${release}" "${work}/InRelease" 2>"${work}/gpgv.log"; then
    echo "error: ${MIRROR}/dists/${QEMU_SUITE}/InRelease is not signed by a key of ${KEYRING}" \
      "(install debian-archive-keyring, or set PPE_DEBIAN_KEYRING):" >&2
    sed 's/^/  /' "${work}/gpgv.log" >&2
    return 1
  fi
  listed="$(awk '$3 == "main/binary-amd64/Packages.xz" && length($1) == 64 {print $1; exit}' \
    "${release}")"
  if [ -z "${listed}" ]; then
    echo "error: the signed Release of ${QEMU_SUITE} lists no SHA256 of main/binary-amd64/Packages.xz" >&2
    return 1
  fi
  curl --fail --silent --show-error --location --output "${work}/Packages.xz" \
    "${MIRROR}/dists/${QEMU_SUITE}/main/binary-amd64/Packages.xz" || return 1
  sum="$(sha256sum "${work}/Packages.xz" | cut -d' ' -f1)"
  if [ "${sum}" != "${listed}" ]; then
    echo "error: ${MIRROR}/dists/${QEMU_SUITE}/main/binary-amd64/Packages.xz has sha256 ${sum}," \
      "not the ${listed} that the signed Release lists" >&2
    return 1
  fi
  # Decompressed to a file first: awk stops at the stanza it wants, which would end a pipe from xz
  # with SIGPIPE (the real index is tens of megabytes) and fail the pipeline.
  xz --decompress --stdout "${work}/Packages.xz" >"${work}/Packages"
  awk '
    BEGIN { RS = ""; FS = "\n" }
    {
      package = version = path = sha = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Package: /) package = substr($i, 10)
        else if ($i ~ /^Version: /) version = substr($i, 10)
        else if ($i ~ /^Filename: /) path = substr($i, 11)
        else if ($i ~ /^SHA256: /) sha = substr($i, 9)
      }
      if (package == "qemu-user") {
        sub(/^[0-9]+:/, "", version)
        print version, sha, path
        found = 1
        exit
      }
    }
    END { if (!found) exit 1 }' "${work}/Packages" || {
    echo "error: the ${QEMU_SUITE} index has no qemu-user package" >&2
    return 1
  }
}

[ "$(uname -m)" = aarch64 ] && exit 0
if [ "$(uname -m)" != x86_64 ]; then
  echo "error: binfmt.sh installs an x86_64 QEMU; this host is $(uname -m)" >&2
  exit 1
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PPE_EDGE_CACHE:-${here}/../../.cache/edge-image}"
qemu_dir="${PPE_QEMU_DIR:-/usr/local/libexec/ppe-edge}"
qemu="${qemu_dir}/qemu-aarch64-${QEMU_VERSION}"
binfmt=/proc/sys/fs/binfmt_misc

# Downloads URL ($1) to FILE ($2) through FILE.tmp, so a broken download leaves nothing behind;
# returns curl's exit status (22: the server answered with an HTTP error, e.g. 404).
fetch() {
  local status=0
  mkdir -p "$(dirname "$2")"
  echo "downloading $1" >&2
  curl --fail --silent --show-error --location --output "$2.tmp" "$1" || status=$?
  if [ "${status}" != 0 ]; then
    rm -f "$2.tmp"
    return "${status}"
  fi
  mv "$2.tmp" "$2"
}

if [ ! -x "${qemu}" ]; then
  expected="${QEMU_DEB_SHA256}"
  source_of_sum="the pinned sha256"
  deb="${cache}/qemu-user_${QEMU_VERSION}_amd64.deb"
  status=0
  [ -s "${deb}" ] || fetch "${QEMU_DEB_URL}" "${deb}" || status=$?
  if [ "${status}" = 22 ]; then
    echo "qemu-user ${QEMU_VERSION} is no longer in ${MIRROR} (a newer ${QEMU_SUITE} point" \
      "release replaced it): taking the current one from ${QEMU_SUITE}'s signed index" >&2
    current="$(current_qemu)" || exit 1
    read -r version expected pool <<<"${current}"
    major="${version%%.*}"
    if ! [[ "${major}" =~ ^[0-9]+$ ]] || [ "${major}" -lt "${QEMU_MIN_MAJOR}" ]; then
      echo "error: ${QEMU_SUITE}'s qemu-user is ${version}; the arm64v8 build needs QEMU" \
        "${QEMU_MIN_MAJOR} or later (bookworm's 7.2 hangs in LiteRT): pin a version in" \
        "${BASH_SOURCE[0]} whose .deb you can download" >&2
      exit 1
    fi
    source_of_sum="the sha256 that ${QEMU_SUITE}'s signed index lists,"
    qemu="${qemu_dir}/qemu-aarch64-${version}"
    deb="${cache}/qemu-user_${version}_amd64.deb"
    if [ ! -x "${qemu}" ] && [ ! -s "${deb}" ]; then
      fetch "${MIRROR}/${pool}" "${deb}" || {
        echo "error: cannot download ${MIRROR}/${pool}" >&2
        exit 1
      }
    fi
    echo "to pin it, set in ${BASH_SOURCE[0]}: QEMU_VERSION=${version}" \
      "QEMU_DEB_SHA256=${expected}" >&2
  elif [ "${status}" != 0 ]; then
    echo "error: cannot download ${QEMU_DEB_URL} (curl exit ${status}): check the network" \
      "or PPE_DEBIAN_MIRROR" >&2
    exit 1
  fi
  if [ ! -x "${qemu}" ]; then
    if ! echo "${expected}  ${deb}" | sha256sum --check --quiet; then
      echo "error: ${deb} does not have ${source_of_sum} ${expected}; delete it and run again" >&2
      exit 1
    fi
    unpacked="$(mktemp -d)"
    dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${unpacked}" ./usr/bin/qemu-aarch64
    install -D -m 0755 "${unpacked}/usr/bin/qemu-aarch64" "${qemu}"
    rm -rf "${unpacked}"
  fi
fi
if [ "${register}" = 0 ]; then
  echo "installed ${qemu} (not registered: --install-only)" >&2
  exit 0
fi

if [ ! -e "${binfmt}/register" ]; then
  mount -t binfmt_misc binfmt_misc "${binfmt}"
fi
if [ -e "${binfmt}/qemu-aarch64" ]; then
  if grep -qxF "interpreter ${qemu}" "${binfmt}/qemu-aarch64"; then
    exit 0
  fi
  echo -1 >"${binfmt}/qemu-aarch64"  # another QEMU (e.g. bookworm's 7.2): replace it
fi
# Flags as Debian registers its own handler: O hands QEMU the program as an open file, P keeps
# argv[0], F opens the interpreter now (so containers need no QEMU inside).
printf ':qemu-aarch64:M::%s:%s:%s:OPF\n' "${MAGIC}" "${MASK}" "${qemu}" >"${binfmt}/register"
echo "registered ${qemu} for aarch64 with binfmt_misc" >&2
