//! Initiate: a company starts a session, or gets back the one its `requestId` already made.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};
use truenumber_entities::verification_session::{self, Model as SessionRow};

use super::{VerificationError, VerificationSession};
use crate::{
    companies::secrets,
    phone::MobileNumber,
    storage::sql::{self, session_columns},
};

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
