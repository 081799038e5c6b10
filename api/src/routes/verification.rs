//! `POST /verification/initiate`, `POST /verification/submit`,
//! `GET /verification/status/{verificationId}`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use truenumber_core::{
    error_code::ErrorCode,
    phone::parse_mobile_number,
    verification::{self, SessionStatus, Submission},
};

use crate::{
    error::{ApiError, ErrorBody, db_error},
    impl_api_errors,
    json_body::{JsonBody, Validate, check_len},
    rate_limit::{Limit, WhenUnavailable, enforce},
    routes::ApiTags,
    security::{AppAuth, CompanyAuth},
    state::AppState,
};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Applies the identifier rules of `truenumber_core::text` (they reach logs and webhooks).
fn printable(field: &str, value: &str) -> Result<(), ApiError> {
    truenumber_core::text::check_identifier(value).map_err(|why| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Invalid request: {field} {why}"),
        )
    })
}

/// Body of `POST /verification/initiate`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct InitiateVerificationRequest {
    /// The mobile number to verify, E.164 (`+447911123456`); spaces, `-`, `.` and `()` are
    /// ignored.
    #[oai(validator(max_length = 64))]
    pub mobile_number: String,
    /// Your company id; must be the one your API key belongs to.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub company_id: String,
    /// Your own id for this request. Repeating it returns the same session (idempotency).
    #[oai(validator(min_length = 1, max_length = 255))]
    pub request_id: String,
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
    pub expires_at: String,
}

/// Responses of initiate.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "initiate_bad_request")]
#[oai(header(
    name = "RateLimit",
    ty = "String",
    description = "What is left of the limit (IETF httpapi draft): policy name, r = remaining, t = seconds until one more is allowed. A `RateLimit-Policy` header names the limit: policy name, q = quota, w = window in seconds."
))]
pub enum InitiateResponse {
    /// The session was created, or this `requestId` was seen before with the same number and
    /// its session is returned again.
    #[oai(status = 200)]
    Ok(Json<InitiateVerificationResponse>),
    /// `INVALID_REQUEST` (malformed body) or `INVALID_NUMBER`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `UNAUTHORIZED`: missing, invalid or revoked API key.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `COMPANY_INACTIVE`.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// `COMPANY_NOT_FOUND`: `companyId` is not the company of this API key.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `DUPLICATE_REQUEST`: this `requestId` was used with a different number.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `PAYLOAD_TOO_LARGE`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `RATE_LIMIT_EXCEEDED`; see `Retry-After`.
    #[oai(
        status = 429,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds until a retry can succeed"
        )
    )]
    TooManyRequests(Json<ErrorBody>),
    /// `SYSTEM_ERROR`.
    #[oai(status = 500)]
    SystemError(Json<ErrorBody>),
    /// `SERVICE_UNAVAILABLE`: a dependency is down; see `Retry-After`.
    #[oai(
        status = 503,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds to wait before retrying"
        )
    )]
    Unavailable(Json<ErrorBody>),
}

impl_api_errors!(InitiateResponse, initiate_bad_request, {
    400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound,
    409 => Conflict, 413 => PayloadTooLarge, 429 => TooManyRequests, 500 => SystemError,
    503 => Unavailable,
});

/// Body of `POST /verification/submit`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct SubmitVerificationRequest {
    /// The session id from the deep link.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub verification_id: String,
    /// The number the user saw and confirmed, E.164.
    #[oai(validator(max_length = 64))]
    pub user_confirmed_number: String,
    /// The app user; must equal the app token's `sub`.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub app_user_id: String,
}

impl Validate for SubmitVerificationRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("verificationId", &self.verification_id, 1, 64)?;
        check_len("userConfirmedNumber", &self.user_confirmed_number, 0, 64)?;
        check_len("appUserId", &self.app_user_id, 1, 255)?;
        printable("appUserId", &self.app_user_id)
    }
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
    pub verified_at: String,
}

/// Responses of submit. Failures of the verification itself carry `"status":"failed"`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "submit_bad_request")]
#[oai(header(
    name = "RateLimit",
    ty = "String",
    description = "What is left of the limit (IETF httpapi draft): policy name, r = remaining, t = seconds until one more is allowed. A `RateLimit-Policy` header names the limit: policy name, q = quota, w = window in seconds."
))]
pub enum SubmitResponse {
    /// Verified.
    #[oai(status = 200)]
    Ok(Json<SubmitVerificationResponse>),
    /// `INVALID_REQUEST`, `INVALID_NUMBER`, or `NUMBER_MISMATCH` (the session is now failed).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `UNAUTHORIZED`: missing, invalid or expired app token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `FORBIDDEN`: the token's `sub` is not `appUserId`; `COMPANY_INACTIVE`: the company that
    /// requested the verification is deactivated.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// `SESSION_NOT_FOUND`.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `SESSION_ALREADY_COMPLETED`: verified or failed before (replay).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `SESSION_EXPIRED`.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// `PAYLOAD_TOO_LARGE`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// `RATE_LIMIT_EXCEEDED`; see `Retry-After`.
    #[oai(
        status = 429,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds until a retry can succeed"
        )
    )]
    TooManyRequests(Json<ErrorBody>),
    /// `SYSTEM_ERROR`.
    #[oai(status = 500)]
    SystemError(Json<ErrorBody>),
    /// `SERVICE_UNAVAILABLE`.
    #[oai(
        status = 503,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds to wait before retrying"
        )
    )]
    Unavailable(Json<ErrorBody>),
}

impl_api_errors!(SubmitResponse, submit_bad_request, {
    400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound,
    409 => Conflict, 410 => Gone, 413 => PayloadTooLarge, 429 => TooManyRequests,
    500 => SystemError, 503 => Unavailable,
});

/// A session's status as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum VerificationStatus {
    /// Waiting for the user.
    Pending,
    /// Confirmed.
    Verified,
    /// The user confirmed a different number.
    Failed,
    /// Not confirmed in time.
    Expired,
}

impl From<SessionStatus> for VerificationStatus {
    fn from(s: SessionStatus) -> Self {
        match s {
            SessionStatus::Pending => Self::Pending,
            SessionStatus::Verified => Self::Verified,
            SessionStatus::Failed => Self::Failed,
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
    /// `pending`, `verified`, `failed` or `expired` (a pending session past `expiresAt` reads
    /// `expired`).
    pub status: VerificationStatus,
    /// E.164.
    pub mobile_number: String,
    /// When verified; absent otherwise.
    pub verified_at: Option<String>,
    /// Created (RFC 3339, UTC).
    pub created_at: String,
    /// Expiry (RFC 3339, UTC).
    pub expires_at: String,
    /// Your `requestId`.
    pub request_id: String,
}

/// Responses of status.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "status_bad_request")]
#[oai(header(
    name = "RateLimit",
    ty = "String",
    description = "What is left of the limit (IETF httpapi draft): policy name, r = remaining, t = seconds until one more is allowed. A `RateLimit-Policy` header names the limit: policy name, q = quota, w = window in seconds."
))]
pub enum StatusResponse {
    /// The session.
    #[oai(status = 200)]
    Ok(Json<VerificationStatusResponse>),
    /// `INVALID_REQUEST`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// `UNAUTHORIZED`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `COMPANY_INACTIVE`.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// `SESSION_NOT_FOUND` (also for another company's session).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `RATE_LIMIT_EXCEEDED`; see `Retry-After`.
    #[oai(
        status = 429,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds until a retry can succeed"
        )
    )]
    TooManyRequests(Json<ErrorBody>),
    /// `SYSTEM_ERROR`.
    #[oai(status = 500)]
    SystemError(Json<ErrorBody>),
    /// `SERVICE_UNAVAILABLE`.
    #[oai(
        status = 503,
        header(
            name = "Retry-After",
            ty = "u64",
            description = "Seconds to wait before retrying"
        )
    )]
    Unavailable(Json<ErrorBody>),
}

impl_api_errors!(StatusResponse, status_bad_request, {
    400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound,
    429 => TooManyRequests, 500 => SystemError, 503 => Unavailable,
});

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
        auth: CompanyAuth,
        body: JsonBody<InitiateVerificationRequest>,
    ) -> InitiateResponse {
        self.initiate_inner(auth, body.0)
            .await
            .unwrap_or_else(InitiateResponse::from)
    }

    /// Confirm a verification (TrueNumber app)
    ///
    /// Called by the TrueNumber app with the number the user confirmed. Exactly one submit
    /// of a session can succeed or fail it; any later one is `SESSION_ALREADY_COMPLETED`.
    #[oai(path = "/submit", method = "post", operation_id = "submitVerification")]
    async fn submit(
        &self,
        auth: AppAuth,
        body: JsonBody<SubmitVerificationRequest>,
    ) -> SubmitResponse {
        self.submit_inner(auth, body.0)
            .await
            .unwrap_or_else(SubmitResponse::from)
    }

    /// Read a verification's status
    #[oai(
        path = "/status/:verificationId",
        method = "get",
        operation_id = "getVerificationStatus"
    )]
    async fn status(
        &self,
        auth: CompanyAuth,
        /// The session id from initiate.
        #[oai(name = "verificationId", validator(min_length = 1, max_length = 64))]
        verification_id: Path<String>,
    ) -> StatusResponse {
        self.status_inner(auth, &verification_id.0)
            .await
            .unwrap_or_else(StatusResponse::from)
    }
}

impl VerificationApi {
    async fn initiate_inner(
        &self,
        CompanyAuth(company): CompanyAuth,
        req: InitiateVerificationRequest,
    ) -> Result<InitiateResponse, ApiError> {
        let limit = Limit {
            name: "initiate",
            subject: &company.company_id,
            limit: company
                .rate_limit_initiate_per_hour
                .unwrap_or(self.state.config.rate_limit_initiate_per_hour),
            window: HOUR,
        };
        enforce(&self.state, limit, WhenUnavailable::FailClosed).await?;
        if req.company_id != company.company_id {
            return Err(ApiError::new(
                ErrorCode::CompanyNotFound,
                "Company not found",
            ));
        }
        let number = parse_mobile_number(&req.mobile_number)?;
        let config = &self.state.config;
        let initiated = verification::initiate(
            &self.state.lanes,
            &company.company_id,
            &req.request_id,
            &number,
            config.verification_ttl,
        )
        .await?;
        self.state.metrics.verification(if initiated.replayed {
            "replayed"
        } else {
            "initiated"
        });
        let s = initiated.session;
        Ok(InitiateResponse::Ok(Json(InitiateVerificationResponse {
            status: "success".into(),
            message: "Verification initiated".into(),
            deep_link_url: verification::deep_link(
                &config.deep_link_base,
                &s.mobile_number,
                &s.verification_id,
            ),
            verification_id: s.verification_id,
            mobile_number: s.mobile_number,
            expires_at: rfc3339(s.expires_at),
        })))
    }

    async fn submit_inner(
        &self,
        AppAuth(claims): AppAuth,
        req: SubmitVerificationRequest,
    ) -> Result<SubmitResponse, ApiError> {
        let limit = Limit {
            name: "submit",
            subject: &req.verification_id,
            limit: self.state.config.rate_limit_submit_per_minute,
            window: MINUTE,
        };
        enforce(&self.state, limit, WhenUnavailable::FailOpen).await?;
        if claims.sub != req.app_user_id {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "The app token was not issued to this appUserId",
            ));
        }
        let confirmed = parse_mobile_number(&req.user_confirmed_number)
            .map_err(|e| ApiError::from(e).failed())?;
        // A bound number in another format still compares as E.164; one that cannot be
        // parsed can never match.
        let token_number = claims.phone_number.as_deref().map(|n| {
            parse_mobile_number(n).map_or_else(|_| String::from("unparseable"), |m| m.into_string())
        });
        let done = verification::submit(
            &self.state.lanes,
            Submission {
                verification_id: &req.verification_id,
                confirmed_number: &confirmed,
                token_number: token_number.as_deref(),
                app_user_id: &req.app_user_id,
            },
        )
        .await
        .map_err(|e| {
            // An inactive company or a database failure says nothing about the verification.
            let not_an_outcome = matches!(
                e,
                verification::VerificationError::Db(_)
                    | verification::VerificationError::CompanyInactive
            );
            let err = ApiError::from(e);
            if not_an_outcome { err } else { err.failed() }
        })?;
        // The event is committed; hand it to RabbitMQ without making the app wait for the
        // broker's confirm (the worker's relay publishes it if this does not).
        self.state.publisher.publish_soon(done.event_id);
        let session = done.session;
        self.state
            .metrics
            .verification(session.stored_status.as_str());
        if session.stored_status != SessionStatus::Verified {
            return Err(ApiError::from(verification::VerificationError::NumberMismatch).failed());
        }
        let verified_at = session
            .verified_at
            .ok_or_else(|| ApiError::internal("verified session without verified_at"))?;
        Ok(SubmitResponse::Ok(Json(SubmitVerificationResponse {
            status: "success".into(),
            message: "Mobile number verified successfully!".into(),
            verification_id: session.verification_id,
            verified_at: rfc3339(verified_at),
        })))
    }

    async fn status_inner(
        &self,
        CompanyAuth(company): CompanyAuth,
        verification_id: &str,
    ) -> Result<StatusResponse, ApiError> {
        let limit = Limit {
            name: "status",
            subject: &company.company_id,
            limit: company
                .rate_limit_status_per_hour
                .unwrap_or(self.state.config.rate_limit_status_per_hour),
            window: HOUR,
        };
        enforce(&self.state, limit, WhenUnavailable::FailOpen).await?;
        let session =
            verification::find_for_company(&self.state.lanes, &company.company_id, verification_id)
                .await
                .map_err(db_error)?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::SessionNotFound, "Verification session not found")
                })?;
        Ok(StatusResponse::Ok(Json(VerificationStatusResponse {
            status: session.status_at(Utc::now()).into(),
            verified_at: session.verified_at.map(rfc3339),
            created_at: rfc3339(session.created_at),
            expires_at: rfc3339(session.expires_at),
            verification_id: session.verification_id,
            mobile_number: session.mobile_number,
            request_id: session.request_id,
        })))
    }
}
