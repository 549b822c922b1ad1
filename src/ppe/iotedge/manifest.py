"""Render and validate IoT Edge deployment manifests from ``deployment.template.json``.

The rendering follows ``iotedgedev solution genconfig`` (and the ``AzureIoTEdge@2`` task that wraps
it) step by step, so a manifest made here equals the one those tools make from the same inputs:

1. Expand ``${VAR}`` and ``$VAR`` in the template text from an environment mapping.
2. Replace ``${MODULES.<name>}`` (image for the chosen platform) and
   ``${MODULES.<name>.<platform>}`` with ``<repository>:<version>[-CONTAINER_TAG]-<platform>``,
   read from ``<MODULES_PATH>/<name>/module.json`` beside the template.
3. Turn each module's ``createOptions`` object into a compact JSON string and split strings longer
   than 512 characters into ``createOptions``, ``createOptions01`` ... (8 parts at most).
4. Drop ``$schema-template``.

Deliberate differences, all of which fail where iotedgedev would silently write a broken manifest:
a variable that is unset or empty is an error naming it (iotedgedev leaves ``$VAR`` in place);
only upper-case ``$NAME`` is a variable, so IoT Edge's own ``$edgeAgent``, ``$edgeHub`` and
``$upstream`` are never touched; values are JSON-escaped before substitution, so a password with
a quote or backslash stays one JSON string.

Validation uses the official SchemaStore schemas (vendored in the repository, never fetched):
template 4.0 (which refers to edgeAgent 1.1 and edgeHub 1.2) for the expanded template, and
deployment 2.0 for the manifest. ``jsonschema`` and ``referencing`` are imported only when
validating, so rendering needs nothing beyond the standard library.

Library functions read no environment: callers pass the mapping in (the CLI reads ``os.environ``
and the ``.env`` file).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from ppe.errors import ManifestError

logger = logging.getLogger(__name__)

MODULE_NAME = "ppedetector"
PLATFORMS: tuple[str, ...] = ("amd64", "arm64v8")
CREATE_OPTIONS_CHUNK_CHARS = 512
CREATE_OPTIONS_MAX_CHUNKS = 8
TEMPLATE_SCHEMA_FILE = "azure-iot-edge-deployment-template-4.0.json"
MANIFEST_SCHEMA_FILE = "azure-iot-edge-deployment-2.0.json"
DEFAULT_MODULES_PATH = "modules"
# Variables that may be set to an empty string: no per-build tag; no frame source (the module
# then scores only what is POSTed to its HTTP port). Every other variable must be non-empty.
ALLOW_EMPTY: frozenset[str] = frozenset({"CONTAINER_TAG", "FRAME_SOURCE"})
WHERE_TO_SET = (
    "set it in the .env file beside the template (see .env.template) or in the environment "
    "(in Azure DevOps: the variable group)"
)

# `${ANYTHING}` or `$UPPER_CASE_NAME`; mixed-case `$edgeHub`/`$upstream` are IoT Edge syntax.
_REFERENCE = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<bare>[A-Z_][A-Z0-9_]*)(?![A-Za-z0-9_]))")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE_PLACEHOLDER = re.compile(
    r"^MODULES\.(?P<module>[A-Za-z0-9_-]+)(?:\.(?P<platform>[\w.]+))?$"
)
# The module's container limits (Docker Engine API HostConfig, which createOptions carry): below
# this the process, LiteRT and two concurrent uploads' decode budgets (2 x 128 MiB) do not fit.
MIN_MODULE_MEMORY_BYTES = 384 * 1024 * 1024
#: The module's env variables that may never carry a literal secret (the manifest is stored in the
#: IoT Hub and readable by everyone with deployment read access): a file from a host secret instead.
SECRET_ENV: Mapping[str, str] = {"SCORE_TOKEN": "SCORE_TOKEN_FILE"}
_DOCKER_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MODEL_VERSION = re.compile(r"^[1-9][0-9]*$")
_CREATE_OPTIONS_KEY = re.compile(r"^createOptions(?P<index>[0-9]{2})?$")
# python-dotenv's line grammar, reduced to what .env files use.
_DOTENV_LINE = re.compile(
    r"""^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=[ \t]*
        (?:'(?P<single>(?:\\.|[^'\\])*)'|"(?P<double>(?:\\.|[^"\\])*)"|(?P<bare>[^\r\n]*))""",
    re.VERBOSE,
)
_DOTENV_INTERPOLATION = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")
_DOUBLE_QUOTE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class ModuleImage:
    """A custom module's image as ``module.json`` (iotedgedev format) describes it.

    Attributes:
        name: Module folder name, as in ``${MODULES.<name>}``.
        repository: Image repository, e.g. ``myacr.azurecr.io/ppedetector``.
        version: ``image.tag.version`` from ``module.json``.
        dockerfiles: Platform (``amd64``, ``arm64v8``) -> Dockerfile path relative to the folder.
        context_path: Docker build context, relative to the module folder.
        source: Path of the ``module.json`` (for messages).
    """

    name: str
    repository: str
    version: str
    dockerfiles: Mapping[str, str]
    context_path: str
    source: Path

    def image(self, platform: str, container_tag: str = "") -> str:
        """Image reference for a platform, as iotedgedev builds and pushes it.

        Args:
            platform: One of the platforms listed in ``module.json``.
            container_tag: ``CONTAINER_TAG`` (per-build suffix), or empty for none.

        Returns:
            ``<repository lower-cased>:<version>[-<container_tag>]-<platform>``.

        Raises:
            ManifestError: The platform has no Dockerfile in ``module.json``.
        """
        if platform not in self.dockerfiles:
            raise ManifestError(
                f"{self.source}: module {self.name!r} has no Dockerfile for platform "
                f"{platform!r}; its platforms are {', '.join(sorted(self.dockerfiles))}"
            )
        suffix = f"-{container_tag}" if container_tag else ""
        return f"{self.repository.lower()}:{self.version}{suffix}-{platform}"


def parse_dotenv(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse a ``.env`` file the way python-dotenv (used by iotedgedev) does.

    ``KEY=value`` lines, optional ``export``, ``#`` comments (inline after whitespace for unquoted
    values), single and double quotes (double quotes decode C-style escapes). ``${NAME}`` and
    ``${NAME:-default}`` in any value refer to the environment first, then to keys defined
    earlier in the file, as python-dotenv does when it does not override the environment.

    Args:
        text: The file's content.
        environ: The process environment used for ``${NAME}`` references (none if omitted).

    Returns:
        The file's keys and their values (the environment itself is not included).
    """
    environ = environ or {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            logger.warning("ignoring a .env line that is not KEY=VALUE: %r", line)
            continue
        if match["single"] is not None:
            raw = match["single"].replace("\\'", "'").replace("\\\\", "\\")
        elif match["double"] is not None:
            raw = re.sub(
                r"\\(.)",
                lambda esc: _DOUBLE_QUOTE_ESCAPES.get(esc[1], esc[0]),
                match["double"],
            )
        else:
            bare = match["bare"]
            raw = "" if bare.startswith("#") else re.sub(r"\s+#.*", "", bare).rstrip()
        scope = {**values, **environ}
        values[match["key"]] = _DOTENV_INTERPOLATION.sub(
            lambda ref, scope=scope: scope.get(ref["name"], ref["default"] or ""), raw
        )
    return values


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def load_module_image(module_dir: Path, env: Mapping[str, str]) -> ModuleImage:
    """Read ``module.json`` from a module folder, expanding ``${VAR}`` like the template.

    Args:
        module_dir: Folder holding ``module.json`` (iotedgedev: ``<MODULES_PATH>/<name>``).
        env: Variables for ``${VAR}`` references in ``module.json``.

    Returns:
        The module's image description.

    Raises:
        ManifestError: The file is missing, not JSON, misses fields, or uses unset variables.
    """
    path = module_dir / "module.json"
    if not path.is_file():
        raise ManifestError(f"{path}: not found; every module folder needs a module.json")
    text = expand_variables(path.read_text(encoding="utf-8"), env, source=str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON after expansion: {error}") from None
    image = data.get("image") if isinstance(data, dict) else None
    tag = image.get("tag") if isinstance(image, dict) else None
    platforms = tag.get("platforms") if isinstance(tag, dict) else None
    if not (
        isinstance(image, dict)
        and isinstance(image.get("repository"), str)
        and isinstance(tag, dict)
        and isinstance(tag.get("version"), str)
        and isinstance(platforms, dict)
        and platforms
    ):
        raise ManifestError(
            f"{path}: needs image.repository, image.tag.version and image.tag.platforms "
            "(platform -> Dockerfile), as iotedgedev's module.json"
        )
    return ModuleImage(
        name=module_dir.name,
        repository=image["repository"],
        version=tag["version"],
        dockerfiles={str(key): str(value) for key, value in platforms.items()},
        context_path=str(image.get("contextPath", ".")),
        source=path,
    )


def expand_variables(
    text: str,
    env: Mapping[str, str],
    *,
    source: str,
    platform: str | None = None,
    modules_dir: Path | None = None,
    allow_empty: frozenset[str] = ALLOW_EMPTY,
) -> str:
    """Expand ``${VAR}``, ``$VAR`` and ``${MODULES.<name>[.<platform>]}`` in JSON text.

    Args:
        text: Template (or ``module.json``) text.
        env: Variable values. ``CONTAINER_TAG`` also feeds module image tags.
        source: File name used in messages.
        platform: Default platform for ``${MODULES.<name>}``; needed when the text has one.
        modules_dir: Folder of module folders; needed when the text has ``${MODULES...}``.
        allow_empty: Variables that may be set to an empty string (others must have a value).

    Returns:
        The text with every reference replaced; values are JSON-string-escaped.

    Raises:
        ManifestError: Listing every unset or empty variable (with its line) and where to set
            it, or an unknown module or platform.
    """
    missing: dict[str, list[int]] = {}
    problems: list[str] = []
    modules: dict[str, ModuleImage] = {}

    def module_image(placeholder: str, line: int) -> str:
        match = _MODULE_PLACEHOLDER.match(placeholder)
        if match is None or modules_dir is None or platform is None:
            raise ManifestError(
                f"{source}:{line}: unsupported placeholder ${{{placeholder}}}; use "
                "${MODULES.<name>} or ${MODULES.<name>.<platform>}"
            )
        name = match["module"]
        if name not in modules:
            module_dir = modules_dir / name
            if not (module_dir / "module.json").is_file():
                raise ManifestError(
                    f"{source}:{line}: ${{{placeholder}}} needs {module_dir / 'module.json'} "
                    f"(module folders live under MODULES_PATH={modules_dir.name!r})"
                )
            modules[name] = load_module_image(module_dir, env)
        container_tag = env.get("CONTAINER_TAG", "")
        if container_tag and not _DOCKER_TAG.match(container_tag):
            raise ManifestError(
                f"CONTAINER_TAG={container_tag!r} is not a valid Docker tag part: use letters, "
                "digits, '_', '.' and '-' (128 characters at most)"
            )
        return modules[name].image(match["platform"] or platform, container_tag)

    def replace(match: re.Match[str]) -> str:
        line = _line_of(text, match.start())
        name = match["bare"] or match["braced"]
        if match["braced"] is not None and not _VARIABLE_NAME.match(name):
            try:
                return json.dumps(module_image(name, line), ensure_ascii=False)[1:-1]
            except ManifestError as error:  # reported with the missing variables below
                problems.append(str(error))
                return match.group(0)
        value = env.get(name)
        if value is None or (not value and name not in allow_empty):
            missing.setdefault(name, []).append(line)
            return match.group(0)
        return json.dumps(value, ensure_ascii=False)[1:-1]

    expanded = _REFERENCE.sub(replace, text)
    if missing:
        listed = "; ".join(
            f"{name} (line {', '.join(map(str, lines))}{', set but empty' if name in env else ''})"
            for name, lines in missing.items()
        )
        problems.insert(0, f"{source} needs variables that are not set: {listed}; {WHERE_TO_SET}")
    if problems:
        raise ManifestError("\n".join(problems) if len(problems) > 1 else problems[0])
    return expanded


def _modules_dir(template_path: Path, env: Mapping[str, str]) -> Path:
    return template_path.parent / (env.get("MODULES_PATH") or DEFAULT_MODULES_PATH)


def expand_template(
    template_path: Path,
    env: Mapping[str, str],
    platform: str,
    *,
    tag: str | None = None,
    model_version: str | int | None = None,
) -> dict[str, Any]:
    """Load ``deployment.template.json`` with every variable and image placeholder expanded.

    createOptions stay JSON objects and ``$schema-template`` stays: this is the document the
    template schema (4.0) describes. :func:`to_manifest` turns it into a manifest.

    Args:
        template_path: The template file.
        env: Variables (the CLI merges ``.env`` under ``os.environ``).
        platform: ``amd64`` or ``arm64v8``: the image ``${MODULES.<name>}`` resolves to.
        tag: Image tag suffix; overrides ``CONTAINER_TAG`` in ``env`` when given.
        model_version: Registered model version; overrides ``MODEL_VERSION`` in ``env``.

    Returns:
        The expanded template as a JSON-compatible dict.

    Raises:
        ManifestError: Unknown platform, bad tag or model version, unset variables, or text that
            is not JSON once expanded (with the variables used on the offending line).
    """
    if platform not in PLATFORMS:
        raise ManifestError(f"platform {platform!r} is not supported; use one of {PLATFORMS}")
    values = dict(env)
    if tag is not None:
        if not _DOCKER_TAG.match(tag):
            raise ManifestError(
                f"--tag {tag!r} is not a valid Docker tag part: use letters, digits, '_', '.' "
                "and '-' (128 characters at most)"
            )
        values["CONTAINER_TAG"] = tag
    if model_version is not None:
        values["MODEL_VERSION"] = str(model_version)
    if values.get("MODEL_VERSION") and not _MODEL_VERSION.match(values["MODEL_VERSION"]):
        raise ManifestError(
            f"model version {values['MODEL_VERSION']!r} must be a positive integer "
            "(a registered model's version number)"
        )
    if not template_path.is_file():
        raise ManifestError(f"{template_path}: template not found")
    text = template_path.read_text(encoding="utf-8")
    expanded = expand_variables(
        text,
        values,
        source=template_path.name,
        platform=platform,
        modules_dir=_modules_dir(template_path, values),
    )
    try:
        document = json.loads(expanded)
    except json.JSONDecodeError as error:
        used = sorted({m["bare"] or m["braced"] for m in _REFERENCE.finditer(_line(text, error))})
        hint = f"; check the values of {', '.join(used)}" if used else ""
        raise ManifestError(
            f"{template_path.name}:{error.lineno}:{error.colno}: not valid JSON after expanding "
            f"variables: {error.msg}{hint}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("modulesContent"), dict):
        raise ManifestError(f"{template_path.name}: the top level needs a modulesContent object")
    return document


def _line(text: str, error: json.JSONDecodeError) -> str:
    lines = text.splitlines()
    return lines[error.lineno - 1] if 0 < error.lineno <= len(lines) else ""


def split_create_options(create_options: Mapping[str, Any] | str, module: str) -> dict[str, str]:
    """Stringify createOptions and split them into twin-sized parts, as iotedgedev does.

    Args:
        create_options: A Docker create-options object, or an already-serialised string.
        module: Module name, for the message when the options are too big.

    Returns:
        ``{"createOptions": part0, "createOptions01": part1, ...}``: compact JSON (separators
        ``,`` and ``:``) cut every 512 characters; joining the parts in key order restores it.

    Raises:
        ManifestError: More than 8 parts (4096 characters) would be needed.
    """
    if isinstance(create_options, str):
        serialised = create_options
    else:
        serialised = json.dumps(create_options, separators=(",", ":"))
    size = CREATE_OPTIONS_CHUNK_CHARS
    parts = [serialised[start : start + size] for start in range(0, len(serialised), size)] or [""]
    if len(parts) > CREATE_OPTIONS_MAX_CHUNKS:
        raise ManifestError(
            f"createOptions of module {module!r} are {len(serialised)} characters; IoT Edge "
            f"allows {CREATE_OPTIONS_MAX_CHUNKS} parts of {size} "
            f"({CREATE_OPTIONS_MAX_CHUNKS * size})"
        )
    return {
        ("createOptions" if index == 0 else f"createOptions{index:02d}"): part
        for index, part in enumerate(parts)
    }


def _all_modules(modules_content: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    desired = modules_content.get("$edgeAgent", {}).get("properties.desired", {})
    for group in ("systemModules", "modules"):
        for name, module in (desired.get(group) or {}).items():
            if isinstance(module, dict):
                yield name, module


def to_manifest(template: Mapping[str, Any]) -> dict[str, Any]:
    """Turn an expanded template into a deployment manifest (createOptions as strings).

    Args:
        template: Output of :func:`expand_template` (not modified).

    Returns:
        A new dict without ``$schema-template`` whose createOptions are split strings.

    Raises:
        ManifestError: createOptions too big for the module twin.
    """
    manifest = copy.deepcopy(dict(template))
    manifest.pop("$schema-template", None)
    for name, module in _all_modules(manifest["modulesContent"]):
        settings = module.get("settings")
        if not isinstance(settings, dict) or "createOptions" not in settings:
            continue
        for key in [key for key in settings if _CREATE_OPTIONS_KEY.match(key)]:
            if key != "createOptions":
                settings.pop(key)
        settings.update(split_create_options(settings["createOptions"], name))
    return manifest


def render_manifest(
    template_path: Path,
    env: Mapping[str, str],
    platform: str,
    *,
    tag: str | None = None,
    model_version: str | int | None = None,
) -> dict[str, Any]:
    """Render the deployment manifest for one platform (``iotedgedev solution genconfig -P``).

    Args:
        template_path: ``deployment.template.json``; module folders are looked up under
            ``MODULES_PATH`` (default ``modules``) beside it.
        env: Variables, see ``environments/iotedge/.env.template``.
        platform: ``amd64`` or ``arm64v8``.
        tag: Image tag suffix (``CONTAINER_TAG``); images are
            ``<registry>/<module>:<version>[-<tag>]-<platform>``.
        model_version: Registered model version the module loads (``MODEL_VERSION``).

    Returns:
        The manifest, ready for ``az iot edge set-modules --content``.

    Raises:
        ManifestError: See :func:`expand_template` and :func:`to_manifest`.
    """
    template = expand_template(template_path, env, platform, tag=tag, model_version=model_version)
    manifest = to_manifest(template)
    logger.debug("rendered %s for %s", template_path, platform)
    return manifest


def layered_manifest(manifest: Mapping[str, Any], module: str = MODULE_NAME) -> dict[str, Any]:
    """The part of a manifest that belongs to one module, as a layered deployment.

    For ``az iot edge deployment create --layered --content``: the module's definition, the
    registry credentials it pulls with, the edgeHub routes that read from it and its module twin,
    each under a dotted ``properties.desired...`` path so they merge into a base deployment.

    Args:
        manifest: A rendered manifest (:func:`render_manifest`).
        module: The module to extract.

    Returns:
        ``{"content": {"modulesContent": {...}}}``.

    Raises:
        ManifestError: The module is not in the manifest.
    """
    content = manifest["modulesContent"]
    agent = content["$edgeAgent"]["properties.desired"]
    hub = content.get("$edgeHub", {}).get("properties.desired", {})
    if module not in agent.get("modules", {}):
        raise ManifestError(f"module {module!r} is not in the manifest's $edgeAgent modules")
    agent_layer: dict[str, Any] = {
        f"properties.desired.modules.{module}": copy.deepcopy(agent["modules"][module])
    }
    credentials = agent.get("runtime", {}).get("settings", {}).get("registryCredentials", {})
    for name, credential in credentials.items():
        key = f"properties.desired.runtime.settings.registryCredentials.{name}"
        agent_layer[key] = copy.deepcopy(credential)
    source = f"/messages/modules/{module}/"
    hub_layer = {
        f"properties.desired.routes.{name}": copy.deepcopy(route)
        for name, route in hub.get("routes", {}).items()
        if source in (route["route"] if isinstance(route, dict) else route)
    }
    layer: dict[str, Any] = {"$edgeAgent": agent_layer, "$edgeHub": hub_layer}
    if module in content:
        layer[module] = copy.deepcopy(content[module])
    return {"content": {"modulesContent": layer}}


def base_manifest(manifest: Mapping[str, Any], module: str = MODULE_NAME) -> dict[str, Any]:
    """The base deployment of a manifest: the runtime without the custom module.

    For ``az iot edge deployment create`` without ``--layered``: every device a layered
    deployment targets needs one base deployment, which brings edgeAgent, edgeHub (its store,
    store-and-forward time-to-live and ports) and no custom module, route, registry credential or
    module twin: those come with the module's layered deployment. Nothing in it depends on the
    build, so its content changes only when the runtime settings change.

    Args:
        manifest: A rendered manifest (:func:`render_manifest`).
        module: The custom module to leave out.

    Returns:
        ``{"content": {"modulesContent": {"$edgeAgent": ..., "$edgeHub": ...}}}``.

    Raises:
        ManifestError: The manifest has no ``$edgeAgent`` or ``$edgeHub`` desired properties.
    """
    content = manifest["modulesContent"]
    try:
        agent = copy.deepcopy(content["$edgeAgent"]["properties.desired"])
        hub = copy.deepcopy(content["$edgeHub"]["properties.desired"])
    except KeyError as error:
        raise ManifestError(f"the manifest has no {error.args[0]!r} section for a base") from None
    agent["modules"] = {}
    agent.get("runtime", {}).get("settings", {}).pop("registryCredentials", None)
    source = f"/messages/modules/{module}/"
    hub["routes"] = {
        name: route
        for name, route in hub.get("routes", {}).items()
        if source not in (route["route"] if isinstance(route, dict) else route)
    }
    return {
        "content": {
            "modulesContent": {
                "$edgeAgent": {"properties.desired": agent},
                "$edgeHub": {"properties.desired": hub},
            }
        }
    }


def _schema_validator(schema_file: str, schemas_dir: Path) -> Any:
    try:
        import jsonschema
        from referencing import Registry
        from referencing.jsonschema import DRAFT4, DRAFT7
    except ImportError as error:  # pragma: no cover - both ship with the dev environment
        raise ManifestError(
            f"schema validation needs jsonschema and referencing ({error}); install the dev "
            "group (`make setup-python`) or skip validation"
        ) from None
    if not (schemas_dir / schema_file).is_file():
        raise ManifestError(
            f"{schemas_dir / schema_file}: schema not found; pass the folder of the vendored "
            "IoT Edge schemas (testing/fixtures/schemas/iotedge in the repository)"
        )
    resources = []
    for path in sorted(schemas_dir.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        uri = contents.get("$id") or contents.get("id") or path.name
        draft = DRAFT4 if "draft-04" in contents.get("$schema", "") else DRAFT7
        resources.append((uri, draft.create_resource(contents)))
    registry: Any = Registry().with_resources(resources)
    schema = json.loads((schemas_dir / schema_file).read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, registry=registry)


def _schema_errors(document: Mapping[str, Any], schema_file: str, schemas_dir: Path) -> list[str]:
    from jsonschema.exceptions import best_match

    validator = _schema_validator(schema_file, schemas_dir)
    messages = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        where = "/" + "/".join(str(part) for part in error.path)
        detail = error.message
        if error.context:
            deepest = best_match(error.context)
            detail += f" (closest: {deepest.message})"
        messages.append(f"{where}: {detail}")
    return messages


def template_errors(template: Mapping[str, Any], schemas_dir: Path) -> list[str]:
    """Schema errors of an expanded template against the template 4.0 schema.

    Args:
        template: Output of :func:`expand_template` (``${VAR}`` already expanded: the schema
            pins ``schemaVersion`` patterns that a placeholder cannot match).
        schemas_dir: Folder of the vendored SchemaStore IoT Edge schemas.

    Returns:
        One ``/json/path: message`` line per error; empty when valid.
    """
    return _schema_errors(template, TEMPLATE_SCHEMA_FILE, schemas_dir)


def manifest_errors(manifest: Mapping[str, Any], schemas_dir: Path) -> list[str]:
    """Errors of a rendered manifest: deployment 2.0 schema, then createOptions parts.

    The createOptions check is iotedgedev's: each part at most 512 characters, parts numbered
    without gaps, and their concatenation a JSON object. The ppedetector module's limits and
    isolation are checked too (:func:`hardening_errors`).

    Args:
        manifest: A rendered manifest.
        schemas_dir: Folder of the vendored SchemaStore IoT Edge schemas.

    Returns:
        One ``/json/path: message`` line per error; empty when valid.
    """
    messages = _schema_errors(manifest, MANIFEST_SCHEMA_FILE, schemas_dir)
    content = manifest.get("modulesContent")
    if not isinstance(content, dict):
        return messages
    for name, module in _all_modules(content):
        settings = module.get("settings")
        if not isinstance(settings, dict) or "createOptions" not in settings:
            continue
        group = "systemModules" if name in ("edgeAgent", "edgeHub") else "modules"
        where = f"/modulesContent/$edgeAgent/properties.desired/{group}/{name}/settings"
        keys = sorted(key for key in settings if _CREATE_OPTIONS_KEY.match(key))
        expected = ["createOptions"] + [f"createOptions{i:02d}" for i in range(1, len(keys))]
        if keys != expected:
            messages.append(
                f"{where}: createOptions parts must be numbered 01, 02, ... without gaps"
            )
            continue
        parts = [settings[key] for key in keys]
        if not all(isinstance(part, str) for part in parts):
            continue  # the schema already reported the type
        for key, part in zip(keys, parts, strict=True):
            if len(part) > CREATE_OPTIONS_CHUNK_CHARS:
                messages.append(
                    f"{where}/{key}: {len(part)} characters, more than {CREATE_OPTIONS_CHUNK_CHARS}"
                )
        try:
            options = json.loads("".join(parts)) if "".join(parts).strip() else {}
        except json.JSONDecodeError as error:
            messages.append(f"{where}/createOptions: not valid JSON once joined: {error}")
            continue
        if not isinstance(options, dict):
            messages.append(f"{where}/createOptions: must be a JSON object")
    modules = content.get("$edgeAgent", {}).get("properties.desired", {}).get("modules") or {}
    where = f"/modulesContent/$edgeAgent/properties.desired/modules/{MODULE_NAME}/settings"
    if MODULE_NAME in modules and not any(line.startswith(where) for line in messages):
        messages += hardening_errors(manifest, MODULE_NAME)  # on createOptions that parse
    return messages


def module_create_options(manifest: Mapping[str, Any], module: str = MODULE_NAME) -> dict[str, Any]:
    """A module's createOptions in a rendered manifest, the parts joined and parsed.

    This is the Docker Engine API ``ContainerCreate`` body the IoT Edge agent starts the module
    with (it adds the image, the env and its own labels and mounts).

    Args:
        manifest: A rendered manifest (createOptions as strings).
        module: A custom module's name.

    Returns:
        The createOptions object.

    Raises:
        ManifestError: The module is missing or its createOptions are not one JSON object.
    """
    settings = _custom_module(manifest, module).get("settings") or {}
    keys = sorted(key for key in settings if _CREATE_OPTIONS_KEY.match(key))
    joined = "".join(str(settings[key]) for key in keys)
    try:
        options = json.loads(joined) if joined.strip() else {}
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"createOptions of module {module!r}: not valid JSON: {error}"
        ) from None
    if not isinstance(options, dict):
        raise ManifestError(f"createOptions of module {module!r} must be a JSON object")
    return options


def module_env(manifest: Mapping[str, Any], module: str = MODULE_NAME) -> dict[str, str]:
    """A module's environment variables in a manifest (``env: {NAME: {"value": ...}}``).

    Args:
        manifest: A rendered manifest or an expanded template.
        module: A custom module's name.

    Returns:
        Name -> value, values as strings.

    Raises:
        ManifestError: The module is missing.
    """
    env = _custom_module(manifest, module).get("env") or {}
    return {
        name: str(item.get("value", "")) for name, item in env.items() if isinstance(item, dict)
    }


def _custom_module(manifest: Mapping[str, Any], module: str) -> dict[str, Any]:
    content = manifest.get("modulesContent") or {}
    modules = content.get("$edgeAgent", {}).get("properties.desired", {}).get("modules") or {}
    found = modules.get(module)
    if not isinstance(found, dict):
        raise ManifestError(f"module {module!r} is not in the manifest's $edgeAgent modules")
    return found


def hardening_errors(manifest: Mapping[str, Any], module: str = MODULE_NAME) -> list[str]:
    """Errors in the container limits and isolation the module must run with.

    Docker Engine API ``HostConfig`` fields in the module's createOptions
    (https://learn.microsoft.com/azure/iot-edge/how-to-use-create-options,
    https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Container/operation/ContainerCreate):
    ``Memory`` (at least :data:`MIN_MODULE_MEMORY_BYTES`) with ``MemorySwap`` equal to it (no
    swap: https://docs.docker.com/engine/containers/resource_constraints/), a positive
    ``PidsLimit``, ``ReadonlyRootfs``, ``CapDrop`` ALL, ``SecurityOpt`` no-new-privileges, and
    every port binding with an explicit ``HostIp`` (none means every host interface). The env
    holds no literal secret (:data:`SECRET_ENV`), and a secret file it names lies in a read-only
    bind.

    Args:
        manifest: A rendered manifest.
        module: The custom module to check.

    Returns:
        One ``/json/path: message`` line per error; empty when the module is hardened.
    """
    where = f"/modulesContent/$edgeAgent/properties.desired/modules/{module}"
    try:
        options = module_create_options(manifest, module)
        env = module_env(manifest, module)
    except ManifestError as error:
        return [f"{where}: {error}"]
    host = options.get("HostConfig")
    if not isinstance(host, dict):
        return [
            f"{where}/settings/createOptions: needs a HostConfig object with the module's limits"
        ]
    at = f"{where}/settings/createOptions/HostConfig"
    messages: list[str] = []
    memory = host.get("Memory")
    if not _is_int(memory) or memory < MIN_MODULE_MEMORY_BYTES:
        messages.append(
            f"{at}/Memory: {memory!r}; set PPE_MEMORY_BYTES to a byte count of at least "
            f"{MIN_MODULE_MEMORY_BYTES} ({MIN_MODULE_MEMORY_BYTES >> 20} MiB)"
        )
    elif host.get("MemorySwap") != memory:
        messages.append(
            f"{at}/MemorySwap: {host.get('MemorySwap')!r}; must equal Memory ({memory}) so "
            "the module never swaps"
        )
    pids = host.get("PidsLimit")
    if not _is_int(pids) or pids < 1:
        messages.append(f"{at}/PidsLimit: {pids!r}; must be a positive number of processes")
    if host.get("ReadonlyRootfs") is not True:
        messages.append(f"{at}/ReadonlyRootfs: must be true (the queue volume is the one write)")
    cap_drop = host.get("CapDrop")
    if not isinstance(cap_drop, list) or "ALL" not in [str(cap).upper() for cap in cap_drop]:
        messages.append(f'{at}/CapDrop: {cap_drop!r}; must hold "ALL"')
    security = host.get("SecurityOpt")
    if not isinstance(security, list) or not any(
        str(opt).replace("=", ":") in ("no-new-privileges", "no-new-privileges:true")
        for opt in security
    ):
        messages.append(f'{at}/SecurityOpt: {security!r}; must hold "no-new-privileges"')
    messages += _port_binding_errors(host.get("PortBindings"), at)
    messages += _secret_env_errors(env, host.get("Binds"), where)
    return messages


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _port_binding_errors(bindings: Any, at: str) -> list[str]:
    messages = []
    for port, entries in (bindings or {}).items():
        for index, entry in enumerate(entries or []):
            host_ip = entry.get("HostIp") if isinstance(entry, dict) else None
            try:
                ipaddress.ip_address(host_ip or "")
            except ValueError:
                messages.append(
                    f"{at}/PortBindings/{port}/{index}/HostIp: {host_ip!r}; set PPE_HTTP_HOST_IP "
                    "to the host address to publish on (127.0.0.1: the device only; none would "
                    "publish on every interface)"
                )
    return messages


def _secret_env_errors(env: Mapping[str, str], binds: Any, where: str) -> list[str]:
    messages = []
    read_only = [
        parts[1]
        for parts in (str(bind).split(":") for bind in binds or [])
        if len(parts) >= 3 and "ro" in parts[2].split(",")
    ]
    for literal, file_variable in SECRET_ENV.items():
        if literal in env:
            messages.append(
                f"{where}/env/{literal}: a literal secret in the manifest; remove it and name a "
                f"file in a read-only host secret bind with {file_variable} instead"
            )
        path = env.get(file_variable)
        if path is not None and not any(
            path.startswith(target.rstrip("/") + "/") for target in read_only
        ):
            messages.append(
                f"{where}/env/{file_variable}: {path!r} is not inside a read-only bind; bind the "
                "host secret folder (PPE_HOST_SECRETS_DIR) there with ':ro'"
            )
    return messages


def _raise_if(messages: list[str], label: str) -> None:
    if messages:
        raise ManifestError(f"{label} is not valid:\n  " + "\n  ".join(messages))


def validate_template(template: Mapping[str, Any], schemas_dir: Path) -> None:
    """Raise :class:`ManifestError` listing every template 4.0 schema error.

    See :func:`template_errors`.

    Args:
        template: An expanded template.
        schemas_dir: Folder of the vendored schemas.

    Raises:
        ManifestError: The template does not match the schema.
    """
    _raise_if(template_errors(template, schemas_dir), "deployment template (schema 4.0)")


def validate_manifest(manifest: Mapping[str, Any], schemas_dir: Path) -> None:
    """Raise :class:`ManifestError` listing every manifest error.

    See :func:`manifest_errors`.

    Args:
        manifest: A rendered manifest.
        schemas_dir: Folder of the vendored schemas.

    Raises:
        ManifestError: The manifest does not match the deployment 2.0 schema or has bad
            createOptions.
    """
    _raise_if(manifest_errors(manifest, schemas_dir), "deployment manifest (schema 2.0)")


def write_manifest(manifest: Mapping[str, Any], path: Path) -> Path:
    """Write a manifest as indented JSON, readable by the owner only (it holds a password).

    Args:
        manifest: The manifest (or layered content).
        path: Output file; parent folders are created.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    tmp.replace(path)
    return path
