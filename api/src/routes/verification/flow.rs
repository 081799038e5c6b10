//! `POST /verification/initiate`, `POST /verification/submit`, `POST /verification/deny`,
//! `GET /verification/status/{verificationId}`.

use chrono::Utc;
use poem_openapi::{Enum, Object, OpenApi, param::Path};
use serde::Deserialize;
use truenumber_core::{
    abuse::{RefusalReason, countries, refusals},
    companies::api_keys::{AuthenticatedCompany, Scope},
    companies::app_tokens::{NumberBinding, TokenBinding},
    error_code::ErrorCode,
    phone::{MobileNumber, parse_mobile_number},
    verification::{self, Decider, NewSession, SessionStatus, Submission, VerificationError},
};

use crate::{
    error::{ApiError, db_error},
    json_body::{JsonBody, Validate, check_len},
    rate_limit::{Limit, admit_chain, enforce, release},
    responses::{ErrorDoc, Failure, OperationErrors, Success, SuccessBody},
    routes::ApiTags,
    security::{AppAuth, CompanyAuth, require_scope},
    state::AppState,
    timestamp::Timestamp,
};

/// Applies the identifier rules of `truenumber_core::text` (they reach logs and webhooks).
fn printable(field: &str, value: &str) -> Result<(), ApiError> {
    truenumber_core::text::check_identifier(value)
        .map_err(|why| ApiError::invalid_request(field, why))
}

/// Body of `POST /verification/initiate`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct InitiateVerificationRequest {
    /// The mobile number to verify, E.164 (`+447911123456`); spaces, `-`, `.` and `()` are
    /// ignored. It must be a valid number of a type that can be a mobile, else
    /// `INVALID_NUMBER`.
    #[oai(validator(max_length = 64))]
    pub mobile_number: String,
    /// Your company id; must be the one your API key belongs to.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub company_id: String,
    /// Your own id for this request. Repeating it returns the same session (idempotency). It
    /// must contain a visible character; control, format and bidi characters are refused
    /// (`INVALID_REQUEST`).
    #[oai(validator(min_length = 1, max_length = 255))]
    pub request_id: String,
    /// Number matching: the response then carries `matchCode`, two digits to show your user,
    /// who must pick the same two digits in the app (a wrong or missing code fails the
    /// session). Defends against a user approving a request they did not start. Default
    /// `false`.
    #[serde(default, deserialize_with = "crate::json_body::not_null")]
    pub number_matching: Option<bool>,
}

impl Validate for InitiateVerificationRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("mobileNumber", &self.mobile_number, 0, 64)?;
        check_len("companyId", &self.company_id, 1, 255)?;
        check_len("requestId", &self.request_id, 1, 255)?;
        printable("requestId", &self.request_id)
    }
}

/// Success of initiate.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct InitiateVerificationResponse {
    /// Always `success`.
    pub status: String,
    /// `Verification initiated`.
    pub message: String,
    /// The session id (`ver_…`).
    pub verification_id: String,
    /// Open this on the user's phone: it starts the TrueNumber app on this session.
    pub deep_link_url: String,
    /// The number being verified, E.164.
    pub mobile_number: String,
    /// When the session expires unless confirmed (RFC 3339, UTC).
    pub expires_at: Timestamp,
    /// With `numberMatching`: the two digits to show your user, who must pick them in the
    /// app. Never shown to the app. Absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub match_code: Option<String>,
}

impl SuccessBody for InitiateVerificationResponse {
    const DESCRIPTION: &'static str = "The session was created, or this `requestId` was seen \
                                       before with the same number and its session is returned \
                                       again.";
}

/// The error statuses of initiate.
#[derive(Debug)]
pub struct InitiateErrors;

impl OperationErrors for InitiateErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::after_limiter(
            400,
            "`INVALID_REQUEST` (malformed body, a field out of bounds), `INVALID_NUMBER`, or \
             `COUNTRY_NOT_ALLOWED`: the number's region is not among your `allowedCountries` \
             (the message names it).",
        ),
        ErrorDoc::before_limiter(
            401,
            "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
        ),
        ErrorDoc::after_limiter(
            403,
            "`COMPANY_INACTIVE`; `INSUFFICIENT_SCOPE`: the key lacks the `verifications` scope; \
             `RECENTLY_DENIED`: the number's holder said \"not me\" to your company within the \
             deny cooldown (the message says until when); `BLOCKED_BY_USER`: the number's \
             holder has blocked your company.",
        ),
        ErrorDoc::after_limiter(
            404,
            "`COMPANY_NOT_FOUND`: `companyId` is not the company of this API key.",
        ),
        ErrorDoc::after_limiter(
            409,
            "`DUPLICATE_REQUEST`: this `requestId` was used with a different number or \
             `numberMatching`, or its session has finished (verified, failed, denied or \
             expired: the message names the session and its status; use a new `requestId`).",
        ),
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        ErrorDoc::after_limiter(
            429,
            "`RATE_LIMIT_EXCEEDED` (your company's initiations per hour) or \
             `NUMBER_RATE_LIMITED` (this number's initiations in the per-number window; a repeat \
             of a `requestId` is not counted); see `Retry-After`.",
        ),
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// Body of `POST /verification/submit`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SubmitVerificationRequest {
    /// The session id from the deep link.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub verification_id: String,
    /// The number the user saw and confirmed, E.164 (formatting as for `mobileNumber`). One
    /// that is not a valid mobile number is `INVALID_NUMBER` and leaves the session as it was.
    #[oai(validator(max_length = 64))]
    pub user_confirmed_number: String,
    /// The app user; must equal the app token's `sub`. It must contain a visible character;
    /// control, format and bidi characters are refused (`INVALID_REQUEST`).
    #[oai(validator(min_length = 1, max_length = 255))]
    pub app_user_id: String,
    /// The two digits the user picked, when the session has number matching on (the consent
    /// view says so). A wrong or missing code fails the session (`MATCH_CODE_MISMATCH`).
    #[oai(validator(pattern = "^[0-9]{2}$"))]
    #[serde(default, deserialize_with = "crate::json_body::not_null")]
    pub match_code: Option<String>,
}

impl Validate for SubmitVerificationRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("verificationId", &self.verification_id, 1, 64)?;
        check_len("userConfirmedNumber", &self.user_confirmed_number, 0, 64)?;
        check_len("appUserId", &self.app_user_id, 1, 255)?;
        if let Some(code) = &self.match_code
            && !(code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ApiError::invalid_request("matchCode", "must be two digits"));
        }
        printable("appUserId", &self.app_user_id)
    }
}

/// Body of `POST /verification/deny`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct DenyVerificationRequest {
    /// The session id from the deep link or the pending list.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub verification_id: String,
    /// The app user; must equal the app token's `sub`. It must contain a visible character;
    /// control, format and bidi characters are refused (`INVALID_REQUEST`).
    #[oai(validator(min_length = 1, max_length = 255))]
    pub app_user_id: String,
    /// Also block the company that asked: it may not initiate for this number again
    /// (`BLOCKED_BY_USER`) until the user unblocks it (`DELETE
    /// /app/blocked-companies/{companyId}`). Default `false`.
    #[serde(default, deserialize_with = "crate::json_body::not_null")]
    pub block_company: Option<bool>,
}

impl Validate for DenyVerificationRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("verificationId", &self.verification_id, 1, 64)?;
        check_len("appUserId", &self.app_user_id, 1, 255)?;
        printable("appUserId", &self.app_user_id)
    }
}

/// Success of deny.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct DenyVerificationResponse {
    /// Always `success`.
    pub status: String,
    /// `Verification denied`.
    pub message: String,
    /// The session id.
    pub verification_id: String,
}

impl SuccessBody for DenyVerificationResponse {
    const DESCRIPTION: &'static str =
        "Denied: the session is now `denied` and the company is told.";
}

/// 401 of the app's operations.
const APP_UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid or expired app token.",
);
/// 403 of submit and deny.
const APP_FORBIDDEN: ErrorDoc = ErrorDoc::after_limiter(
    403,
    "`FORBIDDEN`: the token's `sub` is not `appUserId`; `NUMBER_BINDING_REQUIRED`: the token \
     carries no verified `phone_number` (the session is untouched); `COMPANY_INACTIVE`: the \
     company that requested the verification is deactivated (the session stays pending).",
);
/// 404 of submit and deny.
const APP_SESSION_NOT_FOUND: ErrorDoc = ErrorDoc::after_limiter(
    404,
    "`SESSION_NOT_FOUND` (`\"status\":\"failed\"`): unknown, or another number's session (the \
     token is bound to another number; the session is untouched).",
);

/// The error statuses of deny. Failures of the verification itself carry
/// `"status":"failed"`.
#[derive(Debug)]
pub struct DenyErrors;

impl OperationErrors for DenyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::after_limiter(400, "`INVALID_REQUEST`: malformed body."),
        APP_UNAUTHORIZED,
        APP_FORBIDDEN,
        APP_SESSION_NOT_FOUND,
        ErrorDoc::after_limiter(
            409,
            "`SESSION_ALREADY_COMPLETED` (`\"status\":\"error\"`): completed before.",
        ),
        ErrorDoc::after_limiter(410, "`SESSION_EXPIRED` (`\"status\":\"failed\"`)."),
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        ErrorDoc::RATE_LIMITED,
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// Success of submit.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct SubmitVerificationResponse {
    /// Always `success`.
    pub status: String,
    /// `Mobile number verified successfully!`.
    pub message: String,
    /// The session id.
    pub verification_id: String,
    /// When it was verified (RFC 3339, UTC).
    pub verified_at: Timestamp,
}

impl SuccessBody for SubmitVerificationResponse {
    const DESCRIPTION: &'static str = "Verified.";
}

/// The error statuses of submit. Failures of the verification itself carry
/// `"status":"failed"`.
#[derive(Debug)]
pub struct SubmitErrors;

impl OperationErrors for SubmitErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::after_limiter(
            400,
            "`INVALID_REQUEST`, `INVALID_NUMBER` (`userConfirmedNumber` is not a valid mobile \
             number; the session is unchanged), `NUMBER_MISMATCH` or `MATCH_CODE_MISMATCH` \
             (`\"status\":\"failed\"`: the session is now failed).",
        ),
        APP_UNAUTHORIZED,
        APP_FORBIDDEN,
        APP_SESSION_NOT_FOUND,
        ErrorDoc::after_limiter(
            409,
            "`SESSION_ALREADY_COMPLETED` (`\"status\":\"error\"`): completed before (replay).",
        ),
        ErrorDoc::after_limiter(410, "`SESSION_EXPIRED` (`\"status\":\"failed\"`)."),
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        ErrorDoc::RATE_LIMITED,
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// A session's status: `pending` (waiting for the user), `verified` (confirmed), `failed`
/// (the user confirmed a different number, or a wrong match code), `denied` (the user said
/// "this is not me") or `expired` (not confirmed in time; a pending session past `expiresAt`
/// reads `expired` before any sweep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum VerificationStatus {
    /// Waiting for the user.
    Pending,
    /// Confirmed.
    Verified,
    /// The user confirmed a different number, or a wrong match code.
    Failed,
    /// The user said "this is not me".
    Denied,
    /// Not confirmed in time.
    Expired,
}

impl From<VerificationStatus> for SessionStatus {
    fn from(s: VerificationStatus) -> Self {
        match s {
            VerificationStatus::Pending => Self::Pending,
            VerificationStatus::Verified => Self::Verified,
            VerificationStatus::Failed => Self::Failed,
            VerificationStatus::Denied => Self::Denied,
            VerificationStatus::Expired => Self::Expired,
        }
    }
}

impl From<SessionStatus> for VerificationStatus {
    fn from(s: SessionStatus) -> Self {
        match s {
            SessionStatus::Pending => Self::Pending,
            SessionStatus::Verified => Self::Verified,
            SessionStatus::Failed => Self::Failed,
            SessionStatus::Denied => Self::Denied,
            SessionStatus::Expired => Self::Expired,
        }
    }
}

/// `GET /verification/status/{verificationId}`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct VerificationStatusResponse {
    /// The session id.
    pub verification_id: String,
    // Documented on the type, so the schema is a plain `$ref`.
    pub status: VerificationStatus,
    /// E.164.
    pub mobile_number: String,
    /// When verified (RFC 3339, UTC); absent (not `null`) otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub verified_at: Option<Timestamp>,
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
    /// Expiry (RFC 3339, UTC).
    pub expires_at: Timestamp,
    /// Your `requestId`.
    pub request_id: String,
    /// How the app token that completed the session was bound to its number: `app_token`
    /// (the token carried the number its identity provider verified, equal to the
    /// session's), `none` (an unbound token under the development switch
    /// `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`: do not trust such a verification), or `null`
    /// while the app has not completed the session (pending, expired, or a test completion).
    pub number_binding: ReportedBinding,
    /// When the app's identity provider last proved that the confirming user holds the
    /// number (the app token's `auth_time`; RFC 3339, UTC): a recent proof is your signal
    /// against SIM swaps and recycled numbers. `null` when the token did not say, or the app
    /// has not completed the session.
    #[oai(nullable)]
    pub phone_verified_at: Option<Timestamp>,
}

/// `numberBinding`: `"app_token"`, `"none"` or `null`, documented inline as a nullable
/// string enum (a `$ref` cannot be nullable in OpenAPI 3.0 without an `allOf` wrapper, which
/// generators handle poorly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedBinding(pub Option<NumberBinding>);

impl poem_openapi::types::Type for ReportedBinding {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> std::borrow::Cow<'static, str> {
        "NumberBinding".into()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        let mut schema = poem_openapi::registry::MetaSchema::new("string");
        schema.enum_items = [
            NumberBinding::AppToken.as_str().into(),
            NumberBinding::None.as_str().into(),
            serde_json::Value::Null,
        ]
        .into();
        schema.nullable = true;
        poem_openapi::registry::MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl poem_openapi::types::ToJSON for ReportedBinding {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(
            self.0
                .map_or(serde_json::Value::Null, |b| b.as_str().into()),
        )
    }
}

impl poem_openapi::types::ParseFromJSON for ReportedBinding {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Self(None)),
            Some(serde_json::Value::String(s)) if s == NumberBinding::AppToken.as_str() => {
                Ok(Self(Some(NumberBinding::AppToken)))
            }
            Some(serde_json::Value::String(s)) if s == NumberBinding::None.as_str() => {
                Ok(Self(Some(NumberBinding::None)))
            }
            Some(other) => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl VerificationStatusResponse {
    /// The session as the API shows it at `now` (a pending session past its expiry reads
    /// `expired`).
    pub fn at(session: verification::VerificationSession, now: chrono::DateTime<Utc>) -> Self {
        Self {
            status: session.status_at(now).into(),
            verified_at: session.verified_at.map(Timestamp::from),
            number_binding: ReportedBinding(session.number_binding),
            phone_verified_at: session.phone_verified_at.map(Timestamp::from),
            created_at: session.created_at.into(),
            expires_at: session.expires_at.into(),
            verification_id: session.verification_id,
            mobile_number: session.mobile_number,
            request_id: session.request_id,
        }
    }
}

impl SuccessBody for VerificationStatusResponse {
    const DESCRIPTION: &'static str = "The session.";
}

/// The error statuses of status.
#[derive(Debug)]
pub struct StatusErrors;

impl OperationErrors for StatusErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `verificationId` out of bounds."),
        ErrorDoc::before_limiter(
            401,
            "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
        ),
        ErrorDoc::before_limiter(
            403,
            "`COMPANY_INACTIVE`, or `INSUFFICIENT_SCOPE`: the key lacks the `verifications` scope.",
        ),
        ErrorDoc::after_limiter(
            404,
            "`SESSION_NOT_FOUND` (also for another company's session, or the other mode's).",
        ),
        ErrorDoc::RATE_LIMITED,
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// What submit and deny check first: one per-session rate limit for both (before anything
/// else, so a flood of attempts on a session costs a counter), then that the token was issued
/// to `appUserId`.
async fn app_preamble(
    state: &AppState,
    claims: &truenumber_core::companies::app_tokens::AppClaims,
    verification_id: &str,
    app_user_id: &str,
) -> Result<(), ApiError> {
    enforce(state, Limit::session(&state.config, verification_id)).await?;
    if claims.sub != app_user_id {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "The app token was not issued to this appUserId",
        ));
    }
    Ok(())
}

/// The token's binding to a number under the configured rules (PRODUCT.md, "App identity and
/// number binding"): a verified `phone_number`, normalised to E.164, or 403
/// `NUMBER_BINDING_REQUIRED` (unless `APP_TOKEN_REQUIRE_PHONE_NUMBER` is off).
pub(crate) fn token_binding(
    state: &AppState,
    claims: &truenumber_core::companies::app_tokens::AppClaims,
) -> Result<TokenBinding, ApiError> {
    claims
        .binding(state.config.app_token_require_phone_number)
        .map_err(|why| ApiError::new(ErrorCode::NumberBindingRequired, why.to_string()))
}

/// A refused transition as the app sees it: `"status":"failed"`, except for a database
/// failure, an inactive company and a replay of a finished session (`"status":"error"`:
/// this request changed nothing, and the session's outcome was decided before).
pub(crate) fn session_error(e: VerificationError) -> ApiError {
    match e {
        VerificationError::Db(db) => db_error(db),
        e @ (VerificationError::CompanyInactive | VerificationError::AlreadyCompleted(_)) => {
            ApiError::from(e)
        }
        other => ApiError::from(other).failed(),
    }
}

/// Why an initiate request's input was refused ([`initiate_input`]).
enum InitiateInput {
    /// A wrong company id or number.
    Invalid(ApiError),
    /// A number of a region the company does not verify (recorded as a refusal).
    CountryNotAllowed(ApiError),
}

/// The verification endpoints.
#[derive(Debug)]
pub struct VerificationApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/verification", tag = "ApiTags::Verification")]
impl VerificationApi {
    /// Start a verification
    ///
    /// Creates a session for a mobile number and returns the deep link that opens it in the
    /// TrueNumber app. Idempotent on `(companyId, requestId)`.
    #[oai(
        path = "/initiate",
        method = "post",
        operation_id = "initiateVerification"
    )]
    async fn initiate(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<InitiateVerificationRequest>,
    ) -> Result<Success<InitiateVerificationResponse>, Failure<InitiateErrors>> {
        require_scope(&company, Scope::Verifications)?;
        let config = &self.state.config;
        let number = match initiate_input(&company, &req) {
            Ok(number) => number,
            Err(invalid) => {
                // A request refused for its input still counts against the company's limit,
                // and the limit's 429 comes first, as for every operation.
                enforce(&self.state, Limit::initiate(config, &company)).await?;
                return Err(match invalid {
                    InitiateInput::Invalid(err) => err,
                    InitiateInput::CountryNotAllowed(err) => {
                        let reason = RefusalReason::CountryNotAllowed;
                        refused(&self.state, &company, reason, err).await
                    }
                }
                .into());
            }
        };
        let new = NewSession {
            company_id: &company.company_id,
            livemode: company.livemode(),
            request_id: &req.request_id,
            mobile_number: &number,
            number_matching: req.number_matching.unwrap_or(false),
            deny_cooldown: company.overrides.in_force(config).deny_cooldown,
        };
        // The company's limit and the number's, decided in one limiter call: the company's
        // first (its refusal counts neither), then the number's. The number's admission is
        // counted before the insert and given back when the request turns out to be a replay
        // or is refused further on, so only new sessions count against a number.
        let mut limits = vec![Limit::initiate(config, &company)];
        limits.extend(Limit::initiate_per_number(config, &company, &number));
        let admission = match admit_chain(&self.state, &limits).await {
            // The number's admission is the second, when there is a per-number limit.
            Ok(admissions) => admissions.into_iter().nth(1).flatten(),
            Err(limited) if limited.code == ErrorCode::NumberRateLimited => {
                // An idempotent repeat is not a new initiation: it still gets its session. A
                // block or a cooldown is the more lasting answer than "retry later".
                return match verification::replay(&self.state.lanes, new).await {
                    Ok(Some(replay)) => Ok(self.initiated(&company, replay)),
                    Ok(None) => {
                        let reason = RefusalReason::NumberRateLimited;
                        Err(refused(&self.state, &company, reason, limited).await.into())
                    }
                    Err(e) => Err(self.refused_by_holder(&company, e).await.into()),
                };
            }
            Err(other) => return Err(other.into()),
        };
        let outcome = verification::initiate(&self.state.lanes, new, config.verification_ttl).await;
        if let (Some(admission), true) = (admission, outcome.as_ref().map_or(true, |i| i.replayed))
        {
            release(&self.state, admission).await;
        }
        let initiated = match outcome {
            Ok(initiated) => initiated,
            Err(e) => return Err(self.refused_by_holder(&company, e).await.into()),
        };
        Ok(self.initiated(&company, initiated))
    }

    /// Confirm a verification (TrueNumber app)
    ///
    /// Called by the TrueNumber app with the number the user confirmed. Exactly one submit
    /// of a session can succeed or fail it; any later one is `SESSION_ALREADY_COMPLETED`.
    #[oai(path = "/submit", method = "post", operation_id = "submitVerification")]
    async fn submit(
        &self,
        AppAuth(claims): AppAuth,
        JsonBody(req): JsonBody<SubmitVerificationRequest>,
    ) -> Result<Success<SubmitVerificationResponse>, Failure<SubmitErrors>> {
        app_preamble(&self.state, &claims, &req.verification_id, &req.app_user_id).await?;
        let binding = token_binding(&self.state, &claims)?;
        // A malformed number is the request's fault, not the verification's: `"error"`, and
        // the session is not touched.
        let confirmed = parse_mobile_number(&req.user_confirmed_number)
            .map_err(|e| ApiError::invalid_number("userConfirmedNumber", &e))?;
        let submission = Submission {
            verification_id: &req.verification_id,
            confirmed_number: &confirmed,
            binding: &binding,
            app_user_id: &req.app_user_id,
            match_code: req.match_code.as_deref(),
        };
        let done = verification::submit(&self.state.lanes, submission.clone())
            .await
            .map_err(session_error)?;
        // The event is committed; hand it to RabbitMQ without making the app wait for the
        // broker's confirm (the worker's relay publishes it if this does not).
        self.state.publisher.publish_soon(done.event_id.clone());
        self.state
            .metrics
            .verification(done.session.stored_status.as_str());
        if let Some(why) = done.submit_failure(&submission) {
            return Err(ApiError::from(why).failed().into());
        }
        let session = done.session;
        let verified_at = session
            .verified_at
            .ok_or_else(|| ApiError::internal("verified session without verified_at"))?;
        Ok(Success(SubmitVerificationResponse {
            status: "success".into(),
            message: "Mobile number verified successfully!".into(),
            verification_id: session.verification_id,
            verified_at: verified_at.into(),
        }))
    }

    /// Deny a verification: "this is not me" (TrueNumber app)
    ///
    /// Called by the TrueNumber app when the user did not ask for this verification. The
    /// session becomes `denied` and the company is told by webhook. Same token rules,
    /// single-winner rule and rate limit as submit: of a submit and a deny racing, exactly
    /// one wins. A number-bound token can deny only its number's sessions.
    #[oai(path = "/deny", method = "post", operation_id = "denyVerification")]
    async fn deny(
        &self,
        AppAuth(claims): AppAuth,
        JsonBody(req): JsonBody<DenyVerificationRequest>,
    ) -> Result<Success<DenyVerificationResponse>, Failure<DenyErrors>> {
        app_preamble(&self.state, &claims, &req.verification_id, &req.app_user_id).await?;
        let binding = token_binding(&self.state, &claims)?;
        let done = verification::decide(
            &self.state.lanes,
            &req.verification_id,
            SessionStatus::Denied,
            Decider::App {
                app_user_id: &req.app_user_id,
                binding: &binding,
                block_company: req.block_company.unwrap_or(false),
            },
        )
        .await
        .map_err(session_error)?;
        self.state.publisher.publish_soon(done.event_id);
        self.state
            .metrics
            .verification(SessionStatus::Denied.as_str());
        Ok(Success(DenyVerificationResponse {
            status: "success".into(),
            message: "Verification denied".into(),
            verification_id: done.session.verification_id,
        }))
    }

    /// Read a verification's status
    #[oai(
        path = "/status/:verificationId",
        method = "get",
        operation_id = "getVerificationStatus"
    )]
    async fn status(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The session id from initiate.
        #[oai(name = "verificationId", validator(min_length = 1, max_length = 64))]
        verification_id: Path<String>,
    ) -> Result<Success<VerificationStatusResponse>, Failure<StatusErrors>> {
        require_scope(&company, Scope::Verifications)?;
        enforce(&self.state, Limit::status(&self.state.config, &company)).await?;
        let session = verification::find_for_company(
            &self.state.lanes,
            &company.company_id,
            company.livemode(),
            &verification_id.0,
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::SessionNotFound, "Verification session not found")
        })?;
        Ok(Success(VerificationStatusResponse::at(session, Utc::now())))
    }
}

/// A refusal by an abuse control, counted (metric and the company's summary) before it is
/// answered; a failure to count is logged, never the answer.
async fn refused(
    state: &AppState,
    company: &AuthenticatedCompany,
    reason: RefusalReason,
    err: ApiError,
) -> ApiError {
    state.metrics.initiation_refused(reason.as_str());
    if let Err(e) =
        refusals::record(&state.db, &company.company_id, company.livemode(), reason).await
    {
        tracing::warn!(error = %e, reason = reason.as_str(), "could not count a refusal");
    }
    err
}

/// The initiate request's own checks, before any limit is counted: its company, its number,
/// and the company's allowed countries.
fn initiate_input(
    company: &AuthenticatedCompany,
    req: &InitiateVerificationRequest,
) -> Result<MobileNumber, InitiateInput> {
    if req.company_id != company.company_id {
        let err = ApiError::new(ErrorCode::CompanyNotFound, "Company not found");
        return Err(InitiateInput::Invalid(err));
    }
    let number = parse_mobile_number(&req.mobile_number)
        .map_err(|e| InitiateInput::Invalid(ApiError::invalid_number("mobileNumber", &e)))?;
    let allowed = &company.overrides.allowed_countries;
    if !countries::allows(allowed, &number) {
        return Err(InitiateInput::CountryNotAllowed(ApiError::new(
            ErrorCode::CountryNotAllowed,
            format!(
                "This number is of region {}, which your company does not verify \
                 (allowedCountries: {})",
                number.region(),
                allowed.join(", ")
            ),
        )));
    }
    Ok(number)
}

impl VerificationApi {
    /// An initiate's error: a block or a deny cooldown is counted as a refusal (metrics, the
    /// summary); any other error passes through.
    async fn refused_by_holder(
        &self,
        company: &AuthenticatedCompany,
        e: VerificationError,
    ) -> ApiError {
        let reason = match e {
            VerificationError::BlockedByUser => RefusalReason::BlockedByUser,
            VerificationError::RecentlyDenied { .. } => RefusalReason::RecentlyDenied,
            other => return ApiError::from(other),
        };
        refused(&self.state, company, reason, ApiError::from(e)).await
    }

    /// Initiate's answer for a session made or replayed.
    fn initiated(
        &self,
        company: &AuthenticatedCompany,
        initiated: verification::Initiated,
    ) -> Success<InitiateVerificationResponse> {
        let config = &self.state.config;
        // The outcome counters are about real verifications: test mode's stay out of them.
        if company.livemode() {
            self.state.metrics.verification(if initiated.replayed {
                "replayed"
            } else {
                "initiated"
            });
        }
        let s = initiated.session;
        Success(InitiateVerificationResponse {
            status: "success".into(),
            message: "Verification initiated".into(),
            deep_link_url: verification::deep_link(
                &config.deep_link_base,
                &s.mobile_number,
                &s.verification_id,
            ),
            verification_id: s.verification_id,
            mobile_number: s.mobile_number,
            expires_at: s.expires_at.into(),
            match_code: s.match_code,
        })
    }
}
