#!/usr/bin/env bash
# Let this host run arm64 (aarch64) programs under QEMU user-mode emulation, for building and
# running the arm64v8 module image on an amd64 machine: registers a pinned, statically linked
# qemu-aarch64 with binfmt_misc (flag F: the kernel opens the interpreter now, so it also works
# inside containers and chroots). Needs root; a no-op on an arm64 host or when that QEMU is
# already the registered handler. It replaces any other qemu-aarch64 handler of the host.
#
# Why not Debian bookworm's qemu-user-static (7.2): under it LiteRT's interpreter hangs or dies
# with SIGSEGV inside a container, so the image build's model check and the module never finish.
# QEMU 10.0 from Debian trixie runs them. Its qemu-aarch64 is a static binary, so the trixie
# package works on bookworm: the .deb is downloaded once from Debian's archive, checked against
# the pinned sha256 below and only that binary is extracted.
#
# Environment: PPE_EDGE_CACHE (default .cache/edge-image: the downloaded .deb), PPE_QEMU_DIR
# (default /usr/local/libexec/ppe-edge: where the binary is installed).
set -euo pipefail

# Debian trixie's qemu-user (https://packages.debian.org/trixie/qemu-user). When the archive
# drops this version (a newer point release replaces it), pin the newer one: version and the
# SHA256 that `apt-cache show qemu-user` prints on a trixie machine.
QEMU_VERSION=10.0.13+ds-0+deb13u1
QEMU_DEB_SHA256=ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336
QEMU_DEB_URL="http://deb.debian.org/debian/pool/main/q/qemu/qemu-user_${QEMU_VERSION}_amd64.deb"
# The ELF header of an aarch64 executable, as Debian's qemu-user-binfmt registers it.
MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

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

if [ ! -x "${qemu}" ]; then
  deb="${cache}/qemu-user_${QEMU_VERSION}_amd64.deb"
  if [ ! -s "${deb}" ]; then
    mkdir -p "${cache}"
    echo "downloading ${QEMU_DEB_URL}" >&2
    curl --fail --silent --show-error --location --output "${deb}.tmp" "${QEMU_DEB_URL}" || {
      echo "error: cannot download qemu-user ${QEMU_VERSION} from deb.debian.org; if the" \
        "archive no longer has it, pin the current trixie version in ${BASH_SOURCE[0]}" >&2
      exit 1
    }
    mv "${deb}.tmp" "${deb}"
  fi
  if ! echo "${QEMU_DEB_SHA256}  ${deb}" | sha256sum --check --quiet; then
    echo "error: ${deb} does not have the pinned sha256 ${QEMU_DEB_SHA256}; delete it" \
      "and run again" >&2
    exit 1
  fi
  unpacked="$(mktemp -d)"
  dpkg-deb --fsys-tarfile "${deb}" | tar -x -C "${unpacked}" ./usr/bin/qemu-aarch64
  install -D -m 0755 "${unpacked}/usr/bin/qemu-aarch64" "${qemu}"
  rm -rf "${unpacked}"
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
