"""AWS End User Messaging SMS as an opt-out provider.

Light on purpose: only the settings (stdlib) load with the package, since startup validates
every provider's settings; the provider itself (boto3) is in `optouts.providers.aws.provider`,
reached through `optouts.runtime`.
"""

from optouts.providers.aws.settings import AwsCredentialMode, AwsSettings

__all__ = ["AwsCredentialMode", "AwsSettings"]
