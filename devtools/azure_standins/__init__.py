"""Local stand-ins for the Azure services the gateway's credentials come from, for
tests and local development only: an HTTPS Key Vault that answers the real bearer
challenge, and an App Service style managed-identity token endpoint. Both listen on
127.0.0.1 and are driven by the real azure-identity and azure-keyvault-secrets code.
"""

from .certificate import LocalCertificate
from .key_vault import KeyVaultStandIn
from .managed_identity import ManagedIdentityStandIn

__all__ = ["KeyVaultStandIn", "LocalCertificate", "ManagedIdentityStandIn"]
