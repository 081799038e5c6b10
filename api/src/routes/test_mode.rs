//! `POST /test/verifications/{verificationId}/complete`: test mode's stand-in for the app.
//!
//! No app confirms a test session, so a test key completes it: exactly the transition the
//! app (or the expiry sweep) would make, with the same single-winner and 409 rules and the
//! same event and signed webhook (`"livemode": false`).

use chrono::Utc;
use poem_openapi::{Enum, Object, OpenApi, param::Path};
use serde::Deserialize;
use truenumber_core::{
    companies::api_keys::{AuthenticatedCompany, Scope},
    error_code::ErrorCode,
    verification::{self, Decider, SessionStatus},
};

use crate::{
    error::ApiError,
    json_body::{JsonBody, Validate},
    rate_limit::{Limit, enforce},
    responses::{ErrorDoc, Failure, OperationErrors, Success},
    routes::{
        ApiTags,
        verification::flow::{VerificationStatusResponse, session_error},
    },
    security::{CompanyAuth, require_scope},
    state::AppState,
};

/// The outcome to give a test session: what the app's submit (`verified`, or `failed` for a
/// different number), its deny (`denied`) or the expiry sweep (`expired`) would have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    /// As if the user confirmed the number.
    Verified,
    /// As if the user confirmed a different number.
    Failed,
    /// As if the user said "this is not me".
    Denied,
    /// As if nobody confirmed in time (allowed before `expiresAt` too).
    Expired,
}

impl From<TestOutcome> for SessionStatus {
    fn from(o: TestOutcome) -> Self {
        match o {
            TestOutcome::Verified => Self::Verified,
            TestOutcome::Failed => Self::Failed,
            TestOutcome::Denied => Self::Denied,
            TestOutcome::Expired => Self::Expired,
        }
    }
}

/// Body of `POST /test/verifications/{verificationId}/complete`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteTestVerificationRequest {
    // Documented on the type, so the schema is a plain `$ref`.
    outcome: TestOutcome,
}

impl Validate for CompleteTestVerificationRequest {
    fn validate(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The error statuses of the test completion.
#[derive(Debug)]
pub struct CompleteErrors;

impl OperationErrors for CompleteErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: malformed body, an unknown `outcome`, `verificationId` out of \
             bounds.",
        ),
        ErrorDoc::before_limiter(
            401,
            "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
        ),
        ErrorDoc::before_limiter(
            403,
            "`TEST_MODE_ONLY`: a live key (live sessions are completed by the app only); \
             `COMPANY_INACTIVE`; or `INSUFFICIENT_SCOPE`: the key lacks the `verifications` \
             scope.",
        ),
        ErrorDoc::after_limiter(
            404,
            "`SESSION_NOT_FOUND` (`\"status\":\"failed\"`): unknown, another company's, or a \
             live session.",
        ),
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::after_limiter(
            409,
            "`SESSION_ALREADY_COMPLETED` (`\"status\":\"error\"`): completed before.",
        ),
        ErrorDoc::after_limiter(
            410,
            "`SESSION_EXPIRED` (`\"status\":\"failed\"`): past `expiresAt` (only `expired` \
             may still be given).",
        ),
        ErrorDoc::PAYLOAD_TOO_LARGE,
        ErrorDoc::RATE_LIMITED,
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// Test mode's endpoints.
#[derive(Debug)]
pub struct TestModeApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/test", tag = "ApiTags::TestMode")]
impl TestModeApi {
    /// Complete a test verification
    ///
    /// Test mode only (a `tn_test_` key): gives one of your pending test sessions the outcome
    /// the app or the expiry sweep would have given it, and emits the same event and signed
    /// webhook (`"livemode": false`). Exactly one completion of a session wins; a later one
    /// is `SESSION_ALREADY_COMPLETED`. Shares the session's submit rate limit.
    #[oai(
        path = "/verifications/:verificationId/complete",
        method = "post",
        operation_id = "completeTestVerification"
    )]
    async fn complete(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// A test session's id.
        #[oai(name = "verificationId", validator(min_length = 1, max_length = 64))]
        verification_id: Path<String>,
        JsonBody(req): JsonBody<CompleteTestVerificationRequest>,
    ) -> Result<Success<VerificationStatusResponse>, Failure<CompleteErrors>> {
        require_scope(&company, Scope::Verifications)?;
        let outcome = SessionStatus::from(req.outcome);
        Ok(Success(
            complete(&self.state, &company, &verification_id.0, outcome).await?,
        ))
    }
}

/// Completes test session `verification_id` of a test identity with `outcome` (the API's
/// operation and the console's four buttons).
pub(crate) async fn complete(
    state: &AppState,
    company: &AuthenticatedCompany,
    verification_id: &str,
    outcome: SessionStatus,
) -> Result<VerificationStatusResponse, ApiError> {
    if company.livemode() {
        return Err(ApiError::new(
            ErrorCode::TestModeOnly,
            "Only a test key (tn_test_…) can complete a verification; live ones are \
             completed by the TrueNumber app",
        ));
    }
    enforce(state, Limit::session(&state.config, verification_id)).await?;
    let done = verification::decide(
        &state.lanes,
        verification_id,
        outcome,
        Decider::TestKey {
            company_id: &company.company_id,
        },
    )
    .await
    .map_err(session_error)?;
    // Not counted in the verification metrics, which are about live sessions.
    state.publisher.publish_soon(done.event_id);
    Ok(VerificationStatusResponse::at(done.session, Utc::now()))
}
