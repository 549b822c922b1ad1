"""environments/docker/binfmt.sh: the pinned QEMU it registers for arm64v8 builds on amd64.

Registering needs root and changes the host, so it is exercised by the arm64v8 container test
(testing/integration/edge/test_container.py, --run-slow); here, the pin, the refusal of a
package that is not the pinned one, and the fallback to trixie's signed index once Debian's pool
has dropped the pinned version (``--install-only``: nothing is registered).
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import os
import platform
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


# --- When Debian's pool has dropped the pinned version --------------------------------------------
# Debian's pool keeps a stable release's current packages only, so the pinned .deb answers 404
# after trixie's next point release. binfmt.sh then reads trixie's signed index. Here Debian's
# archive is a loopback HTTP mirror signed by a throwaway key (no Debian key can sign test data):
# the same files and checks as deb.debian.org, InRelease -> Packages.xz -> the .deb.

NEW_VERSION = "10.1.2+ds-1"


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=120, **kwargs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Mirror:
    """A Debian-style archive on loopback: ``url``, its keyring and the script's environment."""

    root: Path
    url: str
    keyring: Path
    gnupg: Path
    env: dict[str, str]

    def publish(
        self, version: str, *, packages_sha: str | None = None, signer: Path | None = None
    ) -> str:
        """Put qemu-user ``version`` in the pool, its index and a signed InRelease; its sha256."""
        build = self.root.parent / f"deb-{version}"
        (build / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (build / "usr" / "bin").mkdir(parents=True, exist_ok=True)
        (build / "usr" / "bin" / "qemu-aarch64").write_text(f"#!/bin/sh\necho qemu {version}\n")
        (build / "DEBIAN" / "control").write_text(
            f"Package: qemu-user\nVersion: 1:{version}\nArchitecture: amd64\n"
            "Maintainer: nobody <nobody@example.invalid>\nDescription: test package\n"
        )
        pool = self.root / "pool" / "main" / "q" / "qemu"
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"qemu-user_{version}_amd64.deb"
        _run(["dpkg-deb", "--root-owner-group", "--build", str(build), str(deb)])
        sha = _sha256(deb)
        dists = self.root / "dists" / "trixie"
        (dists / "main" / "binary-amd64").mkdir(parents=True, exist_ok=True)
        packages = (
            "Package: qemu-guest-agent\nVersion: 1:9.0.0\nFilename: pool/main/q/qemu/other.deb\n"
            "SHA256: " + "0" * 64 + "\n\n"
            f"Package: qemu-user\nVersion: 1:{version}\nArchitecture: amd64\n"
            f"Filename: pool/main/q/qemu/{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {sha}\n"
            # Debian's index goes on for tens of megabytes after any one package: reading must
            # not stop the decompression halfway (a pipe from xz would die of SIGPIPE).
            + "".join(
                f"\nPackage: padding-{n}\nVersion: 1.0-{n}\nFilename: pool/main/p/padding-{n}.deb\n"
                f"SHA256: {n:064x}\nDescription: {'x' * 200}\n"
                for n in range(2000)
            )
        )
        index = dists / "main" / "binary-amd64" / "Packages.xz"
        index.write_bytes(lzma.compress(packages.encode()))
        listed = packages_sha or _sha256(index)
        release = dists / "Release"
        release.write_text(
            "Origin: Debian\nSuite: stable\nCodename: trixie\nSHA256:\n"
            f" {listed} {index.stat().st_size} main/binary-amd64/Packages.xz\n"
        )
        _run(
            [
                "gpg",
                "--homedir",
                str(signer or self.gnupg),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--clearsign",
                "--output",
                str(dists / "InRelease"),
                str(release),
            ]
        )
        return sha


def _keypair(home: Path) -> None:
    home.mkdir(mode=0o700)
    _run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            f"Test archive {home.name} <archive@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ]
    )


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves the mirror's folder without logging each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    for tool in ("gpg", "gpgv", "dpkg-deb", "xz", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make setup-system` installs it")
    root = tmp_path / "mirror"
    root.mkdir()
    gnupg = tmp_path / "gnupg"
    _keypair(gnupg)
    keyring = tmp_path / "archive-keyring.gpg"
    keyring.write_bytes(
        subprocess.run(
            ["gpg", "--homedir", str(gnupg), "--export"], capture_output=True, check=True
        ).stdout
    )
    handler = functools.partial(QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        **os.environ,
        "PPE_DEBIAN_MIRROR": url,
        "PPE_DEBIAN_KEYRING": str(keyring),
        "PPE_EDGE_CACHE": str(tmp_path / "cache"),
        "PPE_QEMU_DIR": str(tmp_path / "qemu"),
    }
    try:
        yield Mirror(root, url, keyring, gnupg, env)
    finally:
        server.shutdown()
        server.server_close()


def _binfmt(mirror: Mirror, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=mirror.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


x86_only = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="binfmt.sh installs an x86_64 QEMU"
)


@x86_only
def test_a_dropped_pin_falls_back_to_the_signed_index(mirror: Mirror) -> None:
    sha = mirror.publish(NEW_VERSION)
    result = _binfmt(mirror, "--install-only")
    assert result.returncode == 0, result.stderr
    assert f"qemu-user {_pin('QEMU_VERSION')} is no longer in {mirror.url}" in result.stderr
    assert f"QEMU_VERSION={NEW_VERSION} QEMU_DEB_SHA256={sha}" in result.stderr  # the new pin
    installed = Path(mirror.env["PPE_QEMU_DIR"]) / f"qemu-aarch64-{NEW_VERSION}"
    assert installed.read_text() == f"#!/bin/sh\necho qemu {NEW_VERSION}\n"
    assert os.access(installed, os.X_OK)
    assert "not registered: --install-only" in result.stderr
    # Run again: the installed binary is reused and nothing is downloaded twice.
    again = _binfmt(mirror, "--install-only")
    assert again.returncode == 0, again.stderr
    assert f"downloading {mirror.url}/pool/main/q/qemu/qemu-user_{NEW_VERSION}" not in again.stderr


@x86_only
def test_an_index_signed_by_another_key_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    _keypair(stranger)
    mirror.publish(NEW_VERSION, signer=stranger)
    result = _binfmt(mirror, "--install-only")
    assert result.returncode == 1
    assert f"{mirror.url}/dists/trixie/InRelease is not signed by a key of {mirror.keyring}" in (
        result.stderr
    )
    assert not Path(mirror.env["PPE_QEMU_DIR"]).exists()


@x86_only
def test_an_index_that_does_not_match_its_release_is_refused(mirror: Mirror) -> None:
    mirror.publish(NEW_VERSION, packages_sha="f" * 64)
    result = _binfmt(mirror, "--install-only")
    assert result.returncode == 1
    assert f"not the {'f' * 64} that the signed Release lists" in result.stderr
    assert not Path(mirror.env["PPE_QEMU_DIR"]).exists()


@x86_only
def test_a_qemu_older_than_10_is_refused(mirror: Mirror) -> None:
    mirror.publish("9.2.1+ds-1")
    result = _binfmt(mirror, "--install-only")
    assert result.returncode == 1
    assert "qemu-user is 9.2.1+ds-1; the arm64v8 build needs QEMU 10 or later" in result.stderr
    assert not Path(mirror.env["PPE_QEMU_DIR"]).exists()


def test_an_unknown_argument_is_refused() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--register-only"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "unknown argument --register-only; usage: binfmt.sh [--install-only]" in result.stderr
