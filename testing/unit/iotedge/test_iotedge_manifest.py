"""Rendering and validating the ppedetector deployment manifest against the official schemas."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

import ppe
from ppe.config import EdgeConfig
from ppe.iotedge import manifest as m

REPO_ROOT = Path(__file__).resolve().parents[3]
IOTEDGE_DIR = REPO_ROOT / "environments" / "iotedge"
TEMPLATE = IOTEDGE_DIR / "deployment.template.json"
SCHEMAS = REPO_ROOT / "testing" / "fixtures" / "schemas" / "iotedge"
Manifest = dict[str, Any]


def agent(document: Manifest) -> dict[str, Any]:
    desired: dict[str, Any] = document["modulesContent"]["$edgeAgent"]["properties.desired"]
    return desired


def hub(document: Manifest) -> dict[str, Any]:
    desired: dict[str, Any] = document["modulesContent"]["$edgeHub"]["properties.desired"]
    return desired


def detector(document: Manifest) -> dict[str, Any]:
    module: dict[str, Any] = agent(document)["modules"]["ppedetector"]
    return module


def create_options(module: dict[str, Any]) -> dict[str, Any]:
    settings = module["settings"]
    keys = sorted(key for key in settings if key.startswith("createOptions"))
    options: dict[str, Any] = json.loads("".join(settings[key] for key in keys))
    return options


@pytest.mark.parametrize("platform", ["amd64", "arm64v8"])
def test_rendered_manifest_validates_against_deployment_2_0(
    edge_env: dict[str, str], platform: str
) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, platform, tag="20261123.4", model_version=7)
    assert m.manifest_errors(manifest, SCHEMAS) == []
    m.validate_manifest(manifest, SCHEMAS)
    assert "$schema-template" not in manifest
    # iotedgedev's tag scheme: <repository lower-cased>:<module.json version>-<tag>-<platform>.
    assert detector(manifest)["settings"]["image"] == (
        f"ppeacr.azurecr.io/ppedetector:{ppe.__version__}-20261123.4-{platform}"
    )
    for _, module in [
        *agent(manifest)["systemModules"].items(),
        ("ppedetector", detector(manifest)),
    ]:
        assert isinstance(module["settings"]["createOptions"], str)


def test_template_validates_against_template_4_0_after_expansion(edge_env: dict[str, str]) -> None:
    template = m.expand_template(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert template["$schema-template"] == "4.0.0"
    assert isinstance(detector(template)["settings"]["createOptions"], dict)
    assert m.template_errors(template, SCHEMAS) == []
    m.validate_template(template, SCHEMAS)


def test_template_schema_rejects_what_it_should(edge_env: dict[str, str]) -> None:
    template = m.expand_template(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    agent(template)["schemaVersion"] = "${EDGEAGENT_SCHEMA_VERSION}"
    del hub(template)["routes"]
    errors = m.template_errors(template, SCHEMAS)
    assert any("schemaVersion" in line and "does not match '1.1'" in line for line in errors)
    assert any("'routes' is a required property" in line for line in errors)
    with pytest.raises(m.ManifestError, match=r"deployment template \(schema 4.0\) is not valid"):
        m.validate_template(template, SCHEMAS)


def test_runtime_is_iot_edge_1_6_lts(edge_env: dict[str, str]) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    system = agent(manifest)["systemModules"]
    assert system["edgeAgent"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-agent:1.6"
    assert system["edgeHub"]["settings"]["image"] == "mcr.microsoft.com/azureiotedge-hub:1.6"
    assert agent(manifest)["schemaVersion"] == "1.1"
    assert hub(manifest)["schemaVersion"] == "1.2"


def test_registry_credentials_are_the_pull_token_from_the_environment(
    edge_env: dict[str, str],
) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    credentials = agent(manifest)["runtime"]["settings"]["registryCredentials"]
    assert credentials == {
        "ppeacr": {
            "username": "edge-pull-token",
            "password": "s3cr3t/With+Base64=",
            "address": "PpeAcr.azurecr.io",
        }
    }


def test_routes_send_alerts_and_telemetry_upstream_alerts_first(edge_env: dict[str, str]) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    routes = hub(manifest)["routes"]
    by_output = {
        re.search(r"/outputs/(\w+) INTO \$upstream$", route["route"])[1]: route  # type: ignore[index]
        for route in routes.values()
    }
    assert set(by_output) == {"alerts", "telemetry"}
    assert by_output["alerts"]["priority"] < by_output["telemetry"]["priority"]
    assert all("/messages/modules/ppedetector/" in route["route"] for route in routes.values())


@pytest.mark.parametrize("ttl", ["86400", "7200"])
def test_store_and_forward_ttl_comes_from_the_environment(
    edge_env: dict[str, str], ttl: str
) -> None:
    edge_env["EDGEHUB_STORE_FORWARD_TTL_SECS"] = ttl
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert hub(manifest)["storeAndForwardConfiguration"] == {"timeToLiveSecs": int(ttl)}


def test_module_env_and_create_options(edge_env: dict[str, str]) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "arm64v8", tag="1", model_version=12)
    module = detector(manifest)
    env = {name: item["value"] for name, item in module["env"].items()}
    assert env == {
        "MODEL_PATH": "/app/model/model_int8.tflite",
        "LABELS_PATH": "/app/model/labels.txt",
        "MODEL_VERSION": "12",
        "QUEUE_DIR": "/app/queue",
        "HTTP_PORT": str(EdgeConfig().http_port),
        "CAMERA_ID": "site1-cam1",
        "FRAME_SOURCE": "rtsp://10.0.0.5:554/stream1",
        "SCORE_TOKEN_FILE": "/run/secrets/ppedetector/score-token",
    }
    options = create_options(module)
    assert options == m.module_create_options(manifest)
    assert env == m.module_env(manifest)
    port = f"{EdgeConfig().http_port}/tcp"
    assert options["ExposedPorts"] == {port: {}}
    host = options["HostConfig"]
    assert host["PortBindings"] == {
        port: [{"HostIp": "127.0.0.1", "HostPort": str(EdgeConfig().http_port)}]
    }
    assert host["Binds"] == [
        "/var/lib/ppedetector:/app/queue",
        "/etc/ppedetector/secrets:/run/secrets/ppedetector:ro",
    ]
    assert host["Memory"] == host["MemorySwap"] == 512 * 1024 * 1024
    assert host["PidsLimit"] == 256
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert m.hardening_errors(manifest) == []
    assert host["LogConfig"]["Type"] == "json-file"
    assert set(host["LogConfig"]["Config"]) == {"max-size", "max-file"}
    assert module["status"] == "running"
    assert module["restartPolicy"] == "always"


def test_twin_desired_properties_mirror_edge_config(edge_env: dict[str, str]) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    twin = manifest["modulesContent"]["ppedetector"]["properties.desired"]
    assert set(twin) == {
        "score_threshold",
        "alert_min_frames",
        "alert_window_frames",
        "alert_cooldown_s",
        "telemetry_interval_s",
    }
    defaults = EdgeConfig()
    assert twin == {key: getattr(defaults, key) for key in twin}
    assert EdgeConfig.model_validate(twin) == defaults


def test_missing_variable_is_named_with_its_line_and_where_to_set_it(
    edge_env: dict[str, str],
) -> None:
    del edge_env["CAMERA_ID"]
    line = next(
        number
        for number, text in enumerate(TEMPLATE.read_text().splitlines(), start=1)
        if "${CAMERA_ID}" in text
    )
    with pytest.raises(m.ManifestError) as caught:
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    message = str(caught.value)
    assert f"CAMERA_ID (line {line})" in message
    assert ".env" in message
    assert "variable group" in message


def test_every_missing_variable_is_listed_and_empty_counts_as_missing(
    edge_env: dict[str, str],
) -> None:
    del edge_env["CONTAINER_REGISTRY_PASSWORD"]
    edge_env["CAMERA_ID"] = ""
    with pytest.raises(m.ManifestError) as caught:
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    message = str(caught.value)
    assert "CONTAINER_REGISTRY_PASSWORD (line" in message
    assert re.search(r"CAMERA_ID \(line \d+, set but empty\)", message)
    assert "FRAME_SOURCE" not in message


def test_empty_frame_source_means_http_only_scoring(edge_env: dict[str, str]) -> None:
    edge_env["FRAME_SOURCE"] = ""
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert detector(manifest)["env"]["FRAME_SOURCE"] == {"value": ""}
    assert m.manifest_errors(manifest, SCHEMAS) == []
    del edge_env["FRAME_SOURCE"]
    with pytest.raises(m.ManifestError, match=r"FRAME_SOURCE \(line \d+\)"):
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)


def test_missing_registry_server_is_reported_for_template_and_module_json(
    edge_env: dict[str, str],
) -> None:
    del edge_env["CONTAINER_REGISTRY_SERVER"]
    del edge_env["MODEL_VERSION"]
    with pytest.raises(m.ManifestError) as caught:
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1")
    first, second = str(caught.value).splitlines()
    assert re.match(r"deployment\.template\.json needs .*CONTAINER_REGISTRY_SERVER \(line", first)
    assert "MODEL_VERSION (line" in first
    assert re.search(r"module\.json needs .*CONTAINER_REGISTRY_SERVER \(line 6\)", second)


def test_iot_edge_dollar_names_are_not_variables(edge_env: dict[str, str]) -> None:
    # iotedgedev would expand $upstream if such a variable existed; we only expand UPPER_CASE.
    edge_env.update({"upstream": "oops", "edgeAgent": "oops", "edgeHub": "oops"})
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert set(manifest["modulesContent"]) == {"$edgeAgent", "$edgeHub", "ppedetector"}
    assert all(r["route"].endswith("INTO $upstream") for r in hub(manifest)["routes"].values())


def test_values_with_json_special_characters_stay_one_string(edge_env: dict[str, str]) -> None:
    edge_env["CONTAINER_REGISTRY_PASSWORD"] = 'a"b\\c'
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    credentials = agent(manifest)["runtime"]["settings"]["registryCredentials"]["ppeacr"]
    assert credentials["password"] == 'a"b\\c'


def test_non_numeric_ttl_gives_a_json_error_naming_the_variable(edge_env: dict[str, str]) -> None:
    edge_env["EDGEHUB_STORE_FORWARD_TTL_SECS"] = "1 day"
    with pytest.raises(m.ManifestError, match="check the values of EDGEHUB_STORE_FORWARD_TTL_SECS"):
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"platform": "arm32v7"}, r"platform 'arm32v7' is not supported"),
        ({"tag": "has space"}, r"--tag 'has space' is not a valid Docker tag"),
        ({"model_version": "latest"}, r"model version 'latest' must be a positive integer"),
        ({"model_version": "../1"}, r"must be a positive integer"),
    ],
)
def test_bad_arguments_are_rejected(
    edge_env: dict[str, str], kwargs: dict[str, Any], pattern: str
) -> None:
    arguments: dict[str, Any] = {"platform": "amd64", "tag": "1", "model_version": 3, **kwargs}
    platform = arguments.pop("platform")
    with pytest.raises(m.ManifestError, match=pattern):
        m.render_manifest(TEMPLATE, edge_env, platform, **arguments)


def test_tag_defaults_to_container_tag_from_the_environment(edge_env: dict[str, str]) -> None:
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", model_version=3)
    assert detector(manifest)["settings"]["image"].endswith(":0.1.0-from-env-amd64")
    edge_env["CONTAINER_TAG"] = ""
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", model_version=3)
    assert detector(manifest)["settings"]["image"] == "ppeacr.azurecr.io/ppedetector:0.1.0-amd64"


# --- createOptions chunking -------------------------------------------------------------------


@pytest.mark.parametrize(("length", "parts"), [(2, 1), (512, 1), (513, 2), (1024, 2), (4096, 8)])
def test_create_options_split_every_512_characters(length: int, parts: int) -> None:
    # {"a":"xxx..."} is 8 characters of syntax around the value.
    options = {"a": "x" * (length - 8)} if length > 8 else {}
    serialised = json.dumps(options, separators=(",", ":"))
    assert len(serialised) == length
    chunks = m.split_create_options(options, "mod")
    expected_keys = ["createOptions"] + [f"createOptions{i:02d}" for i in range(1, parts)]
    assert list(chunks) == expected_keys
    assert all(len(chunk) <= 512 for chunk in chunks.values())
    assert "".join(chunks.values()) == serialised
    assert json.loads("".join(chunks.values())) == options


def test_create_options_over_4096_characters_are_refused() -> None:
    with pytest.raises(m.ManifestError, match=r"createOptions of module 'mod' are 4097 characters"):
        m.split_create_options({"a": "x" * (4097 - 8)}, "mod")


def test_long_create_options_render_as_valid_chunks(edge_env: dict[str, str]) -> None:
    edge_env["PPE_HOST_QUEUE_DIR"] = "/mnt/" + "/".join(["site-storage"] * 60)
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    settings = detector(manifest)["settings"]
    assert "createOptions01" in settings
    assert m.manifest_errors(manifest, SCHEMAS) == []
    assert create_options(detector(manifest))["HostConfig"]["Binds"][0] == (
        edge_env["PPE_HOST_QUEUE_DIR"] + ":/app/queue"
    )


# --- a broken manifest gives precise errors ---------------------------------------------------


@pytest.fixture
def manifest(edge_env: dict[str, str]) -> Manifest:
    return m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)


def test_missing_status_is_reported_with_its_path(manifest: Manifest) -> None:
    del detector(manifest)["status"]
    assert m.manifest_errors(manifest, SCHEMAS) == [
        "/modulesContent/$edgeAgent/properties.desired/modules/ppedetector: "
        "'status' is a required property"
    ]


def test_bad_restart_policy_and_route_name_are_reported(manifest: Manifest) -> None:
    detector(manifest)["restartPolicy"] = "sometimes"
    hub(manifest)["routes"]["bad.name"] = "FROM /* INTO $upstream"
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert any(
        e.endswith(
            "/ppedetector/restartPolicy: 'sometimes' is not one of "
            "['never', 'on-failure', 'on-unhealthy', 'always']"
        )
        for e in errors
    )
    assert any("'bad.name'" in e for e in errors)
    with pytest.raises(m.ManifestError, match=r"deployment manifest \(schema 2.0\) is not valid"):
        m.validate_manifest(manifest, SCHEMAS)


def test_create_options_that_are_not_an_object_are_reported(manifest: Manifest) -> None:
    settings = detector(manifest)["settings"]
    for key in [key for key in settings if key.startswith("createOptions")]:
        del settings[key]
    settings["createOptions"] = "[1, 2]"
    assert m.manifest_errors(manifest, SCHEMAS) == [
        "/modulesContent/$edgeAgent/properties.desired/modules/ppedetector/settings/"
        "createOptions: must be a JSON object"
    ]


def test_create_options_parts_with_a_gap_are_reported(manifest: Manifest) -> None:
    detector(manifest)["settings"]["createOptions03"] = "{}"
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert errors == [
        "/modulesContent/$edgeAgent/properties.desired/modules/ppedetector/settings: "
        "createOptions parts must be numbered 01, 02, ... without gaps"
    ]


# --- the module's container limits and isolation (hardening_errors) ------------------------------
# Docker Engine API HostConfig, as createOptions carry it:
# https://learn.microsoft.com/azure/iot-edge/how-to-use-create-options
# https://docs.docker.com/reference/api/engine/version/v1.41/#tag/Container/operation/ContainerCreate


def _host_config(manifest: Manifest) -> dict[str, Any]:
    host: dict[str, Any] = create_options(detector(manifest))["HostConfig"]
    return host


def _set_create_options(manifest: Manifest, options: dict[str, Any]) -> None:
    settings = detector(manifest)["settings"]
    for key in [key for key in settings if key.startswith("createOptions")]:
        del settings[key]
    settings.update(m.split_create_options(options, "ppedetector"))


HOST_CONFIG = (
    "/modulesContent/$edgeAgent/properties.desired/modules/ppedetector/settings/createOptions/"
    "HostConfig"
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # Without Memory the container may take all of the device's memory.
        ("Memory", None, "Memory: None; set PPE_MEMORY_BYTES"),
        ("Memory", 200 * 2**20, f"at least {m.MIN_MODULE_MEMORY_BYTES}"),
        ("Memory", True, "Memory: True"),
        # MemorySwap is memory plus swap; unset (or -1) lets the module swap on top of Memory:
        # https://docs.docker.com/engine/containers/resource_constraints/
        ("MemorySwap", None, "MemorySwap: None; must equal Memory"),
        ("MemorySwap", -1, "MemorySwap: -1; must equal Memory"),
        ("PidsLimit", 0, "PidsLimit: 0; must be a positive number"),
        ("PidsLimit", None, "PidsLimit: None"),
        ("ReadonlyRootfs", False, "ReadonlyRootfs: must be true"),
        ("CapDrop", ["NET_RAW"], "CapDrop: ['NET_RAW']; must hold \"ALL\""),
        ("SecurityOpt", [], 'SecurityOpt: []; must hold "no-new-privileges"'),
        # A binding without HostIp publishes the port on every host interface.
        ("PortBindings", {"8080/tcp": [{"HostPort": "8080"}]}, "8080/tcp/0/HostIp: None"),
    ],
)
def test_a_weakened_module_container_is_refused(
    manifest: Manifest, field: str, value: Any, message: str
) -> None:
    options = create_options(detector(manifest))
    if value is None:
        del options["HostConfig"][field]
    else:
        options["HostConfig"][field] = value
    _set_create_options(manifest, options)
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert len(errors) == 1 and errors[0].startswith(f"{HOST_CONFIG}/{field}"), errors
    assert message in errors[0]
    with pytest.raises(m.ManifestError, match=re.escape(message)):
        m.validate_manifest(manifest, SCHEMAS)


@pytest.mark.parametrize("spelling", [["all"], ["ALL", "NET_RAW"]])
def test_cap_drop_all_in_any_case_and_no_new_privileges_forms_are_accepted(
    manifest: Manifest, spelling: list[str]
) -> None:
    options = create_options(detector(manifest))
    options["HostConfig"]["CapDrop"] = spelling
    options["HostConfig"]["SecurityOpt"] = ["no-new-privileges:true"]
    _set_create_options(manifest, options)
    assert m.hardening_errors(manifest) == []


def test_the_memory_limit_is_configurable_and_swap_follows_it(edge_env: dict[str, str]) -> None:
    edge_env["PPE_MEMORY_BYTES"] = str(1024 * 2**20)
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert _host_config(manifest)["Memory"] == _host_config(manifest)["MemorySwap"] == 2**30
    assert m.manifest_errors(manifest, SCHEMAS) == []
    edge_env["PPE_MEMORY_BYTES"] = str(m.MIN_MODULE_MEMORY_BYTES - 1)
    low = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    assert m.manifest_errors(low, SCHEMAS) == [
        f"{HOST_CONFIG}/Memory: {m.MIN_MODULE_MEMORY_BYTES - 1}; set PPE_MEMORY_BYTES to a byte "
        f"count of at least {m.MIN_MODULE_MEMORY_BYTES} (384 MiB)"
    ]


def test_a_memory_limit_with_a_unit_is_a_json_error_naming_the_variable(
    edge_env: dict[str, str],
) -> None:
    edge_env["PPE_MEMORY_BYTES"] = "512m"  # docker run's syntax; the Engine API takes bytes
    with pytest.raises(m.ManifestError, match=r"check the values of PPE_MEMORY_BYTES"):
        m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)


@pytest.mark.parametrize(
    ("host_ip", "ok"),
    [("0.0.0.0", True), ("192.168.1.20", True), ("::1", True), ("localhost", False)],
)
def test_the_published_address_is_configurable_and_must_be_an_ip(
    edge_env: dict[str, str], host_ip: str, ok: bool
) -> None:
    edge_env["PPE_HTTP_HOST_IP"] = host_ip
    manifest = m.render_manifest(TEMPLATE, edge_env, "amd64", tag="1", model_version=3)
    binding = _host_config(manifest)["PortBindings"]["8080/tcp"]
    assert binding == [{"HostIp": host_ip, "HostPort": "8080"}]
    errors = m.hardening_errors(manifest)
    assert errors == [] if ok else "set PPE_HTTP_HOST_IP" in errors[0]


def test_a_literal_score_token_in_the_manifest_is_refused(manifest: Manifest) -> None:
    # The manifest lives in the IoT Hub (deployments, module twins): a token there is readable by
    # anyone with read access to the hub's configurations.
    detector(manifest)["env"]["SCORE_TOKEN"] = {"value": "0123456789abcdef0123"}
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert len(errors) == 1 and "/env/SCORE_TOKEN: a literal secret" in errors[0]
    assert "SCORE_TOKEN_FILE" in errors[0]


def test_the_token_file_must_lie_in_a_read_only_bind(manifest: Manifest) -> None:
    options = create_options(detector(manifest))
    options["HostConfig"]["Binds"][1] = options["HostConfig"]["Binds"][1].removesuffix(":ro")
    _set_create_options(manifest, options)
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert len(errors) == 1 and "/env/SCORE_TOKEN_FILE: " in errors[0], errors
    assert "PPE_HOST_SECRETS_DIR" in errors[0]
    detector(manifest)["env"]["SCORE_TOKEN_FILE"] = {"value": "/app/queue/score-token"}
    assert "not inside a read-only bind" in m.hardening_errors(manifest)[0]


def test_unstringified_create_options_fail_the_manifest_schema(manifest: Manifest) -> None:
    detector(manifest)["settings"]["createOptions"] = {"HostConfig": {}}
    errors = m.manifest_errors(manifest, SCHEMAS)
    assert any(
        e.endswith("/settings/createOptions: {'HostConfig': {}} is not of type 'string'")
        for e in errors
    )


# --- layered deployment -----------------------------------------------------------------------


def _merge_dotted(base: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if key.startswith("properties.desired."):
            node = base.setdefault("properties.desired", {})
            *parents, last = key.removeprefix("properties.desired.").split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        else:
            base[key] = value


def test_layered_variant_merges_back_into_the_full_manifest(manifest: Manifest) -> None:
    layered = m.layered_manifest(manifest)
    layer = layered["content"]["modulesContent"]
    assert set(layer) == {"$edgeAgent", "$edgeHub", "ppedetector"}
    assert "properties.desired.modules.ppedetector" in layer["$edgeAgent"]
    assert all(key.startswith("properties.desired.routes.") for key in layer["$edgeHub"])

    base = copy.deepcopy(manifest)
    content = base["modulesContent"]
    del agent(base)["modules"]["ppedetector"]
    agent(base)["runtime"]["settings"]["registryCredentials"].clear()
    hub(base)["routes"].clear()
    del content["ppedetector"]
    _merge_dotted(content["$edgeAgent"], layer["$edgeAgent"])
    _merge_dotted(content["$edgeHub"], layer["$edgeHub"])
    content["ppedetector"] = layer["ppedetector"]
    assert base == manifest


def test_layered_variant_of_an_unknown_module_is_refused(manifest: Manifest) -> None:
    with pytest.raises(m.ManifestError, match="module 'other' is not in the manifest"):
        m.layered_manifest(manifest, "other")


# --- the solution folder's own files ----------------------------------------------------------


def test_module_json_follows_iotedgedev_and_points_at_the_dockerfiles(
    edge_env: dict[str, str],
) -> None:
    module_dir = IOTEDGE_DIR / "modules" / "ppedetector"
    image = m.load_module_image(module_dir, edge_env)
    assert image.repository == "PpeAcr.azurecr.io/ppedetector"
    assert image.version == ppe.__version__
    assert set(image.dockerfiles) == set(m.PLATFORMS)
    for platform, dockerfile in image.dockerfiles.items():
        path = (module_dir / dockerfile).resolve()
        assert path == REPO_ROOT / "environments" / "docker" / f"Dockerfile.{platform}"
        assert path.is_file()
    assert (module_dir / image.context_path).resolve() == REPO_ROOT


def test_env_template_lists_every_variable_and_holds_no_secret() -> None:
    used = set()
    for path in (TEMPLATE, IOTEDGE_DIR / "modules" / "ppedetector" / "module.json"):
        text = path.read_text()
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))
        used |= set(re.findall(r"\$([A-Z_][A-Z0-9_]*)\b", text))
    defined = m.parse_dotenv((IOTEDGE_DIR / ".env.template").read_text())
    assert used <= set(defined), f"add to .env.template: {sorted(used - set(defined))}"
    assert "CONTAINER_TAG" in defined
    assert defined["CONTAINER_REGISTRY_PASSWORD"] == ""
    assert int(defined["EDGEHUB_STORE_FORWARD_TTL_SECS"]) >= 3600


def test_env_template_maps_the_registry_onto_terraform_outputs() -> None:
    environ = {"ACR_LOGIN_SERVER": "ppeacr.azurecr.io", "EDGE_REGISTRY_TOKEN_NAME": "edge-pull"}
    defined = m.parse_dotenv((IOTEDGE_DIR / ".env.template").read_text(), environ)
    assert defined["CONTAINER_REGISTRY_SERVER"] == "ppeacr.azurecr.io"
    assert defined["CONTAINER_REGISTRY_USERNAME"] == "edge-pull"


# --- dotenv parsing (python-dotenv's rules, which iotedgedev uses) ----------------------------


def test_parse_dotenv_quotes_comments_export_and_interpolation() -> None:
    text = "\n".join(
        [
            "# a comment",
            "export PLAIN=value   # trailing comment",
            "HASH_IN_VALUE=a#b",
            "EMPTY=",
            "EMPTY_WITH_COMMENT= # nothing",
            "SINGLE='literal ${PLAIN} # kept'",
            'DOUBLE="line\\nbreak \\"quoted\\""',
            "REF=${PLAIN}-${FROM_ENV}-${UNSET:-fallback}-${UNSET}",
            "OVERRIDDEN=${FROM_FILE_AND_ENV}",
            "FROM_FILE_AND_ENV=file",
            "not a binding",
        ]
    )
    values = m.parse_dotenv(text, {"FROM_ENV": "env", "FROM_FILE_AND_ENV": "env wins"})
    assert values == {
        "PLAIN": "value",
        "HASH_IN_VALUE": "a#b",
        "EMPTY": "",
        "EMPTY_WITH_COMMENT": "",
        "SINGLE": "literal value # kept",
        "DOUBLE": 'line\nbreak "quoted"',
        "REF": "value-env-fallback-",
        "OVERRIDDEN": "env wins",
        "FROM_FILE_AND_ENV": "file",
    }


def test_write_manifest_is_private_and_round_trips(manifest: Manifest, tmp_path: Path) -> None:
    path = m.write_manifest(manifest, tmp_path / "out" / "deployment.amd64.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == manifest
