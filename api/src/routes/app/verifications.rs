//! The TrueNumber app's view: `GET /app/verifications/{verificationId}` (the consent screen)
//! and `GET /app/verifications?status=pending` (a number's pending requests).
//!
//! Live sessions only, and only with a token bound to the session's number (`phone_number`,
//! PRODUCT.md "App identity and number binding"); the match code is never shown here, only
//! whether number matching is on.

use chrono::Utc;
use poem_openapi::{
    Enum, Object, OpenApi,
    param::{Path, Query},
};
use truenumber_core::{
    error_code::ErrorCode,
    verification::app_view::{self, AppSession},
};

use crate::{
    error::{ApiError, db_error},
    responses::{ErrorDoc, Failure, OperationErrors, Success, SuccessBody},
    routes::{
        ApiTags,
        company::{SYSTEM_ERROR, UNAVAILABLE},
        verification::flow::{VerificationStatus, token_binding},
    },
    security::AppAuth,
    state::AppState,
    timestamp::Timestamp,
};

/// A session as the app's consent screen shows it.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AppVerification {
    /// The session id.
    pub verification_id: String,
    /// Who is asking: the company's id (what `PUT /app/blocked-companies/{companyId}` blocks).
    pub company_id: String,
    /// Who is asking: the company's name.
    pub company_name: String,
    /// The number being verified, E.164.
    pub mobile_number: String,
    // Documented on the type, so the schema is a plain `$ref`.
    pub status: VerificationStatus,
    /// When the session expires (RFC 3339, UTC).
    pub expires_at: Timestamp,
    /// Whether the user must pick the two digits the company shows (send them as
    /// `matchCode` with submit).
    pub number_matching: bool,
}

impl AppVerification {
    fn at(s: AppSession, now: chrono::DateTime<Utc>) -> Self {
        Self {
            status: s.status_at(now).into(),
            expires_at: s.expires_at.into(),
            verification_id: s.verification_id,
            company_id: s.company_id,
            company_name: s.company_name,
            mobile_number: s.mobile_number,
            number_matching: s.number_matching,
        }
    }
}

impl SuccessBody for AppVerification {
    const DESCRIPTION: &'static str = "The session.";
    const RATE_LIMITED: bool = false;
}

/// A number's pending requests.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AppVerificationList {
    /// Newest first, at most 20.
    pub data: Vec<AppVerification>,
}

impl SuccessBody for AppVerificationList {
    const DESCRIPTION: &'static str = "The pending requests for the token's number.";
    const RATE_LIMITED: bool = false;
}

/// Which sessions the app lists: only `pending` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AppListStatus {
    /// Waiting for the user, not yet expired.
    Pending,
}

const UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid or expired app token.",
);

/// The error statuses of the consent view.
#[derive(Debug)]
pub struct ViewErrors;

impl OperationErrors for ViewErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `verificationId` out of bounds."),
        UNAUTHORIZED,
        ErrorDoc::before_limiter(
            403,
            "`NUMBER_BINDING_REQUIRED`: the token carries no verified `phone_number`.",
        ),
        ErrorDoc::before_limiter(
            404,
            "`SESSION_NOT_FOUND`: unknown, a test-mode session, or another number's session.",
        ),
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of the pending list.
#[derive(Debug)]
pub struct ListErrors;

impl OperationErrors for ListErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: an unknown `status`."),
        UNAUTHORIZED,
        ErrorDoc::before_limiter(
            403,
            "`NUMBER_BINDING_REQUIRED`: the token carries no verified `phone_number`.",
        ),
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The app's endpoints.
#[derive(Debug)]
pub struct AppApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/app/verifications", tag = "ApiTags::App")]
impl AppApi {
    /// Show a verification request (TrueNumber app)
    ///
    /// What the consent screen shows: who is asking, for which number, until when, and
    /// whether the user must pick a match code. Only with a token bound to the session's
    /// number; test-mode sessions are never shown.
    #[oai(
        path = "/:verificationId",
        method = "get",
        operation_id = "getAppVerification"
    )]
    async fn get(
        &self,
        AppAuth(claims): AppAuth,
        /// The session id from the deep link or the pending list.
        #[oai(name = "verificationId", validator(min_length = 1, max_length = 64))]
        verification_id: Path<String>,
    ) -> Result<Success<AppVerification>, Failure<ViewErrors>> {
        let binding = token_binding(&self.state, &claims)?;
        let session = app_view::find(&self.state.lanes, &verification_id.0, binding.number())
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                ApiError::new(ErrorCode::SessionNotFound, "Verification session not found")
            })?;
        Ok(Success(AppVerification::at(session, Utc::now())))
    }

    /// List pending verification requests (TrueNumber app)
    ///
    /// The pending, unexpired requests for the token's number (it must carry a
    /// `phone_number` claim) across companies, newest first, at most 20: how the app shows
    /// requests without the deep link.
    #[oai(path = "/", method = "get", operation_id = "listAppVerifications")]
    async fn list(
        &self,
        AppAuth(claims): AppAuth,
        /// Only `pending`, the default (the app lists nothing else).
        status: Query<Option<AppListStatus>>,
    ) -> Result<Success<AppVerificationList>, Failure<ListErrors>> {
        let _ = status;
        // Without a number there is nothing to list, development switch or not.
        let binding = token_binding(&self.state, &claims)?;
        let Some(number) = binding.number() else {
            return Err(ApiError::new(
                ErrorCode::NumberBindingRequired,
                "Listing needs an app token bound to a number (phone_number claim)",
            )
            .into());
        };
        let rows = app_view::pending_for_number(&self.state.lanes, number)
            .await
            .map_err(db_error)?;
        let now = Utc::now();
        Ok(Success(AppVerificationList {
            data: rows
                .into_iter()
                .map(|s| AppVerification::at(s, now))
                .collect(),
        }))
    }
}
