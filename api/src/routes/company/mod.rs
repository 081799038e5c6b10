//! Company self-service under `/company` (scope `management`), one file per resource: the
//! company's profile ([`profile`]), its webhook endpoint and signing secret ([`webhook`]), its
//! API keys ([`api_keys`]) and its webhook deliveries ([`deliveries`]).
//!
//! Every id in a path is looked up together with the key's company, so another company's id
//! is a 404, exactly as an unknown one. None of these operations counts against a rate limit.

pub mod api_keys;
pub mod deliveries;
pub mod profile;
pub mod webhook;

use truenumber_core::{
    companies::api_keys::{AuthenticatedCompany, Scope},
    companies::{self, CompanyError},
    error_code::ErrorCode,
};

use crate::{
    error::{ApiError, db_error},
    responses::{ErrorDoc, OperationErrors},
    security::require_scope,
    state::AppState,
};

pub(crate) const UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
);
pub(crate) const FORBIDDEN: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`COMPANY_INACTIVE`, or `INSUFFICIENT_SCOPE`: the key lacks the `management` scope.",
);
/// 403 of an operation only a live key may call.
pub(crate) const FORBIDDEN_TO_TEST_KEYS: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`COMPANY_INACTIVE`, `INSUFFICIENT_SCOPE` (the key lacks the `management` scope), or \
     `LIVE_MODE_ONLY`: a test key cannot change company-wide settings or create live keys.",
);
pub(crate) const SYSTEM_ERROR: ErrorDoc = ErrorDoc::before_limiter(
    500,
    "`SYSTEM_ERROR`: a bug; the details are only in the log, under the request id.",
);
pub(crate) const UNAVAILABLE: ErrorDoc = ErrorDoc::before_limiter(
    503,
    "`SERVICE_UNAVAILABLE`: the database is unreachable; see `Retry-After`.",
);

/// The error statuses of the reads (`GET /company`, `GET /company/api-keys`).
#[derive(Debug)]
pub struct ReadErrors;

impl OperationErrors for ReadErrors {
    const STATUSES: &'static [ErrorDoc] = &[UNAUTHORIZED, FORBIDDEN, SYSTEM_ERROR, UNAVAILABLE];
}

/// The error statuses of the bodiless operations a live key only may call.
#[derive(Debug)]
pub struct LiveOnlyErrors;

impl OperationErrors for LiveOnlyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        UNAUTHORIZED,
        FORBIDDEN_TO_TEST_KEYS,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

pub(crate) fn company_error(e: CompanyError) -> ApiError {
    match e {
        CompanyError::KeyNotFound(_) => {
            ApiError::new(ErrorCode::ApiKeyNotFound, "API key not found")
        }
        CompanyError::KeyRevoked(_) => ApiError::new(
            ErrorCode::ApiKeyRevoked,
            "This API key is revoked or expired; create a new one instead",
        ),
        CompanyError::KeyBudgetReached => ApiError::new(
            ErrorCode::ApiKeyLimitReached,
            format!(
                "Your company already holds {} usable API keys; revoke one first",
                companies::MAX_USABLE_KEYS
            ),
        ),
        CompanyError::Invalid(why) => ApiError::new(ErrorCode::InvalidRequest, why),
        CompanyError::Db(db) => db_error(db),
        // The key's own company vanished under it (deleted by an operator): as for a key of
        // an unknown company.
        CompanyError::NotFound(_) => ApiError::new(ErrorCode::Unauthorized, "Invalid API key"),
        other => ApiError::internal(other),
    }
}

/// Every operation here needs the `management` scope.
pub(crate) fn authorize(company: &AuthenticatedCompany) -> Result<(), ApiError> {
    require_scope(company, Scope::Management)
}

/// Company-wide settings (the webhook endpoint and its secret, live keys) change with a live
/// key only: a test key, the one that lives in CI, cannot redirect live webhooks.
pub(crate) fn require_live(company: &AuthenticatedCompany, what: &str) -> Result<(), ApiError> {
    if company.livemode() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::LiveModeOnly,
        format!("A test key cannot {what}; use a live key"),
    ))
}

/// The key's own company row.
pub(crate) async fn own_row(
    state: &AppState,
    company: &AuthenticatedCompany,
) -> Result<truenumber_entities::company::Model, ApiError> {
    companies::find_company(&state.db, &company.company_id)
        .await
        .map_err(db_error)?
        .ok_or_else(|| company_error(CompanyError::NotFound(company.company_id.clone())))
}
