"""The 450 MB image target of issue 15, stated for the official slim base the Dockerfile names.

The official base cannot be pulled offline, so ``make bench`` estimates the image on it as the
layers measured here plus the base's size published by Docker's official-image records
(docker-library/repo-info). These tests pin the rules of that estimate, with no Docker engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.edge_image import (
    DOCKERFILE,
    PUBLISHED_BASE_MB,
    SIZE_TARGET_MB,
    default_base,
    size_target,
)

REPO = Path(__file__).resolve().parents[3]


def test_the_dockerfiles_default_base_has_a_published_size() -> None:
    # Moving the Dockerfile to another base without its published size would silently turn the
    # target into "not measured": the table must follow the Dockerfile.
    official = default_base(REPO / DOCKERFILE)
    assert official.startswith("python:3.11."), official
    assert "-slim" in official, official
    assert official in PUBLISHED_BASE_MB, f"add {official}'s published size to PUBLISHED_BASE_MB"


def test_the_estimate_is_our_layers_plus_the_published_base() -> None:
    official = default_base(REPO / DOCKERFILE)
    base = PUBLISHED_BASE_MB[official]
    met = size_target(SIZE_TARGET_MB - base - 1, official, 600.0, 224.0)
    assert met["met"] is True
    assert met["measured"] == pytest.approx(SIZE_TARGET_MB - 1)
    assert f"repos/python/local/{official.split(':')[1]}.md" in met["note"]
    missed = size_target(SIZE_TARGET_MB - base + 1, official, 600.0, 224.0)
    assert missed["met"] is False
    assert missed["measured"] == pytest.approx(SIZE_TARGET_MB + 1)


def test_our_layers_alone_over_the_target_miss_it_on_any_base() -> None:
    result = size_target(SIZE_TARGET_MB, "python:9.9-slim-unknown", 700.0, 224.0)
    assert result["met"] is False
    assert result["measured"] == SIZE_TARGET_MB
    assert "on any base" in result["note"]


def test_a_base_with_no_published_size_is_not_measured_and_the_note_names_the_fix() -> None:
    result = size_target(298.0, "python:9.9-slim-unknown", 522.0, 224.0)
    assert result["measured"] is None and result["met"] is False
    assert "PUBLISHED_BASE_MB" in result["note"]
    assert "docker-library/repo-info repos/python/local/9.9-slim-unknown.md" in result["note"]
    assert "under 152 MB" in result["note"]


def test_a_dockerfile_without_a_base_argument_is_named(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\n")
    with pytest.raises(ValueError, match="Dockerfile: no `ARG BASE_IMAGE=<image>` default line"):
        default_base(dockerfile)
    dockerfile.write_text("ARG BASE_IMAGE=python:3.11.14-slim-trixie@sha256:" + "0" * 64 + "\n")
    assert default_base(dockerfile) == "python:3.11.14-slim-trixie"
