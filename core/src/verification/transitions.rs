//! The transitions of a pending session: the app submits (verified or failed) or denies, a
//! test key completes it with any outcome. Each is one conditional statement with its outbox
//! event (PostgreSQL), or a short transaction begun `IMMEDIATE` (SQLite): any number of
//! concurrent attempts have exactly one winner.

use chrono::{DateTime, Utc};
use sea_orm::{
    DbBackend, DbErr, FromQueryResult, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use truenumber_entities::verification_session::Model as SessionRow;

use super::{SessionStatus, VerificationError, VerificationSession, find_row};
use crate::{
    companies::app_tokens::TokenBinding,
    phone::MobileNumber,
    storage::{
        lanes::RequestConnection,
        sql::{self, SESSION_COLUMNS},
    },
};

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
/// A session made `denied` also starts its company's cooldown for the number, and, with `$9`,
/// the number's holder blocks the company (a live session only).
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
         cooled AS ( \
           INSERT INTO deny_cooldowns (company_id, livemode, mobile_number, denied_at) \
           SELECT company_id, livemode, mobile_number, completed_at FROM upd \
           WHERE status = 'denied' \
           ON CONFLICT (company_id, livemode, mobile_number) \
           DO UPDATE SET denied_at = excluded.denied_at), \
         blocked AS ( \
           INSERT INTO number_blocks (mobile_number, company_id, blocked_at) \
           SELECT mobile_number, company_id, completed_at FROM upd \
           WHERE status = 'denied' AND livemode AND $9 \
           ON CONFLICT (mobile_number, company_id) DO NOTHING), \
         {} \
         SELECT upd.*, ev.event_id FROM upd JOIN ev USING (verification_id)",
        crate::webhooks::events::EVENTS_FROM_UPD
    )
});

/// [`DECIDE_SQL`]'s update on SQLite (`$1`–`$8` as there, `$9` now); a deny's cooldown and
/// block are then written in the same transaction ([`DenyEffects`]).
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
        DenyEffects::NONE,
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
        /// With "not me": the holder also blocks the company.
        block_company: bool,
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
    let (scope, app_user_id, binding, block_company) = match by {
        Decider::App {
            app_user_id,
            binding,
            block_company,
        } => (
            Visible {
                livemode: true,
                company_id: None,
                number: binding.number(),
            },
            Some(app_user_id.to_owned()),
            Some(binding),
            block_company,
        ),
        Decider::TestKey { company_id } => (
            Visible {
                livemode: false,
                company_id: Some(company_id),
                number: None,
            },
            None,
            None,
            false,
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
        DenyEffects {
            block_company: Some(block_company),
        },
        scope,
        verification_id,
    )
    .await
}

/// What a transition to `denied` writes beside the session and its event (PostgreSQL: in
/// [`DECIDE_SQL`]'s own statement; SQLite: in the same transaction): the company's cooldown
/// for the number and, when asked, the holder's block of the company.
#[derive(Debug, Clone, Copy)]
struct DenyEffects {
    /// `None` for a statement that cannot deny (submit); else whether the holder blocks the
    /// company (PostgreSQL binds it as the statement's last value).
    block_company: Option<bool>,
}

impl DenyEffects {
    const NONE: Self = Self {
        block_company: None,
    };

    /// SQLite: writes what a deny of `session` (just made terminal) starts.
    async fn apply_sqlite(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        session: &VerificationSession,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait as _;
        if self.block_company.is_none() || session.stored_status != SessionStatus::Denied {
            return Ok(());
        }
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            crate::abuse::cooldown::UPSERT_SQL,
            [
                session.company_id.clone().into(),
                session.livemode.into(),
                session.mobile_number.clone().into(),
                now.into(),
            ],
        ))
        .await?;
        if self.block_company == Some(true) && session.livemode {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                crate::abuse::blocks::BLOCK_ON_DENY_SQL,
                [
                    session.mobile_number.clone().into(),
                    session.company_id.clone().into(),
                    now.into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }
}

/// Runs one transition statement (PostgreSQL: the update and its event in one statement;
/// SQLite: the update then the event, in one transaction begun `IMMEDIATE` so it holds the
/// write lock from the start, with "now" bound from Rust as the last value). When nothing
/// changed, the session as `scope` sees it says why, judged by the same clock.
async fn transition(
    db: &impl RequestConnection,
    (postgres, sqlite): (&str, &str),
    mut values: Vec<sea_orm::Value>,
    effects: DenyEffects,
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
                effects.apply_sqlite(&txn, &session, now).await?;
                txn.commit().await?;
                return Ok(Completed { session, event_id });
            }
            let why = find_row(&txn, verification_id).await?;
            txn.rollback().await?;
            Err(why_not(why, scope, |row| row.expires_at <= now))
        })
        .await;
    }
    if let Some(block) = effects.block_company {
        values.push(block.into());
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
