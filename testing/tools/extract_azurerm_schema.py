"""Regenerate the vendored azurerm provider schema from the cdktf bindings on PyPI.

There is no `terraform` binary on the machines that run the tests, so `terraform providers schema
-json` is not available. The prebuilt cdktf bindings for hashicorp/azurerm carry the same
information in their jsii type system: every resource has a ``<Name>Config`` struct whose properties
are the resource's arguments (optional or required) and whose nested structs are its blocks. This
script reads that assembly and writes a compact JSON schema:

    {"_meta": {...},
     "provider": {attr: spec},
     "resource": {"azurerm_x": {attr: spec}},
     "data": {"azurerm_x": {attr: spec}}}

where ``spec`` is ``{"type": "string"|"number"|"boolean"|"array"|"map"|"block", "required": bool}``
plus ``"element"`` (the spec of an array/map element) or ``"block"`` (the attributes of a nested
block). A block that may appear once is ``type == "block"``; a repeatable block is an ``array``
whose element is a ``block``. Attribute names are the Terraform (snake_case) names, taken from the
registry anchor in each property's documentation.

Usage:
    python testing/tools/extract_azurerm_schema.py \
        --out testing/fixtures/schemas/terraform/azurerm-4.55.0.schema.json.gz

The wheel is downloaded with ``pip download`` (or pass ``--wheel`` with a local copy). HashiCorp
stopped publishing prebuilt bindings on 2025-12-10, so 14.23.1 (azurerm 4.55.0) is the last one.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PACKAGE = "cdktf-cdktf-provider-azurerm"
PACKAGE_VERSION = "14.23.1"
PROVIDER_VERSION = "4.55.0"
RESOURCE_BASE = "cdktf.TerraformResource"
DATA_SOURCE_BASE = "cdktf.TerraformDataSource"
RESOLVABLE = "cdktf.IResolvable"

# "{@link https://registry.terraform.io/.../azurerm/4.55.0/docs/resources/x azurerm_x}"
_TYPE_LINK = re.compile(r"/docs/(resources|data-sources)/\S+ (azurerm_[a-z0-9_]+)\}")
# "...docs/resources/x#attr_name X#attr_name}" -> attr_name
_ATTR_ANCHOR = re.compile(r"#([a-z0-9_]+) [A-Za-z0-9]+#")

Spec = dict[str, Any]


def download_wheel(directory: Path) -> Path:
    """Download the cdktf azurerm wheel with pip.

    Args:
        directory: Folder to download into.

    Returns:
        The path of the downloaded wheel.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(directory),
            f"{PACKAGE}=={PACKAGE_VERSION}",
        ],
        check=True,
    )
    return next(directory.glob("cdktf_cdktf_provider_azurerm-*.whl"))


def load_assembly(wheel: Path) -> dict[str, Any]:
    """Read the jsii assembly (``package/.jsii``) out of the wheel's embedded tarball.

    Args:
        wheel: Path of the cdktf azurerm wheel.

    Returns:
        The parsed jsii assembly.
    """
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(archive.read(member))) as tar:
            handle = tar.extractfile("package/.jsii")
            if handle is None:
                raise FileNotFoundError(f"package/.jsii missing in {member}")
            assembly: dict[str, Any] = json.load(handle)
    return assembly


def _docs_text(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    return f"{docs.get('summary', '')} {docs.get('remarks', '')}"


def _terraform_name(prop: dict[str, Any]) -> str:
    """Return the Terraform attribute name of a jsii property (from its registry doc anchor)."""
    match = _ATTR_ANCHOR.search(_docs_text(prop))
    if match:
        return match.group(1)
    # Fallback: camelCase -> snake_case (only used when the docs carry no anchor).
    return re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()


class _Converter:
    """Turns jsii type references into schema specs, recursing into block structs."""

    def __init__(self, types: dict[str, Any]) -> None:
        self.types = types

    def struct(self, fqn: str) -> dict[str, Spec]:
        """Return the attribute specs of a datatype interface (a resource config or a block)."""
        attrs: dict[str, Spec] = {}
        for prop in self.types[fqn].get("properties", []):
            spec = self.type_spec(prop["type"])
            spec["required"] = not prop.get("optional", False)
            attrs[_terraform_name(prop)] = spec
        return dict(sorted(attrs.items()))

    def type_spec(self, ref: dict[str, Any]) -> Spec:
        """Convert one jsii type reference."""
        if "primitive" in ref:
            primitive = ref["primitive"]
            return {"type": "string" if primitive == "any" else primitive}
        if "collection" in ref:
            collection = ref["collection"]
            element = self.type_spec(collection["elementtype"])
            return {"type": collection["kind"], "element": element}
        if "union" in ref:
            members = [t for t in ref["union"]["types"] if t.get("fqn") != RESOLVABLE]
            if len(members) == 1:
                return self.type_spec(members[0])
            return {"type": "union", "members": [self.type_spec(t) for t in members]}
        fqn = ref["fqn"]
        target = self.types.get(fqn)
        if target is not None and target.get("datatype"):
            return {"type": "block", "block": self.struct(fqn)}
        return {"type": fqn}


def extract(assembly: dict[str, Any]) -> dict[str, Any]:
    """Build the compact schema from a jsii assembly.

    Args:
        assembly: The parsed ``.jsii`` of the cdktf azurerm bindings.

    Returns:
        The schema dict (see the module docstring for the format).
    """
    types: dict[str, Any] = assembly["types"]
    converter = _Converter(types)
    schema: dict[str, Any] = {
        "_meta": {
            "provider": "registry.terraform.io/hashicorp/azurerm",
            "provider_version": PROVIDER_VERSION,
            "source": (
                f"PyPI {PACKAGE}=={PACKAGE_VERSION} (wheel) -> "
                f"cdktf_cdktf_provider_azurerm/_jsii/provider-azurerm@{PACKAGE_VERSION}.jsii.tgz "
                "-> package/.jsii"
            ),
            "format": (
                "provider|resource|data -> tf_type -> attribute -> {type: string|number|boolean|"
                "array|map|block, required: bool, element?: spec, block?: {attr: spec}}; single "
                "nested blocks (MaxItems 1) are type=block, repeatable blocks are type=array with "
                "element.type=block"
            ),
            "caveats": (
                "no Computed/ConflictsWith/ExactlyOneOf/enum info; optional+computed shows as "
                'optional; the "id" attribute appears as optional (ignore it); timeouts block '
                "included"
            ),
        },
        "provider": {},
        "resource": {},
        "data": {},
    }
    for fqn, jsii_type in types.items():
        base = jsii_type.get("base")
        if base not in (RESOURCE_BASE, DATA_SOURCE_BASE):
            continue
        match = _TYPE_LINK.search(jsii_type.get("docs", {}).get("summary", ""))
        if match is None:
            logger.warning("no Terraform type name in the docs of %s, skipped", fqn)
            continue
        kind = "resource" if match.group(1) == "resources" else "data"
        parameters = jsii_type["initializer"]["parameters"]
        config = next(p["type"]["fqn"] for p in parameters if p["name"] == "config")
        schema[kind][match.group(2)] = converter.struct(config)
    provider_config = "@cdktf/provider-azurerm.provider.AzurermProviderConfig"
    provider = converter.struct(provider_config)
    schema["provider"] = {k: v for k, v in provider.items() if k != "alias"}
    for kind in ("resource", "data"):
        schema[kind] = dict(sorted(schema[kind].items()))
    return schema


def write(schema: dict[str, Any], out: Path) -> None:
    """Write the schema as JSON, gzipped (reproducibly, mtime 0) when ``out`` ends in ``.gz``."""
    data = json.dumps(schema, indent=1, sort_keys=False).encode() + b"\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".gz":
        with (
            out.open("wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as compressed,
        ):
            compressed.write(data)
    else:
        out.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output .json or .json.gz")
    parser.add_argument("--wheel", type=Path, help="use this wheel instead of downloading it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        logger.info("wheel %s sha256 %s", wheel.name, digest)
        schema = extract(load_assembly(wheel))
    schema["_meta"]["wheel_sha256"] = digest
    write(schema, args.out)
    logger.info(
        "wrote %s: %d resources, %d data sources, %d provider arguments",
        args.out,
        len(schema["resource"]),
        len(schema["data"]),
        len(schema["provider"]),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
