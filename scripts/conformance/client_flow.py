"""Drives initiate -> submit -> status through a client that openapi-python-client generated
from openapi.json, as an integrator would. Exits non-zero on the first surprise."""

import datetime
import os
import sys
import uuid

from true_number_api_client import AuthenticatedClient
from true_number_api_client.api.verification import (
    get_verification_status,
    initiate_verification,
    submit_verification,
)
from true_number_api_client.models import (
    Error,
    ErrorStatus,
    InitiateVerificationRequest,
    InitiateVerificationResponse,
    SubmitVerificationRequest,
    SubmitVerificationResponse,
    VerificationStatus,
    VerificationStatusResponse,
)
from true_number_api_client.types import UNSET

BASE = os.environ["TN_BASE_URL"]
COMPANY = os.environ["TN_COMPANY_ID"]
NUMBER = "+447911123456"


def check(condition, what):
    if not condition:
        print(f"client flow: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"client flow: ok: {what}")


company = AuthenticatedClient(base_url=BASE, token=os.environ["TN_API_KEY"], raise_on_unexpected_status=True)
app = AuthenticatedClient(base_url=BASE, token=os.environ["TN_APP_TOKEN"], raise_on_unexpected_status=True)

initiated = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(
        mobile_number="+44 7911 123456", company_id=COMPANY, request_id=f"client-{uuid.uuid4()}"
    ),
)
check(initiated.status_code == 200, "initiate answers 200")
check(isinstance(initiated.parsed, InitiateVerificationResponse), "initiate parses")
check("x-request-id" in initiated.headers, "X-Request-Id is sent")
session = initiated.parsed
check(isinstance(session.expires_at, datetime.datetime), "expiresAt is a date-time")
check(session.mobile_number == NUMBER, "the number comes back as E.164")

pending = get_verification_status.sync_detailed(client=company, verification_id=session.verification_id)
check(isinstance(pending.parsed, VerificationStatusResponse), "status parses")
check(pending.parsed.status == VerificationStatus.PENDING, "a new session is pending")
check(pending.parsed.verified_at is UNSET, "verifiedAt is absent while pending")

submitted = submit_verification.sync_detailed(
    client=app,
    body=SubmitVerificationRequest(
        verification_id=session.verification_id,
        user_confirmed_number=NUMBER,
        app_user_id="conformance_user",
    ),
)
check(isinstance(submitted.parsed, SubmitVerificationResponse), "submit parses")
check(isinstance(submitted.parsed.verified_at, datetime.datetime), "verifiedAt is a date-time")

done = get_verification_status.sync_detailed(client=company, verification_id=session.verification_id)
check(done.parsed.status == VerificationStatus.VERIFIED, "the session is verified")
check(done.parsed.verified_at == submitted.parsed.verified_at, "status shows when it was verified")

replay = submit_verification.sync_detailed(
    client=app,
    body=SubmitVerificationRequest(
        verification_id=session.verification_id,
        user_confirmed_number=NUMBER,
        app_user_id="conformance_user",
    ),
)
check(replay.status_code == 409 and isinstance(replay.parsed, Error), "a replay is a typed 409")
check(replay.parsed.code == "SESSION_ALREADY_COMPLETED", "its code is SESSION_ALREADY_COMPLETED")
check(replay.parsed.status == ErrorStatus.FAILED, 'its status is "failed"')

missing = get_verification_status.sync_detailed(client=company, verification_id="ver_unknown")
check(missing.status_code == 404 and isinstance(missing.parsed, Error), "an unknown id is a typed 404")
check(missing.parsed.status == ErrorStatus.ERROR, 'its status is "error"')
print("client flow: initiate -> submit -> status through the generated client: all ok")
