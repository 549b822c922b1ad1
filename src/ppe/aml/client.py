"""The workspace client: ``MLClient`` with ``DefaultAzureCredential``, and a clear login error.

``DefaultAzureCredential`` tries, in order, environment variables (a service principal), workload
identity (Azure DevOps federated service connections), a managed identity (inside Azure ML jobs),
the Azure CLI login and others. Without any of them the SDK raises a long multi-line chain; here
it becomes one line that says what to run.
"""

from __future__ import annotations

import logging
from typing import Any

from ppe.aml.settings import AmlSettings
from ppe.errors import AzureLoginError

logger = logging.getLogger(__name__)

ARM_SCOPE = "https://management.azure.com/.default"
LOGIN_HELP = (
    "run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a "
    "service principal, or run where a managed identity is available)"
)


def default_credential() -> Any:
    """``DefaultAzureCredential`` without the interactive browser fallback (CI never has one)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def check_login(credential: Any) -> None:
    """Fail early, on one line, when the credential cannot get an Azure Resource Manager token.

    Args:
        credential: An azure-identity token credential.

    Raises:
        AzureLoginError: No credential in the chain works; the message says what to run.
    """
    from azure.core.exceptions import ClientAuthenticationError

    try:
        credential.get_token(ARM_SCOPE)
    except ClientAuthenticationError as error:
        logger.debug("credential chain failed: %s", error)
        raise AzureLoginError(f"not logged in to Azure: {LOGIN_HELP}") from None


def ml_client(settings: AmlSettings, credential: Any | None = None, check: bool = True) -> Any:
    """An ``MLClient`` for the workspace the settings name.

    Args:
        settings: Subscription, resource group and workspace (from Terraform's outputs).
        credential: A token credential; ``DefaultAzureCredential`` when None.
        check: Get a token first so a missing login fails here, with :data:`LOGIN_HELP`.

    Returns:
        An ``azure.ai.ml.MLClient`` (no request is sent by building it).

    Raises:
        AzureLoginError: ``check`` is set and no credential works.
    """
    from azure.ai.ml import MLClient

    credential = credential if credential is not None else default_credential()
    if check:
        check_login(credential)
    return MLClient(
        credential,
        subscription_id=settings.subscription_id,
        resource_group_name=settings.resource_group,
        workspace_name=settings.workspace,
    )
