"""The workspace client: names from the settings, and a one-line message without a login.

No Azure login exists offline, and DefaultAzureCredential would probe the network, so the
credentials here are small fakes: one that fails like every credential in the chain failing
(azure-core's ``ClientAuthenticationError``), one that hands out a token.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

from ppe.aml.client import ARM_SCOPE, check_login, ml_client
from ppe.aml.settings import AmlSettings
from ppe.cli import main
from ppe.errors import AzureLoginError

SETTINGS = AmlSettings(
    subscription_id="00000000-0000-0000-0000-000000000001",
    resource_group="rg-ppe-dev-westeurope",
    workspace="mlw-ppe-dev-ab12",
    gpu_cluster="gpu-cluster",
    cpu_cluster="cpu-cluster",
    model_name="ppe-hardhat-yolov3",
)


class NoLogin:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n\tEnvironmentCredential: ...\n\tAzureCliCredential: ..."
        )


class LoggedIn:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("token", 4_102_444_800)


def test_no_login_is_one_line_saying_what_to_run() -> None:
    with pytest.raises(AzureLoginError) as caught:
        check_login(NoLogin())
    message = str(caught.value)
    assert "\n" not in message
    assert "run `az login`" in message
    assert "AZURE_CLIENT_ID" in message


def test_ml_client_fails_before_building_without_login() -> None:
    with pytest.raises(AzureLoginError, match="az login"):
        ml_client(SETTINGS, credential=NoLogin())


def test_ml_client_targets_the_settings_workspace() -> None:
    credential = LoggedIn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = ml_client(SETTINGS, credential=credential)
    assert credential.scopes == [(ARM_SCOPE,)]
    assert client.workspace_name == SETTINGS.workspace
    assert client.subscription_id == SETTINGS.subscription_id
    assert client.resource_group_name == SETTINGS.resource_group


def test_cli_without_login_exits_with_the_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import ppe.aml.client

    monkeypatch.setattr(ppe.aml.client, "default_credential", NoLogin)
    env = tmp_path / ".env"
    env.write_text(
        "".join(
            f"{key}=value-{index}\n"
            for index, key in enumerate(
                [
                    "AZURE_SUBSCRIPTION_ID",
                    "AZURE_RESOURCE_GROUP",
                    "AML_WORKSPACE",
                    "AML_GPU_CLUSTER",
                    "AML_CPU_CLUSTER",
                    "MODEL_NAME",
                ]
            )
        )
    )
    for key in ("AZURE_SUBSCRIPTION_ID", "AML_WORKSPACE"):
        monkeypatch.delenv(key, raising=False)
    status = main(
        [
            "aml",
            "models",
            "download",
            "--champion",
            "--dest",
            str(tmp_path / "champion"),
            "--env-file",
            str(env),
        ]
    )
    assert status == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith("not logged in to Azure: run `az login`")
    assert not (tmp_path / "champion").exists()


def test_cli_without_env_names_the_missing_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for key in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AML_WORKSPACE", "MODEL_NAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AML_GPU_CLUSTER", raising=False)
    monkeypatch.delenv("AML_CPU_CLUSTER", raising=False)
    status = main(["aml", "build", "--env-file", str(tmp_path / "absent.env")])
    assert status == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert "AZURE_SUBSCRIPTION_ID" in errors[0]
    assert "write_env.py` after terraform apply" in errors[0]
