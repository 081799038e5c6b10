"""Drives initiate -> submit -> status, self-service, the app's view (deny, number matching)
and test mode through a client that openapi-python-client generated from openapi.json, as an
integrator would. Exits non-zero on the first surprise."""

import datetime
import os
import sys
import uuid

from true_number_api_client import AuthenticatedClient
from true_number_api_client.api.company import (
    create_api_key,
    delete_webhook,
    get_company,
    list_api_keys,
    set_company_settings,
    revoke_api_key,
    roll_api_key,
    rotate_webhook_secret,
    send_test_webhook,
    set_webhook,
)
from true_number_api_client.api.company import get_delivery, list_deliveries, recover_deliveries
from true_number_api_client.api.app import (
    block_company,
    get_app_verification,
    list_app_verifications,
    list_blocked_companies,
    unblock_company,
)
from true_number_api_client.api.test_mode import complete_test_verification
from true_number_api_client.api.verification import (
    erase_verification,
    list_verifications,
    summarise_verifications,
    get_verification_status,
    initiate_verification,
    submit_verification,
    deny_verification,
)
from true_number_api_client.models import (
    ApiKeyList,
    ApiKeyMode,
    ApiKeyScope,
    BlockedCompanyList,
    CompanySettingsRequest,
    AppListStatus,
    AppVerification,
    AppVerificationList,
    CompleteTestVerificationRequest,
    DenyVerificationRequest,
    DenyVerificationResponse,
    TestOutcome,
    CompanyProfile,
    CreateApiKeyRequest,
    Error,
    IssuedApiKey,
    RolledApiKey,
    RollApiKeyRequest,
    RecoverRequest,
    Recovery,
    RotatedWebhookSecret,
    WebhookDeliveryList,
    WebhookTest,
    SetWebhookRequest,
    WebhookEndpoint,
    ErrorStatus,
    InitiateVerificationRequest,
    InitiateVerificationResponse,
    SubmitVerificationRequest,
    SubmitVerificationResponse,
    VerificationList,
    VerificationStatus,
    VerificationSummary,
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

first_request = InitiateVerificationRequest(
    mobile_number="+44 7911 123456", company_id=COMPANY, request_id=f"client-{uuid.uuid4()}"
)
initiated = initiate_verification.sync_detailed(client=company, body=first_request)
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

# The attack of issue 22: an app token that proves no number cannot confirm anyone's number.
unbound_app = AuthenticatedClient(base_url=BASE, token=os.environ["TN_APP_TOKEN_UNBOUND"], raise_on_unexpected_status=True)
attempt = submit_verification.sync_detailed(
    client=unbound_app,
    body=SubmitVerificationRequest(
        verification_id=session.verification_id,
        user_confirmed_number=NUMBER,
        app_user_id="conformance_user",
    ),
)
check(attempt.status_code == 403 and attempt.parsed.code == "NUMBER_BINDING_REQUIRED", "an unbound token is a typed 403 NUMBER_BINDING_REQUIRED")
still = get_verification_status.sync_detailed(client=company, verification_id=session.verification_id)
check(still.parsed.status == VerificationStatus.PENDING, "and the session stays pending")

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
check(done.parsed.number_binding == "app_token", "by a token bound to the number: numberBinding app_token")
check(isinstance(done.parsed.phone_verified_at, datetime.datetime), "phoneVerifiedAt is a date-time")
check(pending.parsed.number_binding is None, "numberBinding is null while pending")

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
check(replay.parsed.status == ErrorStatus.ERROR, 'its status is "error" (the replay changed nothing)')
again = initiate_verification.sync_detailed(client=company, body=first_request)
check(again.status_code == 409 and again.parsed.code == "DUPLICATE_REQUEST", "initiate again with a finished session's requestId: 409 DUPLICATE_REQUEST")
check("which is verified" in again.parsed.message, "naming the session's status")

missing = get_verification_status.sync_detailed(client=company, verification_id="ver_unknown")
check(missing.status_code == 404 and isinstance(missing.parsed, Error), "an unknown id is a typed 404")
check(missing.parsed.status == ErrorStatus.ERROR, 'its status is "error"')

# The company's verifications: listed and summarised (one is erased at the end).
listed_sessions = list_verifications.sync_detailed(client=company, limit=5, status=VerificationStatus.VERIFIED)
check(isinstance(listed_sessions.parsed, VerificationList), "the verification list parses")
check(session.verification_id in [v.verification_id for v in listed_sessions.parsed.data], "the verified session is listed")
summary = summarise_verifications.sync_detailed(client=company)
check(isinstance(summary.parsed, VerificationSummary), "the summary parses")
check(summary.parsed.verified >= 1 and summary.parsed.conversion_rate is not None, "it counts the verified session")

# Self-service: the profile, and an API key's life (create, use, roll, revoke).
profile = get_company.sync_detailed(client=company)
check(isinstance(profile.parsed, CompanyProfile), "the company profile parses")
check(profile.parsed.company_id == COMPANY, "it is our company")
check(profile.parsed.webhook_url is UNSET, "webhookUrl is absent when none is set")

made = create_api_key.sync_detailed(
    client=company,
    body=CreateApiKeyRequest(scopes=[ApiKeyScope.VERIFICATIONS], label="client flow"),
)
check(made.status_code == 201 and isinstance(made.parsed, IssuedApiKey), "a new key is a typed 201")
check(made.parsed.api_key.startswith("tn_live_"), "the key is a live key")
check(made.parsed.scopes == [ApiKeyScope.VERIFICATIONS] and made.parsed.mode == ApiKeyMode.LIVE, "with the scope asked for")
narrow = AuthenticatedClient(base_url=BASE, token=made.parsed.api_key, raise_on_unexpected_status=True)
check(get_verification_status.sync_detailed(client=narrow, verification_id=session.verification_id).status_code == 200,
      "the new key reads a status")
refused = get_company.sync_detailed(client=narrow)
check(refused.status_code == 403 and refused.parsed.code == "INSUFFICIENT_SCOPE", "but not the company: INSUFFICIENT_SCOPE")

listed = list_api_keys.sync_detailed(client=company)
check(isinstance(listed.parsed, ApiKeyList), "the key list parses")
check(made.parsed.key_id in [k.key_id for k in listed.parsed.data], "the new key is listed")

rolled = roll_api_key.sync_detailed(made.parsed.key_id, client=company, body=RollApiKeyRequest(expires_in_seconds=0))
check(rolled.status_code == 201 and isinstance(rolled.parsed, RolledApiKey), "a roll is a typed 201")
check(isinstance(rolled.parsed.previous_key_expires_at, datetime.datetime), "previousKeyExpiresAt is a date-time")
gone = get_verification_status.sync_detailed(client=narrow, verification_id=session.verification_id)
check(gone.status_code == 401, "the rolled key stopped at once (expiresInSeconds 0)")
revoked = revoke_api_key.sync_detailed(rolled.parsed.key_id, client=company)
check(revoked.status_code == 204, "revoking the new key answers 204")

# The webhook endpoint and its secret.
refused = set_webhook.sync_detailed(client=company, body=SetWebhookRequest(url="http://169.254.169.254/latest"))
check(refused.status_code == 400 and refused.parsed.code == "INVALID_WEBHOOK_URL", "a metadata-service URL is refused")
endpoint = set_webhook.sync_detailed(client=company, body=SetWebhookRequest(url="https://93.184.216.34/truenumber"))
check(isinstance(endpoint.parsed, WebhookEndpoint), "a public webhook URL is set")
check(get_company.sync_detailed(client=company).parsed.webhook_url == endpoint.parsed.webhook_url, "and shown")
tested = send_test_webhook.sync_detailed(client=company)
check(tested.status_code == 202 and isinstance(tested.parsed, WebhookTest), "a test webhook is a typed 202")
rotated = rotate_webhook_secret.sync_detailed(client=company)
check(isinstance(rotated.parsed, RotatedWebhookSecret), "a secret rotation parses")
check(rotated.parsed.webhook_secret.startswith("whsec_"), "the new secret is a whsec_ secret")
check(isinstance(rotated.parsed.previous_secret_expires_at, datetime.datetime), "previousSecretExpiresAt is a date-time")
check(delete_webhook.sync_detailed(client=company).status_code == 204, "the webhook URL is removed")
untested = send_test_webhook.sync_detailed(client=company)
check(untested.status_code == 409 and untested.parsed.code == "WEBHOOK_NOT_CONFIGURED", "without a URL a test webhook is a typed 409")

# Deliveries (no worker runs here, so there are none yet; the shapes are what is checked).
deliveries = list_deliveries.sync_detailed(client=company, limit=10)
check(isinstance(deliveries.parsed, WebhookDeliveryList), "the delivery list parses")
check(deliveries.parsed.next_cursor is None, "nextCursor is null on the last page")
unknown = get_delivery.sync_detailed(str(uuid.uuid4()), client=company)
check(unknown.status_code == 404 and unknown.parsed.code == "DELIVERY_NOT_FOUND", "an unknown delivery is a typed 404")
since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
recovered = recover_deliveries.sync_detailed(client=company, body=RecoverRequest(since=since))
check(recovered.status_code == 202 and isinstance(recovered.parsed, Recovery), "recover is a typed 202")
check(recovered.parsed.count == 0, "with nothing failed, nothing is recovered")

# The app's side: the consent view, number matching, "not me", and the pending list.
matched = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(
        mobile_number=NUMBER, company_id=COMPANY, request_id=f"match-{uuid.uuid4()}", number_matching=True
    ),
).parsed
check(isinstance(matched.match_code, str) and len(matched.match_code) == 2, "numberMatching gives a two-digit matchCode")
bound = app
view = get_app_verification.sync_detailed(matched.verification_id, client=bound)
check(isinstance(view.parsed, AppVerification), "the consent view parses")
check(view.parsed.company_name == "Client flow" and view.parsed.number_matching is True, "it names the company and asks for the code")
pending_list = list_app_verifications.sync_detailed(client=bound, status=AppListStatus.PENDING)
check(isinstance(pending_list.parsed, AppVerificationList), "the pending list parses")
check(matched.verification_id in [v.verification_id for v in pending_list.parsed.data], "the request is listed for its number")
unbound = list_app_verifications.sync_detailed(client=unbound_app)
check(unbound.status_code == 403 and unbound.parsed.code == "NUMBER_BINDING_REQUIRED", "an unbound token cannot list: NUMBER_BINDING_REQUIRED")
verified = submit_verification.sync_detailed(
    client=app,
    body=SubmitVerificationRequest(
        verification_id=matched.verification_id,
        user_confirmed_number=NUMBER,
        app_user_id="conformance_user",
        match_code=matched.match_code,
    ),
)
check(isinstance(verified.parsed, SubmitVerificationResponse), "the right match code verifies")
mistaken = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(mobile_number=NUMBER, company_id=COMPANY, request_id=f"notme-{uuid.uuid4()}"),
).parsed
denied = deny_verification.sync_detailed(
    client=app,
    body=DenyVerificationRequest(verification_id=mistaken.verification_id, app_user_id="conformance_user"),
)
check(isinstance(denied.parsed, DenyVerificationResponse), "deny parses")
check(
    get_verification_status.sync_detailed(client=company, verification_id=mistaken.verification_id).parsed.status
    == VerificationStatus.DENIED,
    "a denied session reads denied",
)

# Abuse controls, as an integrator meets them: the cooldown after "not me", a block by the
# number's holder, and the countries the company serves.
again = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(mobile_number=NUMBER, company_id=COMPANY, request_id=f"again-{uuid.uuid4()}"),
)
check(again.status_code == 403 and again.parsed.code == "RECENTLY_DENIED", "after not me, the number cools down: RECENTLY_DENIED")
OTHER = "+447400123456"
other_app = AuthenticatedClient(base_url=BASE, token=os.environ["TN_APP_TOKEN_OTHER"], raise_on_unexpected_status=True)
blocked = block_company.sync_detailed(COMPANY, client=other_app)
check(blocked.status_code == 204, "the holder of another number blocks the company: 204")
blocks = list_blocked_companies.sync_detailed(client=other_app)
check(isinstance(blocks.parsed, BlockedCompanyList), "the block list parses")
check([b.company_id for b in blocks.parsed.data] == [COMPANY], "it lists the company")
refused = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(mobile_number=OTHER, company_id=COMPANY, request_id=f"blocked-{uuid.uuid4()}"),
)
check(refused.status_code == 403 and refused.parsed.code == "BLOCKED_BY_USER", "its initiations are refused: BLOCKED_BY_USER")
check(unblock_company.sync_detailed(COMPANY, client=other_app).status_code == 204, "unblocking answers 204")
check(list_blocked_companies.sync_detailed(client=other_app).parsed.data == [], "and leaves no block")
settings = set_company_settings.sync_detailed(client=company, body=CompanySettingsRequest(allowed_countries=["GB"]))
check(settings.status_code == 200, "the company sets its countries")
check(get_company.sync_detailed(client=company).parsed.allowed_countries == ["GB"], "the profile shows them")
abroad = initiate_verification.sync_detailed(
    client=company,
    body=InitiateVerificationRequest(mobile_number="+33612345678", company_id=COMPANY, request_id=f"fr-{uuid.uuid4()}"),
)
check(abroad.status_code == 400 and abroad.parsed.code == "COUNTRY_NOT_ALLOWED", "a French number is refused: COUNTRY_NOT_ALLOWED")
check(
    initiate_verification.sync_detailed(
        client=company,
        body=InitiateVerificationRequest(mobile_number=OTHER, company_id=COMPANY, request_id=f"gb-{uuid.uuid4()}"),
    ).status_code
    == 200,
    "a GB number is not",
)
set_company_settings.sync_detailed(client=company, body=CompanySettingsRequest(allowed_countries=[]))

# Test mode: a test key's session, completed without the app; invisible to the live key.
sandbox = AuthenticatedClient(base_url=BASE, token=os.environ["TN_TEST_API_KEY"], raise_on_unexpected_status=True)
trial = initiate_verification.sync_detailed(
    client=sandbox,
    body=InitiateVerificationRequest(mobile_number=NUMBER, company_id=COMPANY, request_id=f"test-{uuid.uuid4()}"),
).parsed
check(isinstance(trial, InitiateVerificationResponse), "a test key initiates")
live_refused = complete_test_verification.sync_detailed(
    trial.verification_id, client=company, body=CompleteTestVerificationRequest(outcome=TestOutcome.VERIFIED)
)
check(live_refused.status_code == 403 and live_refused.parsed.code == "TEST_MODE_ONLY", "a live key cannot complete: TEST_MODE_ONLY")
completed = complete_test_verification.sync_detailed(
    trial.verification_id, client=sandbox, body=CompleteTestVerificationRequest(outcome=TestOutcome.VERIFIED)
)
check(isinstance(completed.parsed, VerificationStatusResponse), "a test completion parses")
check(completed.parsed.status == VerificationStatus.VERIFIED, "the test session is verified")
hidden = get_verification_status.sync_detailed(client=company, verification_id=trial.verification_id)
check(hidden.status_code == 404, "the live key does not see the test session")
check(get_app_verification.sync_detailed(trial.verification_id, client=app).status_code == 404, "nor does the app")

# Last, as it ends the session the flow used: erasing it.
erased = erase_verification.sync_detailed(session.verification_id, client=company)
check(erased.status_code == 204, "erasing a session answers 204")
gone_session = get_verification_status.sync_detailed(client=company, verification_id=session.verification_id)
check(gone_session.status_code == 404, "an erased session is a 404")
print("client flow: initiate -> submit -> status, self-service, the app's side and test mode through the generated client: all ok")
