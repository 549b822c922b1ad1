"""environments/docker/binfmt.sh: the pinned QEMU it registers for arm64v8 builds on amd64.

Registering needs root and changes the host, so it is exercised by the arm64v8 container test
(testing/integration/edge/test_container.py, --run-slow); here, the pin and the refusal of a
package that is not the pinned one, which stop before anything is installed or registered.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "environments" / "docker" / "binfmt.sh"


def _pin(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", SCRIPT.read_text(), flags=re.MULTILINE)
    assert found, f"binfmt.sh no longer sets {name}"
    return found.group(1)


def test_the_qemu_package_is_pinned_by_version_and_sha256() -> None:
    # A Debian version of QEMU 10 or later (7.2, bookworm's, hangs in LiteRT under a container),
    # and the package's SHA256 as the archive's Packages index lists it.
    version = _pin("QEMU_VERSION")
    assert re.fullmatch(r"(1\d|[2-9]\d)\.\d+\.\d+\+ds-\S+", version), version
    assert re.fullmatch(r"[0-9a-f]{64}", _pin("QEMU_DEB_SHA256"))
    assert "pool/main/q/qemu/qemu-user_${QEMU_VERSION}_amd64.deb" in _pin("QEMU_DEB_URL")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="binfmt.sh installs an x86_64 QEMU")
def test_a_package_without_the_pinned_sha256_is_refused(tmp_path: Path) -> None:
    cache, install = tmp_path / "cache", tmp_path / "qemu"
    cache.mkdir()
    deb = cache / f"qemu-user_{_pin('QEMU_VERSION')}_amd64.deb"
    deb.write_bytes(b"not the package that was pinned")
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "PPE_EDGE_CACHE": str(cache), "PPE_QEMU_DIR": str(install)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"{deb} does not have the pinned sha256" in result.stderr
    assert "delete it and run again" in result.stderr
    assert not install.exists()  # nothing installed, nothing registered
