"""AWS End User Messaging SMS as an opt-out provider.

Light on purpose: the settings and errors are stdlib-only; the provider itself (boto3)
is in `optouts.providers.aws.provider`, reached through `optouts.runtime`.
"""

from optouts.providers.aws.errors import RateBudgetExceededError
from optouts.providers.aws.settings import AwsCredentialMode, AwsSettings

__all__ = ["AwsCredentialMode", "AwsSettings", "RateBudgetExceededError"]
