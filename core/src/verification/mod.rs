//! Verification sessions, one file per part of their life: [`initiate`] (a company starts one),
//! [`transitions`] (the app submits or denies, a test key completes, each one conditional
//! statement with its outbox event), [`expiry`] and [`retention`], [`listing`] (a
//! company's records of its sessions) and [`app_view`] (what the app may see). This file holds
//! the session as the API shows it and the lookup by id.

pub mod app_view;
pub mod expiry;
pub mod initiate;
pub mod listing;
pub mod retention;
pub mod stats;
pub mod transitions;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use truenumber_entities::verification_session::Model as SessionRow;

pub use self::{
    initiate::{INITIATE_SQL, INITIATE_SQLITE_SQL, Initiated, NewSession, initiate, replay},
    transitions::{
        Completed, DECIDE_SQL, DECIDE_SQLITE_SQL, Decider, SUBMIT_SQL, SUBMIT_SQLITE_SQL,
        Submission, decide, submit,
    },
};
use crate::{
    companies::{app_tokens::NumberBinding, secrets},
    storage::sql::session_columns,
};

/// The lifecycle of a session: the entity's enum itself, so a stored value outside it is a
/// decode error.
pub use truenumber_entities::verification_session::SessionStatus;

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationSession {
    /// `ver_…`.
    pub verification_id: String,
    /// E.164.
    pub mobile_number: String,
    /// Owner.
    pub company_id: String,
    /// The company's idempotency key.
    pub request_id: String,
    /// As stored; see [`VerificationSession::status_at`] for what callers see.
    pub stored_status: SessionStatus,
    /// Set by submit.
    pub app_user_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub completed_at: Option<DateTime<Utc>>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// `false` for a test key's session.
    pub livemode: bool,
    /// The two digits the app must send back, when the company asked for number matching
    /// (shown to the company only).
    pub match_code: Option<String>,
    /// How the app token that completed it was bound to its number; `None` while the app has
    /// not completed it.
    pub number_binding: Option<NumberBinding>,
    /// When the app's identity provider last proved the number (the completing token's
    /// `auth_time`).
    pub phone_verified_at: Option<DateTime<Utc>>,
}

impl From<SessionRow> for VerificationSession {
    fn from(r: SessionRow) -> Self {
        Self {
            stored_status: r.status,
            verification_id: r.verification_id,
            mobile_number: r.mobile_number,
            company_id: r.company_id,
            request_id: r.request_id,
            app_user_id: r.app_user_id,
            created_at: r.created_at,
            verified_at: r.verified_at,
            completed_at: r.completed_at,
            expires_at: r.expires_at,
            livemode: r.livemode,
            match_code: r.match_code,
            number_binding: r.number_binding,
            phone_verified_at: r.phone_verified_at,
        }
    }
}

impl VerificationSession {
    /// The status at `now`: a pending session past its expiry reads `expired` before any sweep.
    pub fn status_at(&self, now: DateTime<Utc>) -> SessionStatus {
        match self.stored_status {
            SessionStatus::Pending if now >= self.expires_at => SessionStatus::Expired,
            s => s,
        }
    }
}

/// Why a verification operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// No such session (for this caller).
    #[error("verification session not found")]
    SessionNotFound,
    /// Past `expires_at`.
    #[error("verification session has expired")]
    SessionExpired,
    /// Already verified, failed, denied or expired by a test completion.
    #[error("verification session is already {}", .0.as_str())]
    AlreadyCompleted(SessionStatus),
    /// The number differs; the session is now failed.
    #[error("the confirmed number does not match the number being verified")]
    NumberMismatch,
    /// Number matching was on and the code was wrong or missing; the session is now failed.
    #[error("the match code is wrong or missing; the verification has failed")]
    MatchCodeMismatch,
    /// The same `requestId` was used with a different number (or `numberMatching`).
    #[error("requestId was already used with a different mobile number or numberMatching")]
    DuplicateRequest,
    /// The same `requestId` made a session that has since finished (verified, failed, denied
    /// or expired): handing it back as if just initiated would be a session nobody can
    /// complete, so the company is told to use a new `requestId`.
    #[error("requestId was already used by verification {verification_id}, which is {}", .status.as_str())]
    RequestFinished {
        /// The session that `requestId` made.
        verification_id: String,
        /// Its status now (a pending one past its expiry reads `expired`).
        status: SessionStatus,
    },
    /// The number's holder blocked the company: no new session for it.
    #[error("the holder of this number has blocked this company")]
    BlockedByUser,
    /// The number's holder said "not me" to this company within its deny cooldown.
    #[error("the holder of this number denied a verification by this company recently")]
    RecentlyDenied {
        /// When the cooldown ends.
        until: DateTime<Utc>,
    },
    /// The session's company is deactivated: its sessions cannot be completed.
    #[error("the company behind this verification is not active")]
    CompanyInactive,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

/// Characters left as they are in deep-link query values (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `base?number=<E.164, percent-encoded>&verificationId=<id>`.
pub fn deep_link(base: &str, mobile_number: &str, verification_id: &str) -> String {
    format!(
        "{base}?number={}&verificationId={}",
        utf8_percent_encode(mobile_number, QUERY_VALUE),
        utf8_percent_encode(verification_id, QUERY_VALUE)
    )
}

/// Status: one session by id (`$1`). It names no other column, so the only index it can use
/// is the unique `verification_id`, whatever other indexes exist: a `company_id` predicate
/// here would let a cached generic plan walk the company's listing index instead (migration 3
/// explains why that matters; `tests/it/query_plans.rs` checks it). [`find_for_company`]
/// scopes the row to its company and mode.
pub const FIND_FOR_COMPANY_SQL: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM verification_sessions WHERE verification_id = $1"
);

/// A company's session by id, in the mode of the key that asks; another company's (or
/// mode's) id is simply not found, exactly as an unknown one. The statement
/// ([`FIND_FOR_COMPANY_SQL`]) is plain SQL that both engines run as written.
pub async fn find_for_company(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    verification_id: &str,
) -> Result<Option<VerificationSession>, DbErr> {
    Ok(find_row(db, verification_id)
        .await?
        .filter(|row| row.company_id == company_id && row.livemode == livemode)
        .map(Into::into))
}

/// One session by its public id, whoever owns it (callers scope it).
async fn find_row(
    db: &impl ConnectionTrait,
    verification_id: &str,
) -> Result<Option<SessionRow>, DbErr> {
    if verification_id.len() > 64 {
        return Ok(None);
    }
    SessionRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        FIND_FOR_COMPANY_SQL,
        [verification_id.into()],
    ))
    .one(db)
    .await
}

impl VerificationSession {
    /// What the outbox event of this session (just made terminal) is made of.
    pub fn terminal(&self) -> crate::webhooks::events::Terminal<'_> {
        crate::webhooks::events::Terminal {
            verification_id: &self.verification_id,
            company_id: &self.company_id,
            request_id: &self.request_id,
            mobile_number: &self.mobile_number,
            status: self.stored_status,
            verified_at: self.verified_at,
            livemode: self.livemode,
            number_binding: self.number_binding,
            phone_verified_at: self.phone_verified_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_links_percent_encode_the_number() {
        assert_eq!(
            deep_link("truenumberapp://verify", "+447911123456", "ver_abc-_9"),
            "truenumberapp://verify?number=%2B447911123456&verificationId=ver_abc-_9"
        );
        assert_eq!(
            deep_link("https://app.truenumber.com/v", "+1", "ver_x"),
            "https://app.truenumber.com/v?number=%2B1&verificationId=ver_x"
        );
    }

    #[test]
    fn pending_reads_expired_after_expiry() {
        let now = Utc::now();
        let mut s = VerificationSession {
            verification_id: "ver_x".into(),
            mobile_number: "+447911123456".into(),
            company_id: "c".into(),
            request_id: "r".into(),
            stored_status: SessionStatus::Pending,
            app_user_id: None,
            created_at: now,
            verified_at: None,
            completed_at: None,
            expires_at: now + chrono::Duration::seconds(10),
            livemode: true,
            match_code: None,
            number_binding: None,
            phone_verified_at: None,
        };
        assert_eq!(s.status_at(now), SessionStatus::Pending);
        assert_eq!(
            s.status_at(now + chrono::Duration::seconds(10)),
            SessionStatus::Expired
        );
        s.stored_status = SessionStatus::Verified;
        assert_eq!(
            s.status_at(now + chrono::Duration::seconds(99)),
            SessionStatus::Verified
        );
    }
}
