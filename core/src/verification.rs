//! Verification sessions: initiate, submit and read, each one conditional statement.

use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionSession, TransactionTrait,
};
use truenumber_entities::verification_session::{self, Model as SessionRow};

use crate::{phone::MobileNumber, secrets, sql};

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
    /// Already verified or failed.
    #[error("verification session is already {}", .0.as_str())]
    AlreadyCompleted(SessionStatus),
    /// The number differs; the session is now failed.
    #[error("the confirmed number does not match the number being verified")]
    NumberMismatch,
    /// The same `requestId` was used with a different number.
    #[error("requestId was already used with a different mobile number")]
    DuplicateRequest,
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

/// The result of initiate.
#[derive(Debug, Clone)]
pub struct Initiated {
    /// The session (new or the one this request id made before).
    pub session: VerificationSession,
    /// True when this was an idempotent replay.
    pub replayed: bool,
}

/// Initiate: an insert that yields to the session this `(company, request_id)` already made,
/// reading that one in the same round trip. `$1` id, `$2` number, `$3` company, `$4` request
/// id, `$5` TTL in seconds.
pub const INITIATE_SQL: &str = "WITH ins AS ( \
       INSERT INTO verification_sessions \
         (verification_id, mobile_number, company_id, request_id, expires_at) \
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
       ON CONFLICT (company_id, request_id) DO NOTHING \
       RETURNING * ) \
     SELECT * FROM ins \
     UNION ALL \
     SELECT * FROM verification_sessions \
       WHERE company_id = $3 AND request_id = $4 AND NOT EXISTS (SELECT 1 FROM ins)";

/// [`INITIATE_SQL`] on SQLite, which has no data-modifying CTE: the insert alone, returning
/// nothing on conflict (the existing row is then read by a second statement). `$1`–`$4` as
/// there, `$5` the expiry, `$6` now (both bound from Rust, [`sql`] conventions), `$7` a v4
/// row id (PostgreSQL's default is `gen_random_uuid()`; SQLite's `randomblob(16)` is not v4).
pub const INITIATE_SQLITE_SQL: &str = "INSERT INTO verification_sessions \
       (verification_id, mobile_number, company_id, request_id, expires_at, created_at, id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (request_id, company_id) DO NOTHING \
     RETURNING *";

/// Status: one session by id (`$1`). It names no other column, so the only index it can use
/// is the unique `verification_id`, whatever other indexes exist: a `company_id` predicate
/// here would let a cached generic plan walk the company's listing index instead (migration 3
/// explains why that matters; `tests/it/query_plans.rs` checks it). [`find_for_company`]
/// scopes the row to its company.
pub const FIND_FOR_COMPANY_SQL: &str =
    "SELECT * FROM verification_sessions WHERE verification_id = $1";

/// Submit: the conditional update of a pending, unexpired session of an active company and its
/// outbox event, in one statement (`$1` id, `$2` app user, `$3` confirmed number, `$4` whether
/// the token agrees).
pub static SUBMIT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH upd AS ( \
           UPDATE verification_sessions SET \
             status = CASE WHEN $4 AND mobile_number = $3 THEN 'verified' ELSE 'failed' END, \
             verified_at = CASE WHEN $4 AND mobile_number = $3 THEN now() END, \
             completed_at = now(), \
             app_user_id = $2 \
           WHERE verification_id = $1 AND status = 'pending' AND expires_at > now() \
             AND EXISTS (SELECT 1 FROM companies c \
                         WHERE c.company_id = verification_sessions.company_id AND c.is_active) \
           RETURNING *), \
         {} \
         SELECT upd.*, ev.event_id FROM upd JOIN ev USING (verification_id)",
        crate::events::EVENTS_FROM_UPD
    )
});

/// [`SUBMIT_SQL`]'s update on SQLite (`$1`–`$4` as there, `$5` now). Its outbox event is
/// written by [`insert_event_sqlite`] in the same transaction, which this statement opens
/// with the write (see [`sql`]).
pub const SUBMIT_SQLITE_SQL: &str = "UPDATE verification_sessions SET \
       status = CASE WHEN $4 AND mobile_number = $3 THEN 'verified' ELSE 'failed' END, \
       verified_at = CASE WHEN $4 AND mobile_number = $3 THEN $5 END, \
       completed_at = $5, \
       app_user_id = $2 \
     WHERE verification_id = $1 AND status = 'pending' AND expires_at > $5 \
       AND EXISTS (SELECT 1 FROM companies c \
                   WHERE c.company_id = verification_sessions.company_id AND c.is_active) \
     RETURNING *";

/// Starts a session, or returns the one this `(company, request_id)` already made.
///
/// PostgreSQL: one statement on the happy path, an insert that yields to an existing row,
/// with the existing row read in the same round trip. SQLite: the insert, and on a replay a
/// second statement reads the existing row.
pub async fn initiate(
    db: &impl ConnectionTrait,
    company_id: &str,
    request_id: &str,
    mobile_number: &MobileNumber,
    ttl: Duration,
) -> Result<Initiated, VerificationError> {
    let verification_id = secrets::new_verification_id()?;
    let statement = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let now = sql::now();
            let expires_at = chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| now.checked_add_signed(ttl))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                INITIATE_SQLITE_SQL,
                [
                    verification_id.clone().into(),
                    mobile_number.as_str().into(),
                    company_id.into(),
                    request_id.into(),
                    expires_at.into(),
                    now.into(),
                    uuid::Uuid::new_v4().into(),
                ],
            )
        }
        _ => {
            let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                INITIATE_SQL,
                [
                    verification_id.clone().into(),
                    mobile_number.as_str().into(),
                    company_id.into(),
                    request_id.into(),
                    (ttl_seconds as f64).into(),
                ],
            )
        }
    };
    let row = SessionRow::find_by_statement(statement).one(db).await?;
    // A conflicting row committed after this statement's snapshot is invisible to it (and
    // SQLite's insert returns nothing on conflict): read again.
    let row = match row {
        Some(r) => r,
        None => find_by_request_id(db, company_id, request_id)
            .await?
            .ok_or(VerificationError::Db(DbErr::RecordNotFound(
                "session vanished during initiate".into(),
            )))?,
    };
    let replayed = row.verification_id != verification_id;
    if replayed && row.mobile_number != mobile_number.as_str() {
        return Err(VerificationError::DuplicateRequest);
    }
    Ok(Initiated {
        session: row.into(),
        replayed,
    })
}

/// The session a company made with `request_id`, on either engine.
async fn find_by_request_id(
    db: &impl ConnectionTrait,
    company_id: &str,
    request_id: &str,
) -> Result<Option<SessionRow>, DbErr> {
    verification_session::Entity::find()
        .filter(verification_session::Column::RequestId.eq(request_id))
        .filter(verification_session::Column::CompanyId.eq(company_id))
        .one(db)
        .await
}

/// A company's session by id; another company's id is simply not found, exactly as an
/// unknown one. The statement ([`FIND_FOR_COMPANY_SQL`]) is plain SQL that both engines run
/// as written.
pub async fn find_for_company(
    db: &impl ConnectionTrait,
    company_id: &str,
    verification_id: &str,
) -> Result<Option<VerificationSession>, DbErr> {
    if verification_id.len() > 64 {
        return Ok(None);
    }
    Ok(
        SessionRow::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            FIND_FOR_COMPANY_SQL,
            [verification_id.into()],
        ))
        .one(db)
        .await?
        .filter(|row| row.company_id == company_id)
        .map(Into::into),
    )
}

/// What the app submitted.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// Session id.
    pub verification_id: &'a str,
    /// The number the user confirmed.
    pub confirmed_number: &'a MobileNumber,
    /// The token's `phone_number` claim, when it has one.
    pub token_number: Option<&'a str>,
    /// The app user (the token's `sub`).
    pub app_user_id: &'a str,
}

/// A session that submit made terminal, with the id of its outbox event.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The session, now `verified` or `failed`.
    pub session: VerificationSession,
    /// Its `verification.completed` event (to publish after commit).
    pub event_id: String,
}

/// Completes a pending, unexpired session in one conditional update that also writes its
/// outbox event: `verified` when the confirmed number (and the token's bound number, if any)
/// equals the session's, else `failed`. Of any number of concurrent submits exactly one
/// matches `status = 'pending'`; the others find the session completed.
///
/// PostgreSQL: one statement ([`SUBMIT_SQL`]), no transaction is begun (so `db` may be the
/// API's connection lanes). SQLite: a short transaction, [`SUBMIT_SQLITE_SQL`] then
/// [`insert_event_sqlite`].
pub async fn submit(
    db: &(impl ConnectionTrait + TransactionTrait),
    s: Submission<'_>,
) -> Result<Completed, VerificationError> {
    if s.verification_id.len() > 64 {
        return Err(VerificationError::SessionNotFound);
    }
    // A token bound to a different number than the one confirmed can never verify.
    let token_agrees = s
        .token_number
        .is_none_or(|n| n == s.confirmed_number.as_str());
    if db.get_database_backend() == DbBackend::Sqlite {
        return submit_sqlite(db, &s, token_agrees).await;
    }
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            SUBMIT_SQL.as_str(),
            [
                s.verification_id.into(),
                s.app_user_id.into(),
                s.confirmed_number.as_str().into(),
                token_agrees.into(),
            ],
        ))
        .await?;
    if let Some(row) = row {
        return Ok(Completed {
            session: SessionRow::from_query_result(&row, "")?.into(),
            event_id: row.try_get("", "event_id")?,
        });
    }
    // Nothing changed: say why.
    let why = WhyNotSubmitted::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        WHY_NOT_SUBMITTED_SQL,
        [s.verification_id.into()],
    ))
    .one(db)
    .await?
    .ok_or(VerificationError::SessionNotFound)?;
    Err(why.error())
}

/// [`submit`] on SQLite: the update and its outbox event in one transaction, begun
/// `IMMEDIATE` so it holds the write lock from the start; "now" is bound from Rust, and the
/// same instant decides why nothing changed.
async fn submit_sqlite(
    db: &impl TransactionTrait,
    s: &Submission<'_>,
    token_agrees: bool,
) -> Result<Completed, VerificationError> {
    let now = sql::now();
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    let row = SessionRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        SUBMIT_SQLITE_SQL,
        [
            s.verification_id.into(),
            s.app_user_id.into(),
            s.confirmed_number.as_str().into(),
            token_agrees.into(),
            now.into(),
        ],
    ))
    .one(&txn)
    .await?;
    if let Some(row) = row {
        let session = VerificationSession::from(row);
        let event_id = crate::events::insert_event_sqlite(&txn, &session.terminal(), now).await?;
        txn.commit().await?;
        return Ok(Completed { session, event_id });
    }
    let why = verification_session::Entity::find()
        .filter(verification_session::Column::VerificationId.eq(s.verification_id))
        .one(&txn)
        .await?;
    txn.rollback().await?;
    let why = why.ok_or(VerificationError::SessionNotFound)?;
    Err(WhyNotSubmitted {
        status: why.status,
        expired: why.expires_at <= now,
    }
    .error())
}

/// Why a submit changed nothing: the session's stored status and whether it is past expiry
/// (by the database's clock, as in the update). Pending and unexpired leaves the company.
const WHY_NOT_SUBMITTED_SQL: &str = "SELECT vs.status, vs.expires_at <= now() AS expired \
     FROM verification_sessions vs WHERE vs.verification_id = $1";

#[derive(Debug, FromQueryResult)]
struct WhyNotSubmitted {
    status: SessionStatus,
    expired: bool,
}

impl WhyNotSubmitted {
    fn error(&self) -> VerificationError {
        match self.status {
            s @ (SessionStatus::Verified | SessionStatus::Failed) => {
                VerificationError::AlreadyCompleted(s)
            }
            SessionStatus::Expired => VerificationError::SessionExpired,
            SessionStatus::Pending if self.expired => VerificationError::SessionExpired,
            // Pending, unexpired: the company was inactive when the update ran.
            SessionStatus::Pending => VerificationError::CompanyInactive,
        }
    }
}

impl VerificationSession {
    /// What the outbox event of this session (just made terminal) is made of.
    pub fn terminal(&self) -> crate::events::Terminal<'_> {
        crate::events::Terminal {
            verification_id: &self.verification_id,
            company_id: &self.company_id,
            request_id: &self.request_id,
            mobile_number: &self.mobile_number,
            status: self.stored_status,
            verified_at: self.verified_at,
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
