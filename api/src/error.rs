//! The one error type of the HTTP layer and its JSON shape.
//!
//! Handlers return [`ApiError`]; each operation's response enum lists the statuses it can
//! produce (so they all appear in the OpenAPI document) and converts from `ApiError` with
//! [`impl_api_errors!`]. Causes are logged once, by the request middleware; bodies carry only
//! the public message.

use chrono::{SecondsFormat, Utc};
use poem::{Response, http::StatusCode};
use poem_openapi::Object;
use truenumber_core::{
    auth::AuthError, error_code::ErrorCode, phone::PhoneError, verification::VerificationError,
};

use crate::request_context;

/// The error body of every non-2xx response.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Error", rename_all = "camelCase")]
pub struct ErrorBody {
    /// `error`; `failed` when a submitted verification did not succeed.
    pub status: String,
    /// A human-readable explanation (safe to show; never internals).
    pub message: String,
    /// Machine-readable code, e.g. `INVALID_NUMBER`, `SESSION_NOT_FOUND`.
    pub code: String,
    /// When the error happened (RFC 3339, UTC).
    pub timestamp: String,
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
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            failed: false,
            retry_after: None,
            cause: None,
        }
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

    /// The JSON body, stamped with the current request id and time.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            status: if self.failed { "failed" } else { "error" }.to_owned(),
            message: self.message.clone(),
            code: self.code.as_str().to_owned(),
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            request_id: request_context::request_id(),
        }
    }

    /// Hands the cause, code and `Retry-After` to the request context (the middleware logs
    /// the cause once and sets the header), and returns the public body.
    pub fn into_body(self) -> ErrorBody {
        let body = self.body();
        request_context::record_error(self.code, self.cause, self.retry_after);
        body
    }

    /// A complete JSON response, for errors raised outside any operation (unknown route,
    /// oversized body, a panic).
    pub fn into_response(self) -> Response {
        let status = self.status();
        let body = poem_openapi::types::ToJSON::to_json(&self.into_body()).unwrap_or_default();
        Response::builder()
            .status(status)
            .content_type("application/json; charset=utf-8")
            .body(body.to_string())
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

impl From<PhoneError> for ApiError {
    fn from(e: PhoneError) -> Self {
        Self::new(ErrorCode::InvalidNumber, e.to_string())
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
        let public = e.to_string();
        match e {
            VerificationError::SessionNotFound => {
                Self::new(ErrorCode::SessionNotFound, "Verification session not found")
            }
            VerificationError::SessionExpired => Self::new(
                ErrorCode::SessionExpired,
                "Verification session has expired",
            ),
            VerificationError::AlreadyCompleted(_) => {
                Self::new(ErrorCode::SessionAlreadyCompleted, capitalise(&public))
            }
            VerificationError::NumberMismatch => Self::new(
                ErrorCode::NumberMismatch,
                "Verification failed: the confirmed number does not match",
            ),
            VerificationError::DuplicateRequest => Self::new(
                ErrorCode::DuplicateRequest,
                "requestId was already used with a different mobileNumber",
            ),
            VerificationError::CompanyInactive => Self::new(
                ErrorCode::CompanyInactive,
                "The company that requested this verification is not active",
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

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Implements `From<ApiError>` and the bad-request handler for an operation's response enum.
/// Each listed variant is `Variant(Json<ErrorBody>)` at its status; the enum must also have a
/// `SystemError` variant, which answers for any status it does not list.
#[macro_export]
macro_rules! impl_api_errors {
    ($ty:ident, $handler:ident, { $($status:literal => $variant:ident),+ $(,)? }) => {
        impl From<$crate::error::ApiError> for $ty {
            fn from(e: $crate::error::ApiError) -> Self {
                let status = e.code.http_status();
                match status {
                    $($status => $ty::$variant(poem_openapi::payload::Json(e.into_body())),)+
                    _ => $ty::SystemError(poem_openapi::payload::Json(
                        $crate::error::ApiError::internal(format!("{e} has no variant in {}", stringify!($ty))).into_body(),
                    )),
                }
            }
        }

        fn $handler(err: poem::Error) -> $ty {
            $ty::from($crate::error::ApiError::from_poem(err))
        }
    };
}
