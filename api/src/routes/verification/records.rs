//! A company's verifications (scope `verifications`): `GET /verifications` (filtered,
//! keyset-paginated), `GET /verifications/summary`, `DELETE /verifications/{verificationId}`.
//!
//! Listing and summarising count against the company's status limit (they are reads of the
//! same data, and a listing is up to 100 of them); erasing does not.

use chrono::{DateTime, Utc};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
};
use truenumber_core::{
    abuse::refusals,
    companies::api_keys::Scope,
    error_code::ErrorCode,
    verification::SessionStatus,
    verification::listing::{self, SessionFilter},
    webhooks::deliveries::PageAfter,
};

use crate::{
    cursor::{decode_cursor, encode_cursor},
    error::{ApiError, db_error},
    rate_limit::{Limit, enforce},
    responses::{ErrorDoc, Failure, NoContent, OperationErrors, Success, SuccessBody},
    routes::{
        ApiTags,
        verification::flow::{VerificationStatus, VerificationStatusResponse},
    },
    security::{CompanyAuth, require_scope},
    state::AppState,
    timestamp::Timestamp,
};

/// The summary's default window, and its longest.
const DEFAULT_WINDOW: chrono::Duration = chrono::Duration::days(30);
const MAX_WINDOW: chrono::Duration = chrono::Duration::days(90);

/// `GET /verifications`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct VerificationList {
    /// Newest first, each as `GET /verification/status/{verificationId}` shows it.
    pub data: Vec<VerificationStatusResponse>,
    /// Pass as `cursor` for the next page; `null` on the last page. Opaque, and stable while
    /// new sessions arrive.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl SuccessBody for VerificationList {
    const DESCRIPTION: &'static str = "A page of your verifications.";
}

/// `GET /verifications/summary`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// Start of the window (inclusive; RFC 3339, UTC).
    pub created_after: Timestamp,
    /// End of the window (exclusive; RFC 3339, UTC).
    pub created_before: Timestamp,
    /// Sessions created in the window.
    pub total: u64,
    /// Still waiting for the user.
    pub pending: u64,
    /// Confirmed.
    pub verified: u64,
    /// The user confirmed a different number (or a wrong match code).
    pub failed: u64,
    /// The user said "this is not me".
    pub denied: u64,
    /// Not confirmed in time.
    pub expired: u64,
    /// verified / (total − pending); `null` when none has finished.
    #[oai(nullable)]
    pub conversion_rate: Option<f64>,
    /// The median time from initiate to verified, in seconds; `null` when none is verified.
    #[oai(nullable)]
    pub median_seconds_to_verify: Option<f64>,
    /// Initiations the abuse controls refused in the window (counted by the hour: an hour
    /// counts when it starts in the window); these made no session.
    pub blocked: u64,
    // Documented on the type, so the schema is a plain `$ref`.
    pub blocked_by_reason: BlockedByReason,
}

/// Refused initiations by reason (the code each was answered with).
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct BlockedByReason {
    /// `NUMBER_RATE_LIMITED`: over the per-number limit.
    pub number_rate_limited: u64,
    /// `RECENTLY_DENIED`: within the cooldown after a "not me".
    pub recently_denied: u64,
    /// `BLOCKED_BY_USER`: the number's holder blocked your company.
    pub blocked_by_user: u64,
    /// `COUNTRY_NOT_ALLOWED`: a region outside your `allowedCountries`.
    pub country_not_allowed: u64,
}

impl SuccessBody for VerificationSummary {
    const DESCRIPTION: &'static str = "The window's numbers.";
}

const UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
);
const FORBIDDEN: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`COMPANY_INACTIVE`, or `INSUFFICIENT_SCOPE`: the key lacks the `verifications` scope.",
);

/// The error statuses of the listing and the summary.
#[derive(Debug)]
pub struct ReadErrors;

impl OperationErrors for ReadErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::after_limiter(
            400,
            "`INVALID_REQUEST`: a parameter is not valid (the message names it).",
        ),
        UNAUTHORIZED,
        FORBIDDEN,
        ErrorDoc::RATE_LIMITED,
        ErrorDoc::SYSTEM_ERROR,
        ErrorDoc::UNAVAILABLE,
    ];
}

/// The error statuses of erase.
#[derive(Debug)]
pub struct EraseErrors;

impl OperationErrors for EraseErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `verificationId` out of bounds."),
        UNAUTHORIZED,
        FORBIDDEN,
        ErrorDoc::before_limiter(
            404,
            "`SESSION_NOT_FOUND` (also for another company's session, or one already erased).",
        ),
        ErrorDoc::before_limiter(
            500,
            "`SYSTEM_ERROR`: a bug; the details are only in the log, under the request id.",
        ),
        ErrorDoc::before_limiter(
            503,
            "`SERVICE_UNAVAILABLE`: the database is unreachable; see `Retry-After`.",
        ),
    ];
}

/// The verifications endpoints.
#[derive(Debug)]
pub struct VerificationsApi {
    /// Shared state.
    pub state: AppState,
}

impl VerificationsApi {
    async fn limit(
        &self,
        company: &truenumber_core::companies::api_keys::AuthenticatedCompany,
    ) -> Result<(), ApiError> {
        enforce(&self.state, Limit::status(&self.state.config, company)).await
    }
}

#[OpenApi(prefix_path = "/verifications", tag = "ApiTags::Verification")]
impl VerificationsApi {
    /// List your verifications
    ///
    /// Newest first, filtered by status, `requestId` and creation time, a page at a time.
    /// Counts against the status limit.
    #[oai(path = "/", method = "get", operation_id = "listVerifications")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// Only sessions that read this status now (`expired` includes pending sessions past
        /// their expiry).
        status: Query<Option<VerificationStatus>>,
        /// Only the session of this `requestId`.
        #[oai(name = "requestId", validator(min_length = 1, max_length = 255))]
        request_id: Query<Option<String>>,
        /// Created at or after this instant (RFC 3339).
        #[oai(name = "createdAfter")]
        created_after: Query<Option<Timestamp>>,
        /// Created before this instant (RFC 3339).
        #[oai(name = "createdBefore")]
        created_before: Query<Option<Timestamp>>,
        /// Page size, 1-100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 200))]
        cursor: Query<Option<String>>,
    ) -> Result<Success<VerificationList>, Failure<ReadErrors>> {
        require_scope(&company, Scope::Verifications)?;
        self.limit(&company).await?;
        let size = limit.0.unwrap_or(20);
        if !(1..=100).contains(&size) {
            return Err(ApiError::invalid_request("limit", "must be 1 to 100").into());
        }
        let after: Option<PageAfter> = cursor.0.as_deref().map(decode_cursor).transpose()?;
        let filter = SessionFilter {
            status: status.0.map(SessionStatus::from),
            request_id: request_id.0,
            created_after: created_after.0.map(|t| t.0),
            created_before: created_before.0.map(|t| t.0),
        };
        let rows = listing::list_page(
            &self.state.db,
            &company.company_id,
            company.livemode(),
            &filter,
            u64::from(size) + 1,
            after,
        )
        .await
        .map_err(db_error)?;
        let more = rows.len() > size as usize;
        let page: Vec<_> = rows.into_iter().take(size as usize).collect();
        let next_cursor = more.then(|| page.last()).flatten().map(|last| {
            encode_cursor(PageAfter {
                created_at: last.session.created_at,
                id: last.id,
            })
        });
        let now = Utc::now();
        Ok(Success(VerificationList {
            data: page
                .into_iter()
                .map(|row| VerificationStatusResponse::at(row.session, now))
                .collect(),
            next_cursor,
        }))
    }

    /// Summarise your verifications
    ///
    /// Counts by status, the conversion rate and the median time to verify, over sessions
    /// created in a window (default the last 30 days; at most 90). Counts against the status
    /// limit.
    #[oai(
        path = "/summary",
        method = "get",
        operation_id = "summariseVerifications"
    )]
    async fn summary(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// Start of the window (RFC 3339; default 30 days before its end).
        #[oai(name = "createdAfter")]
        created_after: Query<Option<Timestamp>>,
        /// End of the window (RFC 3339; default now).
        #[oai(name = "createdBefore")]
        created_before: Query<Option<Timestamp>>,
    ) -> Result<Success<VerificationSummary>, Failure<ReadErrors>> {
        require_scope(&company, Scope::Verifications)?;
        self.limit(&company).await?;
        let to: DateTime<Utc> = created_before.0.map_or_else(Utc::now, |t| t.0);
        let from: DateTime<Utc> = created_after.0.map_or(to - DEFAULT_WINDOW, |t| t.0);
        if from >= to {
            return Err(
                ApiError::invalid_request("createdAfter", "must be before createdBefore").into(),
            );
        }
        if to - from > MAX_WINDOW {
            return Err(ApiError::invalid_request(
                "createdAfter",
                "must be at most 90 days before createdBefore",
            )
            .into());
        }
        let s = listing::summarise(
            &self.state.db,
            &company.company_id,
            company.livemode(),
            from,
            to,
        )
        .await
        .map_err(db_error)?;
        let refused = refusals::counts(
            &self.state.db,
            &company.company_id,
            company.livemode(),
            from,
            to,
        )
        .await
        .map_err(db_error)?;
        Ok(Success(VerificationSummary {
            blocked: refused.total(),
            blocked_by_reason: BlockedByReason {
                number_rate_limited: refused.number_rate_limited,
                recently_denied: refused.recently_denied,
                blocked_by_user: refused.blocked_by_user,
                country_not_allowed: refused.country_not_allowed,
            },
            created_after: from.into(),
            created_before: to.into(),
            total: s.total,
            pending: s.pending,
            verified: s.verified,
            failed: s.failed,
            denied: s.denied,
            expired: s.expired,
            conversion_rate: s.conversion_rate,
            median_seconds_to_verify: s.median_seconds_to_verify,
        }))
    }

    /// Erase a verification
    ///
    /// Deletes the session now, with its events and webhook deliveries. A pending session
    /// erased this way can no longer be submitted (404).
    #[oai(
        path = "/:verificationId",
        method = "delete",
        operation_id = "eraseVerification"
    )]
    async fn erase(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The session id.
        #[oai(name = "verificationId", validator(min_length = 1, max_length = 64))]
        verification_id: Path<String>,
    ) -> Result<NoContent, Failure<EraseErrors>> {
        require_scope(&company, Scope::Verifications)?;
        erase(&self.state, &company, &verification_id.0).await?;
        Ok(NoContent)
    }
}

/// Erases the identity's session `verification_id` (of its mode) with its events and
/// deliveries; 404 `SESSION_NOT_FOUND` for an unknown, another company's or another mode's.
pub(crate) async fn erase(
    state: &AppState,
    company: &truenumber_core::companies::api_keys::AuthenticatedCompany,
    verification_id: &str,
) -> Result<(), ApiError> {
    let erased = listing::erase(
        &state.db,
        &company.company_id,
        company.livemode(),
        verification_id,
    )
    .await
    .map_err(db_error)?;
    if !erased {
        return Err(ApiError::new(
            ErrorCode::SessionNotFound,
            "Verification session not found",
        ));
    }
    tracing::info!("verification erased");
    Ok(())
}
