"""Local stand-ins for the Azure services the gateway's credentials come from, for
tests and local development only: an HTTPS Key Vault that answers the real bearer
challenge, an App Service style managed-identity token endpoint, and an HTTPS Event Grid
custom topic. All listen on 127.0.0.1 and are driven by the real azure-identity,
azure-keyvault-secrets and azure-eventgrid code.
"""

from .certificate import LocalCertificate
from .event_grid import EventGridTopicStandIn
from .key_vault import KeyVaultStandIn
from .managed_identity import ManagedIdentityStandIn

__all__ = ["EventGridTopicStandIn", "KeyVaultStandIn", "LocalCertificate", "ManagedIdentityStandIn"]
