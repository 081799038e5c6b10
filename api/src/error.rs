//! The one error type of the HTTP layer and its JSON shape.
//!
//! Handlers return [`ApiError`] (through [`crate::responses::Failure`], which lists each
//! operation's statuses in the document). Turning it into a response is pure: the outermost
//! middleware does it with the request id, and logs the cause once; bodies carry only the
//! public message.

use poem::{Response, http::StatusCode};
use poem_openapi::{Enum, Object};
use truenumber_core::{
    companies::api_keys::AuthError, error_code::ErrorCode, phone::PhoneError,
    verification::VerificationError,
};

use crate::timestamp::Timestamp;

/// `error`, or `failed` where a submitted verification did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ErrorStatus {
    /// The request was refused.
    Error,
    /// The submitted verification did not succeed (submit only).
    Failed,
}

/// The error body of every non-2xx response.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Error", rename_all = "camelCase")]
pub struct ErrorBody {
    // Documented on the type, so the schema is a plain `$ref`.
    status: ErrorStatus,
    /// A human-readable explanation (safe to show; never internals).
    pub message: String,
    /// Machine-readable code, e.g. `INVALID_NUMBER`, `SESSION_NOT_FOUND`.
    pub code: String,
    /// When the error happened (RFC 3339, UTC).
    pub timestamp: Timestamp,
    /// The request id, also in the `X-Request-Id` header; quote it to support.
    pub request_id: String,
}

/// A public error: a code, a safe message, and (for the log only) a cause.
#[derive(Debug)]
pub struct ApiError {
    /// The public code (decides the HTTP status).
    pub code: ErrorCode,
    /// The public message.
    pub message: String,
    /// `"failed"` instead of `"error"` (submit outcomes, per the API document).
    pub failed: bool,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// The internal cause, logged by the middleware, never sent.
    pub cause: Option<String>,
    /// `Allow` for a 405.
    pub allow: Option<poem::http::HeaderValue>,
    /// The request's body was not (wholly) read, so the connection cannot carry another
    /// request: the response says `Connection: close` (and hyper closes it after writing).
    pub close_connection: bool,
}

impl ApiError {
    /// An error with a code and message (a 503 says to retry in 5 s unless told otherwise).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            failed: false,
            retry_after: (code == ErrorCode::ServiceUnavailable).then_some(5),
            cause: None,
            allow: None,
            close_connection: false,
        }
    }

    /// `INVALID_REQUEST` naming the field at fault.
    pub fn invalid_request(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidRequest,
            format!("Invalid request: {field} {problem}"),
        )
    }

    /// `INVALID_NUMBER` naming the field that holds the number.
    pub fn invalid_number(field: &str, problem: &PhoneError) -> Self {
        Self::new(ErrorCode::InvalidNumber, format!("{field} {problem}"))
    }

    /// A 500 whose cause is logged and whose message says nothing of it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            ..Self::new(ErrorCode::SystemError, "An internal error occurred")
        }
    }

    /// A 503 for a dependency that did not answer.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(cause.to_string()),
            retry_after: Some(5),
            ..Self::new(
                ErrorCode::ServiceUnavailable,
                format!("{what} is temporarily unavailable; retry shortly"),
            )
        }
    }

    /// Marks the body `"status":"failed"`.
    pub fn failed(mut self) -> Self {
        self.failed = true;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body for the request `request_id`, stamped with the current time.
    pub fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            status: if self.failed {
                ErrorStatus::Failed
            } else {
                ErrorStatus::Error
            },
            message: self.message.clone(),
            code: self.code.as_str().to_owned(),
            timestamp: chrono::Utc::now().into(),
            request_id: request_id.to_owned(),
        }
    }

    /// The complete JSON response (with `Retry-After` where it applies).
    pub fn to_response(&self, request_id: &str) -> Response {
        let body = poem_openapi::types::ToJSON::to_json(&self.body(request_id))
            .unwrap_or_default()
            .to_string();
        let builder = Response::builder()
            .status(self.status())
            .content_type("application/json; charset=utf-8");
        let builder = match self.retry_after {
            Some(secs) => builder.header(poem::http::header::RETRY_AFTER, secs),
            None => builder,
        };
        let builder = if self.close_connection {
            builder.header(poem::http::header::CONNECTION, "close")
        } else {
            builder
        };
        builder.body(body)
    }

    /// Converts any error poem or poem-openapi produced before a handler ran (unparseable
    /// JSON, a missing field, a failed security check) into the public shape.
    pub fn from_poem(err: poem::Error) -> Self {
        if err.is::<ApiError>() {
            if let Ok(api) = err.downcast::<ApiError>() {
                return api;
            }
            return Self::internal("ApiError downcast failed");
        }
        if err.is::<poem_openapi::error::AuthorizationError>() {
            return Self::new(
                ErrorCode::Unauthorized,
                "Missing or malformed Authorization header",
            );
        }
        let status = err.status();
        let code = ErrorCode::for_status(status.as_u16());
        match code {
            ErrorCode::InvalidRequest => Self::new(code, clean_parse_message(&err.to_string())),
            ErrorCode::SystemError => Self::internal(err.to_string()),
            _ => Self::new(
                code,
                status.canonical_reason().unwrap_or("Error").to_owned(),
            ),
        }
    }
}

/// Turns poem-openapi's parse messages into one readable sentence that names the field.
fn clean_parse_message(raw: &str) -> String {
    let msg = raw
        .trim_start_matches("parse request payload error: ")
        .trim_start_matches("failed to parse parameter ");
    let msg = msg.replace("(occurred while parsing \"", "(in \"");
    if msg.contains("Content-Type") || msg.contains("content type") {
        return "Content-Type must be application/json".into();
    }
    if msg.is_empty() {
        "Invalid request".into()
    } else {
        format!("Invalid request: {msg}")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidKey => {
                Self::new(ErrorCode::Unauthorized, "Invalid or revoked API key")
            }
            AuthError::CompanyInactive => {
                Self::new(ErrorCode::CompanyInactive, "This company is not active")
            }
            AuthError::Db(db) => Self::unavailable("The database", db),
            AuthError::Internal(cause) => Self::internal(cause),
        }
    }
}

impl From<VerificationError> for ApiError {
    fn from(e: VerificationError) -> Self {
        match e {
            VerificationError::SessionNotFound => {
                Self::new(ErrorCode::SessionNotFound, "Verification session not found")
            }
            VerificationError::SessionExpired => Self::new(
                ErrorCode::SessionExpired,
                "Verification session has expired",
            ),
            VerificationError::AlreadyCompleted(status) => Self::new(
                ErrorCode::SessionAlreadyCompleted,
                format!("Verification session is already {}", status.as_str()),
            ),
            VerificationError::NumberMismatch => Self::new(
                ErrorCode::NumberMismatch,
                "Verification failed: the confirmed number does not match",
            ),
            VerificationError::MatchCodeMismatch => Self::new(
                ErrorCode::MatchCodeMismatch,
                "Verification failed: the match code is wrong or missing",
            ),
            VerificationError::DuplicateRequest => Self::new(
                ErrorCode::DuplicateRequest,
                "requestId was already used with a different mobileNumber or numberMatching",
            ),
            VerificationError::RequestFinished {
                verification_id,
                status,
            } => Self::new(
                ErrorCode::DuplicateRequest,
                format!(
                    "requestId was already used by verification {verification_id}, which is {}; \
                     use a new requestId to verify this number again",
                    status.as_str()
                ),
            ),
            VerificationError::CompanyInactive => Self::new(
                ErrorCode::CompanyInactive,
                "The company that requested this verification is not active",
            ),
            VerificationError::BlockedByUser => Self::new(
                ErrorCode::BlockedByUser,
                "The holder of this number has blocked your company in the TrueNumber app",
            ),
            VerificationError::RecentlyDenied { until } => Self::new(
                ErrorCode::RecentlyDenied,
                format!(
                    "The holder of this number said \"not me\" to your company recently; you \
                     may ask again after {}",
                    crate::timestamp::Timestamp::from(until)
                ),
            ),
            VerificationError::Db(db) => db_error(db),
            VerificationError::Random(r) => Self::internal(r),
        }
    }
}

/// A database error: 503 when the database cannot be reached, else 500.
pub fn db_error(e: sea_orm::DbErr) -> ApiError {
    match &e {
        sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
            ApiError::unavailable("The database", e)
        }
        _ => ApiError::internal(e),
    }
}
