//! What the TrueNumber app may see of sessions: the consent view of one session, and a
//! number's pending requests (PRODUCT.md, "The app's view").
//!
//! The app sees live sessions only, never a test session, and never a match code (only
//! whether number matching is on). A token bound to a number sees only that number's
//! sessions.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use truenumber_entities::verification_session::SessionStatus;

/// A session as the app's consent screen shows it.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct AppSession {
    /// `ver_…`.
    pub verification_id: String,
    /// The company asking (what the app offers to block).
    pub company_id: String,
    /// The name of the company asking.
    pub company_name: String,
    /// E.164.
    pub mobile_number: String,
    /// As stored (see [`AppSession::status_at`]).
    pub status: SessionStatus,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Whether the user must pick the company's two-digit code.
    pub number_matching: bool,
    /// `false` for a test session (never shown; filtered here).
    livemode: bool,
}

impl AppSession {
    /// The status at `now`: a pending session past its expiry reads `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> SessionStatus {
        match self.status {
            SessionStatus::Pending if now >= self.expires_at => SessionStatus::Expired,
            s => s,
        }
    }
}

/// One session by id with its company's name. Names no other column of the session, so
/// the only index it can use is the unique `verification_id` (as the status lookup).
const ONE_SQL: &str = "SELECT vs.verification_id, vs.company_id, c.name AS company_name, \
       vs.mobile_number, \
       vs.status, vs.expires_at, vs.match_code IS NOT NULL AS number_matching, vs.livemode \
     FROM verification_sessions vs JOIN companies c ON c.company_id = vs.company_id \
     WHERE vs.verification_id = $1";

/// A number's (`$1`) pending, unexpired (`$2` now) live sessions of active companies it has
/// not blocked, newest first, at most `$3`: a range of the partial index
/// `verification_sessions_open_number_idx` (open live sessions by number, migration 10), and a
/// primary-key probe of `number_blocks` per session. Plain SQL both engines run as written.
pub const PENDING_FOR_NUMBER_SQL: &str = "SELECT vs.verification_id, vs.company_id, \
       c.name AS company_name, vs.mobile_number, vs.status, vs.expires_at, \
       vs.match_code IS NOT NULL AS number_matching, vs.livemode \
     FROM verification_sessions vs JOIN companies c ON c.company_id = vs.company_id \
     WHERE vs.mobile_number = $1 AND vs.completed_at IS NULL AND vs.livemode \
       AND vs.expires_at > $2 AND c.is_active \
       AND NOT EXISTS (SELECT 1 FROM number_blocks b \
                       WHERE b.mobile_number = vs.mobile_number AND b.company_id = vs.company_id) \
     ORDER BY vs.created_at DESC LIMIT $3";

/// The most pending requests the app is shown at once.
pub const MAX_PENDING: u64 = 20;

/// The consent view of session `verification_id`: `None` for an unknown id, a test session,
/// or (with a bound number) another number's session, all alike.
pub async fn find(
    db: &impl ConnectionTrait,
    verification_id: &str,
    bound_number: Option<&str>,
) -> Result<Option<AppSession>, DbErr> {
    if verification_id.len() > 64 {
        return Ok(None);
    }
    Ok(
        AppSession::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            ONE_SQL,
            [verification_id.into()],
        ))
        .one(db)
        .await?
        .filter(|s| s.livemode && bound_number.is_none_or(|n| n == s.mobile_number)),
    )
}

/// The pending requests for `number` (E.164), newest first, at most [`MAX_PENDING`].
pub async fn pending_for_number(
    db: &impl ConnectionTrait,
    number: &str,
) -> Result<Vec<AppSession>, DbErr> {
    AppSession::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        PENDING_FOR_NUMBER_SQL,
        [
            number.into(),
            crate::storage::sql::now().into(),
            i64::try_from(MAX_PENDING).unwrap_or(20).into(),
        ],
    ))
    .all(db)
    .await
}
