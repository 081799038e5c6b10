//! Verification sessions: initiate, submit and read, each one conditional statement.

pub mod app_view;
pub mod listing;
pub mod sweeps;

use std::time::Duration;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use truenumber_entities::verification_session::{self, Model as SessionRow};

use crate::{
    companies::app_tokens::{NumberBinding, TokenBinding},
    companies::secrets,
    phone::MobileNumber,
    storage::{
        lanes::RequestConnection,
        sql::{self, SESSION_COLUMNS, session_columns},
    },
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

/// What a company asks initiate for.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// The company.
    pub company_id: &'a str,
    /// The mode of the key that asked: test sessions and live ones never meet.
    pub livemode: bool,
    /// The company's idempotency key (unique per company and mode).
    pub request_id: &'a str,
    /// The number.
    pub mobile_number: &'a MobileNumber,
    /// Whether the app must send back a two-digit code shown by the company.
    pub number_matching: bool,
}

/// Initiate: an insert that yields to the session this `(request_id, company, mode)` already
/// made, reading that one in the same round trip. `$1` id, `$2` number, `$3` company, `$4`
/// request id, `$5` TTL in seconds, `$6` livemode, `$7` match code.
pub const INITIATE_SQL: &str = "WITH ins AS ( \
       INSERT INTO verification_sessions \
         (verification_id, mobile_number, company_id, request_id, expires_at, livemode, match_code) \
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6, $7) \
       ON CONFLICT (request_id, company_id, livemode) DO NOTHING \
       RETURNING * ) \
     SELECT * FROM ins \
     UNION ALL \
     SELECT * FROM verification_sessions \
       WHERE request_id = $4 AND company_id = $3 AND livemode = $6 \
         AND NOT EXISTS (SELECT 1 FROM ins)";

/// [`INITIATE_SQL`] on SQLite, which has no data-modifying CTE: the insert alone, returning
/// nothing on conflict (the existing row is then read by a second statement). `$1`–`$4` as
/// there, `$5` the expiry, `$6` now (both bound from Rust, [`sql`] conventions), `$7` a v4
/// row id (PostgreSQL's default is `gen_random_uuid()`; SQLite's `randomblob(16)` is not v4),
/// `$8` livemode, `$9` match code.
pub const INITIATE_SQLITE_SQL: &str = concat!(
    "INSERT INTO verification_sessions \
       (verification_id, mobile_number, company_id, request_id, expires_at, created_at, id, \
        livemode, match_code) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (request_id, company_id, livemode) DO NOTHING \
     RETURNING ",
    session_columns!()
);

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

/// The condition every transition of a pending session shares: `$1` the session, still
/// pending, of the expected mode (`$4`), of the expected company (`$5`, or any when `NULL`),
/// of the token's bound number (`$6`, or any when `NULL`), whose company is active. The
/// expiry test is the caller's (it differs for `expired`).
const PENDING_OF: &str = "verification_id = $1 AND status = 'pending' AND livemode = $4 \
       AND (CAST($5 AS TEXT) IS NULL OR company_id = $5) \
       AND (CAST($6 AS TEXT) IS NULL OR mobile_number = $6) \
       AND EXISTS (SELECT 1 FROM companies c \
                   WHERE c.company_id = verification_sessions.company_id AND c.is_active)";

/// Submit: the conditional update of a pending, unexpired live session and its outbox event,
/// in one statement. `$1` id, `$2` app user, `$3` confirmed number, `$4` livemode (always
/// true: the app never sees a test session), `$5` company (`NULL`), `$6` the token's bound
/// number (a session of another number is not found, and untouched; `NULL` only for an
/// unbound token under the development switch), `$7` the token's binding
/// (`number_binding`), `$8` the match code sent (a session with one needs the same), `$9` the
/// token's `auth_time` (`phone_verified_at`).
pub static SUBMIT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH upd AS ( \
           UPDATE verification_sessions SET \
             status = CASE WHEN {VERIFIES} THEN 'verified' ELSE 'failed' END, \
             verified_at = CASE WHEN {VERIFIES} THEN now() END, \
             completed_at = now(), \
             app_user_id = $2, \
             number_binding = $7, \
             phone_verified_at = $9 \
           WHERE {PENDING_OF} AND expires_at > now() \
           RETURNING *), \
         {} \
         SELECT upd.*, ev.event_id FROM upd JOIN ev USING (verification_id)",
        crate::webhooks::events::EVENTS_FROM_UPD
    )
});

/// When a submit verifies: the confirmed number is the session's (the token's bound number
/// is, by [`PENDING_OF`]), and the match code, if the session has one, is the one sent.
const VERIFIES: &str = "mobile_number = $3 AND (match_code IS NULL OR match_code = $8)";

/// [`SUBMIT_SQL`]'s update on SQLite (`$1`–`$9` as there, `$10` now). Its outbox event is
/// written by [`insert_event_sqlite`] in the same transaction, which this statement opens
/// with the write (see [`sql`]).
pub static SUBMIT_SQLITE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE verification_sessions SET \
           status = CASE WHEN {VERIFIES} THEN 'verified' ELSE 'failed' END, \
           verified_at = CASE WHEN {VERIFIES} THEN $10 END, \
           completed_at = $10, \
           app_user_id = $2, \
           number_binding = $7, \
           phone_verified_at = $9 \
         WHERE {PENDING_OF} AND expires_at > $10 \
         RETURNING {SESSION_COLUMNS}"
    )
});

/// Deny and test completion: the pending session becomes `$2` (`$3` the app user, or `NULL`
/// to keep none; `$4`–`$6` as in [`PENDING_OF`]; `$7` the app token's binding and `$8` its
/// `auth_time`, both `NULL` for a test completion), with its outbox event, in one statement.
/// `expired` is what the sweep does and needs no unexpired session; every other outcome does.
pub static DECIDE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH upd AS ( \
           UPDATE verification_sessions SET \
             status = $2::text, \
             verified_at = CASE WHEN $2::text = 'verified' THEN now() END, \
             completed_at = now(), \
             app_user_id = COALESCE($3::text, app_user_id), \
             number_binding = $7, \
             phone_verified_at = $8 \
           WHERE {PENDING_OF} AND (expires_at > now() OR $2::text = 'expired') \
           RETURNING *), \
         {} \
         SELECT upd.*, ev.event_id FROM upd JOIN ev USING (verification_id)",
        crate::webhooks::events::EVENTS_FROM_UPD
    )
});

/// [`DECIDE_SQL`]'s update on SQLite (`$1`–`$8` as there, `$9` now).
pub static DECIDE_SQLITE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE verification_sessions SET \
           status = $2, \
           verified_at = CASE WHEN $2 = 'verified' THEN $9 END, \
           completed_at = $9, \
           app_user_id = COALESCE($3, app_user_id), \
           number_binding = $7, \
           phone_verified_at = $8 \
         WHERE {PENDING_OF} AND (expires_at > $9 OR $2 = 'expired') \
         RETURNING {SESSION_COLUMNS}"
    )
});

/// Starts a session, or returns the one this `(request_id, company, mode)` already made.
///
/// PostgreSQL: one statement on the happy path, an insert that yields to an existing row,
/// with the existing row read in the same round trip. SQLite: the insert, and on a replay a
/// second statement reads the existing row.
pub async fn initiate(
    db: &impl ConnectionTrait,
    new: NewSession<'_>,
    ttl: Duration,
) -> Result<Initiated, VerificationError> {
    let verification_id = secrets::new_verification_id()?;
    let match_code = if new.number_matching {
        Some(secrets::new_match_code()?)
    } else {
        None
    };
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
                    new.mobile_number.as_str().into(),
                    new.company_id.into(),
                    new.request_id.into(),
                    expires_at.into(),
                    now.into(),
                    uuid::Uuid::new_v4().into(),
                    new.livemode.into(),
                    match_code.into(),
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
                    new.mobile_number.as_str().into(),
                    new.company_id.into(),
                    new.request_id.into(),
                    (ttl_seconds as f64).into(),
                    new.livemode.into(),
                    match_code.into(),
                ],
            )
        }
    };
    let row = SessionRow::find_by_statement(statement).one(db).await?;
    // A conflicting row committed after this statement's snapshot is invisible to it (and
    // SQLite's insert returns nothing on conflict): read again.
    let row = match row {
        Some(r) => r,
        None => find_by_request_id(db, &new)
            .await?
            .ok_or(VerificationError::Db(DbErr::RecordNotFound(
                "session vanished during initiate".into(),
            )))?,
    };
    let replayed = row.verification_id != verification_id;
    if replayed
        && (row.mobile_number != new.mobile_number.as_str()
            || row.match_code.is_some() != new.number_matching)
    {
        return Err(VerificationError::DuplicateRequest);
    }
    Ok(Initiated {
        session: row.into(),
        replayed,
    })
}

/// The session a company made with `request_id` in this mode, on either engine.
async fn find_by_request_id(
    db: &impl ConnectionTrait,
    new: &NewSession<'_>,
) -> Result<Option<SessionRow>, DbErr> {
    verification_session::Entity::find()
        .filter(verification_session::Column::RequestId.eq(new.request_id))
        .filter(verification_session::Column::CompanyId.eq(new.company_id))
        .filter(verification_session::Column::Livemode.eq(new.livemode))
        .one(db)
        .await
}

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

/// What the app submitted.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// Session id.
    pub verification_id: &'a str,
    /// The number the user confirmed.
    pub confirmed_number: &'a MobileNumber,
    /// How the app token binds its holder to a number: a bound token reaches only its
    /// number's sessions (another number's is not found, and untouched).
    pub binding: &'a TokenBinding,
    /// The app user (the token's `sub`).
    pub app_user_id: &'a str,
    /// The match code the user picked, when the app sent one.
    pub match_code: Option<&'a str>,
}

/// A session made terminal, with the id of its outbox event.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The session, now terminal.
    pub session: VerificationSession,
    /// Its `verification.completed` event (to publish after commit).
    pub event_id: String,
}

impl Completed {
    /// Why a submit failed this session, if it did: the confirmed number differed, or else
    /// the match code was wrong or missing.
    pub fn submit_failure(&self, s: &Submission<'_>) -> Option<VerificationError> {
        if self.session.stored_status != SessionStatus::Failed {
            return None;
        }
        Some(
            if self.session.mobile_number == s.confirmed_number.as_str() {
                VerificationError::MatchCodeMismatch
            } else {
                VerificationError::NumberMismatch
            },
        )
    }
}

/// Which sessions a transition's caller may see (the others are not found).
#[derive(Debug, Clone, Copy)]
struct Visible<'a> {
    livemode: bool,
    company_id: Option<&'a str>,
    number: Option<&'a str>,
}

impl Visible<'_> {
    fn sees(&self, row: &SessionRow) -> bool {
        row.livemode == self.livemode
            && self.company_id.is_none_or(|c| c == row.company_id)
            && self.number.is_none_or(|n| n == row.mobile_number)
    }
}

/// Completes a pending, unexpired live session of the token's bound number in one
/// conditional update that also writes its outbox event: `verified` when the confirmed number
/// equals the session's and, with number matching, the code is the session's; else `failed`
/// ([`Completed::submit_failure`] says why). The token's binding is stored with it. Of any number of concurrent submits and
/// denies exactly one matches `status = 'pending'`; the others find the session completed.
///
/// PostgreSQL: one statement ([`SUBMIT_SQL`]), no transaction is begun (so `db` may be the
/// API's connection lanes). SQLite: a short transaction, [`SUBMIT_SQLITE_SQL`] then
/// [`insert_event_sqlite`].
pub async fn submit(
    db: &impl RequestConnection,
    s: Submission<'_>,
) -> Result<Completed, VerificationError> {
    use sea_orm::ActiveEnum as _;
    let values = vec![
        s.verification_id.into(),
        s.app_user_id.into(),
        s.confirmed_number.as_str().into(),
        true.into(),
        Option::<String>::None.into(),
        s.binding.number().map(str::to_owned).into(),
        s.binding.kind().to_value().into(),
        s.match_code.map(str::to_owned).into(),
        s.binding.phone_verified_at().into(),
    ];
    let scope = Visible {
        livemode: true,
        company_id: None,
        number: s.binding.number(),
    };
    transition(
        db,
        (&SUBMIT_SQL, &SUBMIT_SQLITE_SQL),
        values,
        scope,
        s.verification_id,
    )
    .await
}

/// Who decides a session without submitting it.
#[derive(Debug, Clone, Copy)]
pub enum Decider<'a> {
    /// The app, saying "not me": live sessions only, and with a number-bound token only
    /// that number's.
    App {
        /// The token's `sub`, stored as the session's `appUserId`.
        app_user_id: &'a str,
        /// How the token binds its holder to a number.
        binding: &'a TokenBinding,
    },
    /// A test key completing one of its company's test sessions.
    TestKey {
        /// The key's company.
        company_id: &'a str,
    },
}

/// Makes a pending session `outcome` (`verified`, `failed`, `denied` or `expired`) with its
/// outbox event, under the same single-winner rule as [`submit`]: `denied` by the app, any
/// of them by a test key in test mode. `expired` needs no unexpired session (it is the
/// sweep's transition); the others do.
pub async fn decide(
    db: &impl RequestConnection,
    verification_id: &str,
    outcome: SessionStatus,
    by: Decider<'_>,
) -> Result<Completed, VerificationError> {
    use sea_orm::ActiveEnum as _;
    let (scope, app_user_id, binding) = match by {
        Decider::App {
            app_user_id,
            binding,
        } => (
            Visible {
                livemode: true,
                company_id: None,
                number: binding.number(),
            },
            Some(app_user_id.to_owned()),
            Some(binding),
        ),
        Decider::TestKey { company_id } => (
            Visible {
                livemode: false,
                company_id: Some(company_id),
                number: None,
            },
            None,
            None,
        ),
    };
    let values = vec![
        verification_id.into(),
        outcome.to_value().into(),
        app_user_id.into(),
        scope.livemode.into(),
        scope.company_id.map(str::to_owned).into(),
        scope.number.map(str::to_owned).into(),
        binding.map(|b| b.kind().to_value()).into(),
        binding.and_then(TokenBinding::phone_verified_at).into(),
    ];
    transition(
        db,
        (&DECIDE_SQL, &DECIDE_SQLITE_SQL),
        values,
        scope,
        verification_id,
    )
    .await
}

/// Runs one transition statement (PostgreSQL: the update and its event in one statement;
/// SQLite: the update then the event, in one transaction begun `IMMEDIATE` so it holds the
/// write lock from the start, with "now" bound from Rust as the last value). When nothing
/// changed, the session as `scope` sees it says why, judged by the same clock.
async fn transition(
    db: &impl RequestConnection,
    (postgres, sqlite): (&str, &str),
    mut values: Vec<sea_orm::Value>,
    scope: Visible<'_>,
    verification_id: &str,
) -> Result<Completed, VerificationError> {
    if verification_id.len() > 64 {
        return Err(VerificationError::SessionNotFound);
    }
    if db.get_database_backend() == DbBackend::Sqlite {
        let now = sql::now();
        values.push(now.into());
        let pool = db.transactions().ok_or_else(|| {
            DbErr::Custom("a SQLite transition needs the pool to begin a transaction on".into())
        })?;
        return crate::storage::db::within_transaction_limit(DbBackend::Sqlite, async {
            let txn = pool
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                })
                .await?;
            let row = SessionRow::find_by_statement(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sqlite,
                values,
            ))
            .one(&txn)
            .await?;
            if let Some(row) = row {
                let session = VerificationSession::from(row);
                let event_id =
                    crate::webhooks::events::insert_event_sqlite(&txn, &session.terminal(), now)
                        .await?;
                txn.commit().await?;
                return Ok(Completed { session, event_id });
            }
            let why = find_row(&txn, verification_id).await?;
            txn.rollback().await?;
            Err(why_not(why, scope, |row| row.expires_at <= now))
        })
        .await;
    }
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            postgres,
            values,
        ))
        .await?;
    if let Some(row) = row {
        return Ok(Completed {
            session: SessionRow::from_query_result(&row, "")?.into(),
            event_id: row.try_get("", "event_id")?,
        });
    }
    // Nothing changed: say why, by the database's clock (as the update judged expiry).
    let why = WhyNot::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        WHY_NOT_SQL,
        [verification_id.into()],
    ))
    .one(db)
    .await?;
    let expired = why.as_ref().is_some_and(|w| w.expired);
    Err(why_not(why.map(|w| w.row), scope, |_| expired))
}

/// The session and whether it is past expiry by the database's clock.
const WHY_NOT_SQL: &str = "SELECT *, expires_at <= now() AS expired \
     FROM verification_sessions WHERE verification_id = $1";

#[derive(Debug)]
struct WhyNot {
    row: SessionRow,
    expired: bool,
}

impl FromQueryResult for WhyNot {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Self {
            row: SessionRow::from_query_result(res, pre)?,
            expired: res.try_get(pre, "expired")?,
        })
    }
}

/// Why a transition changed nothing: a session the caller cannot see is not found; a
/// terminal one is completed (or expired); a pending one past expiry is expired; a pending,
/// unexpired one leaves the company, inactive when the update ran.
fn why_not(
    row: Option<SessionRow>,
    scope: Visible<'_>,
    expired: impl Fn(&SessionRow) -> bool,
) -> VerificationError {
    let Some(row) = row.filter(|r| scope.sees(r)) else {
        return VerificationError::SessionNotFound;
    };
    match row.status {
        s @ (SessionStatus::Verified | SessionStatus::Failed | SessionStatus::Denied) => {
            VerificationError::AlreadyCompleted(s)
        }
        SessionStatus::Expired => VerificationError::SessionExpired,
        SessionStatus::Pending if expired(&row) => VerificationError::SessionExpired,
        SessionStatus::Pending => VerificationError::CompanyInactive,
    }
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
