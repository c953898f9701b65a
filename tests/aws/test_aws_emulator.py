"""The AWS emulator as boto3 and raw HTTP see it: SigV4 checks with AWS's error shapes, the
service model's error members, quotas, paging, the STS stand-in and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import boto3
import botocore
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from devtools.aws_emulator import AwsEmulator
from devtools.aws_emulator.embedded import embed_if_needed

from .conftest import AUDIENCE, LIST, ROLE_ARN

NUMBER = "+14255550150"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def sms(aws: AwsEmulator, *, key: str | None = None, secret: str | None = None, token: str | None = None,
        region: str | None = None) -> Any:
    return boto3.client("pinpoint-sms-voice-v2", region_name=region or aws.region, endpoint_url=aws.endpoint,
                        aws_access_key_id=key or aws.access_key_id,
                        aws_secret_access_key=secret or aws.secret_access_key, aws_session_token=token,
                        config=NO_RETRIES)


def sts(aws: AwsEmulator) -> Any:
    return boto3.client("sts", region_name=aws.region, endpoint_url=aws.endpoint,
                        config=Config(signature_version=botocore.UNSIGNED, retries={"total_max_attempts": 1}))


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return raised.value.response


def signed(aws: AwsEmulator, body: bytes, *, target: str = "PinpointSMSVoiceV2.DescribeOptedOutNumbers") -> AWSRequest:
    request = AWSRequest(method="POST", url=aws.endpoint + "/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target})
    SigV4Auth(Credentials(aws.access_key_id, aws.secret_access_key), "sms-voice", aws.region).add_auth(request)
    return request


def send(aws: AwsEmulator, request: AWSRequest, body: bytes) -> requests.Response:
    headers = {name: value for name, value in request.headers.items()}
    return requests.post(aws.endpoint + "/", data=body, headers=headers, timeout=10)


@pytest.fixture
def client(aws: AwsEmulator) -> Iterator[Any]:
    opened = sms(aws)
    yield opened
    opened.close()


# -- SigV4 ------------------------------------------------------------------------------------------


def test_a_wrong_secret_gets_invalid_signature(aws: AwsEmulator) -> None:
    answer = error_of(sms(aws, secret="x" * 40).describe_phone_numbers)
    assert answer["Error"]["Code"] == "InvalidSignatureException"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "does not match the signature you provided" in answer["Error"]["Message"]


def test_an_unknown_key_gets_unrecognized_client(aws: AwsEmulator) -> None:
    answer = error_of(sms(aws, key="AKIAUNKNOWNUNKNOWN00").describe_phone_numbers)
    assert answer["Error"] == {"Code": "UnrecognizedClientException",
                               "Message": "The security token included in the request is invalid."}


def test_a_stale_date_gets_signature_expired(aws: AwsEmulator, client: Any) -> None:
    aws.clock_offset = timedelta(minutes=6)
    answer = error_of(client.describe_phone_numbers)
    assert answer["Error"]["Code"] == "InvalidSignatureException"
    assert answer["Error"]["Message"].startswith("Signature expired: ")
    assert "- 5 min.)" in answer["Error"]["Message"]


def test_a_date_from_the_future_is_not_yet_current(aws: AwsEmulator, client: Any) -> None:
    aws.clock_offset = timedelta(minutes=-6)
    answer = error_of(client.describe_phone_numbers)
    assert answer["Error"]["Message"].startswith("Signature not yet current: ")


def test_a_signature_for_another_region_is_refused(aws: AwsEmulator) -> None:
    other = boto3.client("pinpoint-sms-voice-v2", region_name="eu-west-1", endpoint_url=aws.endpoint,
                         aws_access_key_id=aws.access_key_id, aws_secret_access_key=aws.secret_access_key,
                         config=NO_RETRIES)
    answer = error_of(other.describe_phone_numbers)
    assert answer["Error"]["Message"] == "Credential should be scoped to a valid region."


def test_a_body_changed_after_signing_is_refused(aws: AwsEmulator) -> None:
    body = json.dumps({"OptOutListName": LIST}).encode()
    request = signed(aws, body)

    assert send(aws, request, body).status_code == 200
    tampered = send(aws, request, json.dumps({"OptOutListName": "Default"}).encode())
    assert tampered.status_code == 400
    assert tampered.json()["__type"] == "InvalidSignatureException"
    assert tampered.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_a_changed_target_header_is_refused(aws: AwsEmulator) -> None:
    body = json.dumps({"OptOutListName": LIST}).encode()
    request = signed(aws, body)
    request.headers.replace_header("X-Amz-Target", "PinpointSMSVoiceV2.DescribePhoneNumbers")
    assert send(aws, request, body).json()["__type"] == "InvalidSignatureException"


def test_an_unsigned_request_is_refused(aws: AwsEmulator) -> None:
    answer = requests.post(aws.endpoint + "/", data=b"{}", timeout=10, headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "PinpointSMSVoiceV2.DescribePhoneNumbers"})
    assert answer.status_code == 400
    assert answer.json() == {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}


# -- the service model's errors --------------------------------------------------------------------------


def test_an_unknown_list_is_resource_not_found_with_its_type(client: Any) -> None:
    answer = error_of(client.put_opted_out_number, OptOutListName="Nope", OptedOutNumber=NUMBER)
    assert answer["Error"]["Code"] == "ResourceNotFoundException"
    assert (answer["ResourceType"], answer["ResourceId"]) == ("opt-out-list", "Nope")


def test_a_list_can_be_named_by_its_arn(aws: AwsEmulator, client: Any) -> None:
    client.put_opted_out_number(OptOutListName=aws.list_arn(LIST), OptedOutNumber=NUMBER)
    assert NUMBER in aws.store.numbers(LIST)


def test_a_malformed_number_is_a_validation_exception_naming_the_field(client: Any) -> None:
    answer = error_of(client.put_opted_out_number, OptOutListName=LIST, OptedOutNumber="12-34")
    assert answer["Error"]["Code"] == "ValidationException"
    assert answer["Reason"] == "FIELD_VALIDATION_FAILED"
    assert answer["Fields"][0]["Name"] == "OptedOutNumber"


def test_removal_follows_the_30_day_rule(aws: AwsEmulator, client: Any) -> None:
    client.put_opted_out_number(OptOutListName=LIST, OptedOutNumber=NUMBER)
    removed = client.delete_opted_out_number(OptOutListName=LIST, OptedOutNumber=NUMBER)
    assert removed["OptedOutNumber"] == NUMBER and removed["EndUserOptedOut"] is False
    client.put_opted_out_number(OptOutListName=LIST, OptedOutNumber=NUMBER)

    answer = error_of(client.delete_opted_out_number, OptOutListName=LIST, OptedOutNumber=NUMBER)
    assert answer["Error"]["Code"] == "ValidationException"
    assert answer["Reason"] == "PHONE_NUMBER_CANNOT_BE_OPTED_IN"
    assert NUMBER in aws.store.numbers(LIST)


def test_removing_an_absent_number_is_resource_not_found(client: Any) -> None:
    answer = error_of(client.delete_opted_out_number, OptOutListName=LIST, OptedOutNumber=NUMBER)
    assert (answer["ResourceType"], answer["ResourceId"]) == ("opted-out-number", NUMBER)


def test_describing_pages_and_filters(aws: AwsEmulator, client: Any) -> None:
    aws.store.seed(LIST, [f"+1425555{n:04d}" for n in range(7)], end_user=True)
    client.put_opted_out_number(OptOutListName=LIST, OptedOutNumber="+14255559999")

    pages = list(client.get_paginator("describe_opted_out_numbers").paginate(
        OptOutListName=LIST, PaginationConfig={"PageSize": 3}))
    assert [len(page["OptedOutNumbers"]) for page in pages] == [3, 3, 2]
    assert pages[0]["OptOutListArn"] == aws.list_arn(LIST)

    api_added = client.describe_opted_out_numbers(
        OptOutListName=LIST, Filters=[{"Name": "end-user-opted-out", "Values": ["false"]}])
    assert [n["OptedOutNumber"] for n in api_added["OptedOutNumbers"]] == ["+14255559999"]

    too_many = error_of(client.describe_opted_out_numbers, OptOutListName=LIST,
                        OptedOutNumbers=[f"+1425555{n:04d}" for n in range(6)])
    assert too_many["Error"]["Code"] == "ValidationException"


def test_describe_phone_numbers_names_each_numbers_list(aws: AwsEmulator, client: Any) -> None:
    phone = aws.store.add_phone_number("+18005550142", LIST)
    by_id = client.describe_phone_numbers(PhoneNumberIds=[phone.phone_number_id])["PhoneNumbers"]
    assert [(p["PhoneNumber"], p["OptOutListName"]) for p in by_id] == [("+18005550142", LIST)]
    answer = error_of(client.describe_phone_numbers, PhoneNumberIds=["phone-0000"])
    assert answer["ResourceType"] == "phone-number"


def test_quotas_are_enforced_per_action(aws: AwsEmulator, client: Any) -> None:
    aws.configure_rates({"PutOptedOutNumber": 1})
    outcomes = []
    for _ in range(4):
        try:
            client.put_opted_out_number(OptOutListName=LIST, OptedOutNumber=NUMBER)
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes[:2] == ["ok", "ok"]  # the burst
    assert "ThrottlingException" in outcomes[2:]
    assert aws.throttled("PutOptedOutNumber") >= 1
    # Another action has its own bucket.
    client.describe_opted_out_numbers(OptOutListName=LIST)


# -- STS --------------------------------------------------------------------------------------------------


def test_sts_issues_session_credentials_the_sms_api_accepts(aws: AwsEmulator) -> None:
    token = aws.sts.mint_token(subject="identity-1", audience=AUDIENCE)
    answer = sts(aws).assume_role_with_web_identity(RoleArn=ROLE_ARN, RoleSessionName="gateway",
                                                     WebIdentityToken=token, DurationSeconds=900)
    credentials = answer["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert answer["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/sms-optout-gateway/gateway"
    assert answer["SubjectFromWebIdentityToken"] == "identity-1" and answer["Audience"] == AUDIENCE

    session = sms(aws, key=credentials["AccessKeyId"], secret=credentials["SecretAccessKey"],
                  token=credentials["SessionToken"])
    assert session.describe_opted_out_numbers(OptOutListName=LIST)["OptOutListName"] == LIST
    without_token = sms(aws, key=credentials["AccessKeyId"], secret=credentials["SecretAccessKey"])
    assert error_of(without_token.describe_phone_numbers)["Error"]["Code"] == "UnrecognizedClientException"


@pytest.mark.parametrize(("token_options", "code", "status"), [
    ({"audience": "api://other"}, "InvalidIdentityToken", 400),
    ({"audience": AUDIENCE, "issuer": "https://login.example/other/"}, "InvalidIdentityToken", 400),
    ({"audience": AUDIENCE, "sign": False}, "InvalidIdentityToken", 400),
    ({"audience": AUDIENCE, "lifetime_seconds": -10}, "ExpiredTokenException", 400),
])
def test_sts_checks_the_web_identity_token(aws: AwsEmulator, token_options: dict[str, Any], code: str,
                                           status: int) -> None:
    token = aws.sts.mint_token(subject="identity-1", **token_options)
    answer = error_of(sts(aws).assume_role_with_web_identity, RoleArn=ROLE_ARN, RoleSessionName="gateway",
                      WebIdentityToken=token)
    assert (answer["Error"]["Code"], answer["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert answer["Error"]["Type"] == "Sender"


def test_sts_refuses_what_is_not_a_jwt_and_unknown_roles(aws: AwsEmulator) -> None:
    not_jwt = error_of(sts(aws).assume_role_with_web_identity, RoleArn=ROLE_ARN, RoleSessionName="gateway",
                       WebIdentityToken="an-opaque-access-token-not-a-jwt")
    assert not_jwt["Error"]["Code"] == "InvalidIdentityToken"
    token = aws.sts.mint_token(subject="identity-1", audience=AUDIENCE)
    unknown = error_of(sts(aws).assume_role_with_web_identity, RoleArn="arn:aws:iam::123456789012:role/other",
                       RoleSessionName="gateway", WebIdentityToken=token)
    assert (unknown["Error"]["Code"], unknown["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)


# -- command line ----------------------------------------------------------------------------------------


def test_the_command_line_prints_its_help() -> None:
    done = subprocess.run([sys.executable, "-m", "devtools.aws_emulator", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--rate ACTION=RPS" in done.stdout and "--phone-number" in done.stdout


def test_the_command_line_refuses_a_remote_address() -> None:
    done = subprocess.run([sys.executable, "-m", "devtools.aws_emulator", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "loopback" in done.stderr


def test_make_run_embeds_the_emulator_for_aws_senders_without_an_endpoint() -> None:
    with ExitStack() as stack:
        assert embed_if_needed(stack, {"OPTOUT_AWS_SENDERS": ""}) is None
        assert embed_if_needed(stack, {"OPTOUT_AWS_SENDERS": "+18005550100=L",
                                       "AWS_ENDPOINT_URL": "https://sms.example"}) is None
        embedded = embed_if_needed(stack, {"OPTOUT_AWS_SENDERS": "+18005550100=Marketing,+18005550101",
                                           "AWS_REGION": "eu-west-1", "OPTOUT_AWS_ROLE_ARN": ROLE_ARN})
        assert embedded is not None
        settings, note = embedded
        assert settings["AWS_REGION"] == "eu-west-1" and settings["OPTOUT_AWS_ROLE_ARN"] == ""
        assert "AWS emulator embedded at http://127.0.0.1:" in note
        client = boto3.client("pinpoint-sms-voice-v2", region_name="eu-west-1",
                              endpoint_url=settings["AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2"],
                              aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"], config=NO_RETRIES)
        client.put_opted_out_number(OptOutListName="Marketing", OptedOutNumber=NUMBER)
        phones = client.describe_phone_numbers()["PhoneNumbers"]
        assert [(p["PhoneNumber"], p["OptOutListName"]) for p in phones] == [("+18005550101", "Default")]
        client.close()
