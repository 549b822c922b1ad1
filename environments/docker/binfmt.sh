#!/usr/bin/env bash
# Let this host run arm64 (aarch64) programs under QEMU user-mode emulation, for building and
# running the arm64v8 module image on an amd64 machine: mounts binfmt_misc if needed and registers
# Debian's qemu-user-static handler (/usr/lib/binfmt.d/qemu-aarch64.conf, flag F: the interpreter
# is opened now, so it also works inside containers and chroots). Needs root; a no-op when the
# host is arm64 or the handler is already registered.
set -euo pipefail

[ "$(uname -m)" = aarch64 ] && exit 0
binfmt=/proc/sys/fs/binfmt_misc
[ -e "${binfmt}/qemu-aarch64" ] && exit 0
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
if [ ! -s "${conf}" ]; then
  echo "error: ${conf} is missing; install Debian's qemu-user-static (make setup)" >&2
  exit 1
fi
if [ ! -e "${binfmt}/register" ]; then
  mount -t binfmt_misc binfmt_misc "${binfmt}"
fi
cat "${conf}" >"${binfmt}/register"
echo "registered qemu-aarch64 with binfmt_misc" >&2
