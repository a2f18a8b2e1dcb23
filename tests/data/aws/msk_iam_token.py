#!/usr/bin/env python3
"""Writes msk-iam-tokens.json: MSK IAM tokens made by AWS's own signer at a fixed clock, the expected values of
src/auth/aws's fixed-clock tests.

It runs aws-msk-iam-sasl-signer-python 1.0.2 (its private __construct_auth_token, which every public
generate_auth_token* calls) on botocore, with botocore's clock held at 2023-11-09T12:00:00Z. Reproduce with:

    pip install --target /tmp/msksigner aws-msk-iam-sasl-signer-python==1.0.2   # plus boto3/botocore
    PYTHONPATH=/tmp/msksigner python3 tests/data/aws/msk_iam_token.py > tests/data/aws/msk-iam-tokens.json

Measured with botocore 1.43.11. The credentials are the signer's own test values (tests/test_auth_token_provider.py).
"""
import datetime
import json
from importlib.metadata import version
from unittest import mock

import botocore
import botocore.auth
from botocore.credentials import Credentials

import aws_msk_iam_sasl_signer.MSKAuthTokenProvider as provider

AT = datetime.datetime(2023, 11, 9, 12, 0, 0)  # naive UTC, as botocore's get_current_datetime returns it
REGION = "us-west-2"
construct = getattr(provider, "__construct_auth_token")
cases = []
for token in ("MOCK_AWS_TOKEN", None, "FwoGZXIvYXdzEJr//////////wEaDM+/token=="):
    credentials = Credentials("MOCK_AWS_ACCESS_KEY", "MOCK_AWS_SECRET_KEY", token)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=AT):
        value, expiry_ms = construct(REGION, credentials)
    cases.append({"session_token": token, "token": value, "expiry_ms": expiry_ms})
print(json.dumps({
    "source": "aws-msk-iam-sasl-signer-python " + version("aws-msk-iam-sasl-signer-python")
    + " on botocore " + botocore.__version__ + ", clock held at 2023-11-09T12:00:00Z (tests/data/aws/msk_iam_token.py)",
    "region": REGION,
    "access_key_id": "MOCK_AWS_ACCESS_KEY",
    "secret_access_key": "MOCK_AWS_SECRET_KEY",
    "timestamp": "2023-11-09T12:00:00Z",
    "user_agent": "aws-msk-iam-sasl-signer-python/" + version("aws-msk-iam-sasl-signer-python"),
    "cases": cases,
}, indent=1))
