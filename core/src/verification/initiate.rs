//! Initiate: a company starts a session, or gets back the one its `requestId` already made.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};
use truenumber_entities::verification_session::{self, Model as SessionRow};

use super::{SessionStatus, VerificationError, VerificationSession};
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
    /// The company's deny cooldown in force: a deny of this number this recently refuses it.
    pub deny_cooldown: Duration,
}

/// Initiate: an insert that yields to the session this `(request_id, company, mode)` already
/// made, reading that one in the same round trip, and that inserts nothing for a number whose
/// holder blocked the company or denied it within the cooldown (`$8` seconds): two primary-key
/// probes in the same statement. `$1` id, `$2` number, `$3` company, `$4` request id, `$5` TTL
/// in seconds, `$6` livemode, `$7` match code.
pub const INITIATE_SQL: &str = "WITH ins AS ( \
       INSERT INTO verification_sessions \
         (verification_id, mobile_number, company_id, request_id, expires_at, livemode, match_code) \
       SELECT $1, $2::varchar, $3::varchar, $4, now() + make_interval(secs => $5), $6, $7 \
       WHERE NOT EXISTS (SELECT 1 FROM number_blocks \
                         WHERE mobile_number = $2 AND company_id = $3) \
         AND NOT EXISTS (SELECT 1 FROM deny_cooldowns \
                         WHERE company_id = $3 AND livemode = $6 AND mobile_number = $2 \
                           AND denied_at > now() - make_interval(secs => $8)) \
       ON CONFLICT (request_id, company_id, livemode) DO NOTHING \
       RETURNING * ) \
     SELECT * FROM ins \
     UNION ALL \
     SELECT * FROM verification_sessions \
       WHERE request_id = $4 AND company_id = $3 AND livemode = $6 \
         AND NOT EXISTS (SELECT 1 FROM ins)";

/// [`INITIATE_SQL`] on SQLite, which has no data-modifying CTE: the insert alone, returning
/// nothing on conflict or refusal (the existing row is then read by a second statement).
/// `$1`–`$4` as there, `$5` the expiry, `$6` now (both bound from Rust, [`sql`] conventions),
/// `$7` a v4 row id (PostgreSQL's default is `gen_random_uuid()`; SQLite's `randomblob(16)` is
/// not v4), `$8` livemode, `$9` match code, `$10` the cooldown's start (now − cooldown).
pub const INITIATE_SQLITE_SQL: &str = concat!(
    "INSERT INTO verification_sessions \
       (verification_id, mobile_number, company_id, request_id, expires_at, created_at, id, \
        livemode, match_code) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
     WHERE NOT EXISTS (SELECT 1 FROM number_blocks \
                       WHERE mobile_number = $2 AND company_id = $3) \
       AND NOT EXISTS (SELECT 1 FROM deny_cooldowns \
                       WHERE company_id = $3 AND livemode = $8 AND mobile_number = $2 \
                         AND denied_at > $10) \
     ON CONFLICT (request_id, company_id, livemode) DO NOTHING \
     RETURNING ",
    session_columns!()
);

/// Why nothing was inserted for a new request: the number's holder blocked the company, or
/// denied it after `$4` (the cooldown's start). `$1` number, `$2` company, `$3` livemode.
const WHY_REFUSED_SQL: &str = "SELECT \
       EXISTS (SELECT 1 FROM number_blocks WHERE mobile_number = $1 AND company_id = $2) \
         AS blocked, \
       (SELECT denied_at FROM deny_cooldowns \
         WHERE company_id = $2 AND livemode = $3 AND mobile_number = $1 AND denied_at > $4) \
         AS denied_at";

#[derive(Debug, FromQueryResult)]
struct WhyRefused {
    blocked: bool,
    denied_at: Option<DateTime<Utc>>,
}

/// Starts a session, or returns the one this `(request_id, company, mode)` already made; a
/// number whose holder blocked the company ([`VerificationError::BlockedByUser`]) or denied it
/// within the cooldown ([`VerificationError::RecentlyDenied`]) gets no new session (a replay of
/// a session made before still returns it).
///
/// PostgreSQL: one statement on the happy path, an insert that yields to an existing row,
/// with the existing row read in the same round trip. SQLite: the insert, and on a replay a
/// second statement reads the existing row. Only when nothing was inserted and nothing exists
/// does a further statement say why.
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
    let now = sql::now();
    let cooldown_start = cooldown_start(&new);
    let statement = match db.get_database_backend() {
        DbBackend::Sqlite => {
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
                    cooldown_start.into(),
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
                    new.deny_cooldown.as_secs_f64().into(),
                ],
            )
        }
    };
    let row = SessionRow::find_by_statement(statement).one(db).await?;
    // A conflicting row committed after this statement's snapshot is invisible to it (and
    // SQLite's insert returns nothing on conflict): read again.
    let row = match row {
        Some(r) => r,
        None => match find_by_request_id(db, &new).await? {
            Some(r) => r,
            None => {
                return Err(why_refused(db, &new, cooldown_start)
                    .await?
                    .unwrap_or_else(|| {
                        VerificationError::Db(DbErr::RecordNotFound(
                            "session vanished during initiate".into(),
                        ))
                    }));
            }
        },
    };
    if row.verification_id == verification_id {
        return Ok(Initiated {
            session: row.into(),
            replayed: false,
        });
    }
    replay_of(row, &new)
}

/// The session this request made before, as a replay: the same `requestId` with another
/// number or `numberMatching` is [`VerificationError::DuplicateRequest`], and one whose
/// session has finished is [`VerificationError::RequestFinished`].
fn replay_of(row: SessionRow, new: &NewSession<'_>) -> Result<Initiated, VerificationError> {
    if row.mobile_number != new.mobile_number.as_str()
        || row.match_code.is_some() != new.number_matching
    {
        return Err(VerificationError::DuplicateRequest);
    }
    let session = VerificationSession::from(row);
    match session.status_at(sql::now()) {
        SessionStatus::Pending => Ok(Initiated {
            session,
            replayed: true,
        }),
        status => Err(VerificationError::RequestFinished {
            verification_id: session.verification_id,
            status,
        }),
    }
}

/// What a request a limit would refuse is instead, found without inserting anything: an
/// idempotent repeat of a request seen before (which still gets its session), or a request
/// the number's holder refuses anyway (a block or a deny cooldown: the more lasting answer,
/// so the company does not retry into it). `Ok(None)` when neither: the limit's refusal
/// stands.
pub async fn replay(
    db: &impl ConnectionTrait,
    new: NewSession<'_>,
) -> Result<Option<Initiated>, VerificationError> {
    if let Some(row) = find_by_request_id(db, &new).await? {
        return replay_of(row, &new).map(Some);
    }
    match why_refused(db, &new, cooldown_start(&new)).await? {
        Some(refusal) => Err(refusal),
        None => Ok(None),
    }
}

/// The earliest deny that still cools `new`'s company down.
fn cooldown_start(new: &NewSession<'_>) -> DateTime<Utc> {
    let cooldown = chrono::Duration::from_std(new.deny_cooldown).unwrap_or(chrono::Duration::MAX);
    sql::now()
        .checked_sub_signed(cooldown)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether the number's holder refuses `new` (a block, or a deny within the cooldown).
async fn why_refused(
    db: &impl ConnectionTrait,
    new: &NewSession<'_>,
    cooldown_start: DateTime<Utc>,
) -> Result<Option<VerificationError>, DbErr> {
    let why = WhyRefused::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        WHY_REFUSED_SQL,
        [
            new.mobile_number.as_str().into(),
            new.company_id.into(),
            new.livemode.into(),
            cooldown_start.into(),
        ],
    ))
    .one(db)
    .await?;
    Ok(match why {
        Some(WhyRefused { blocked: true, .. }) => Some(VerificationError::BlockedByUser),
        Some(WhyRefused {
            denied_at: Some(at),
            ..
        }) => Some(VerificationError::RecentlyDenied {
            until: at
                + chrono::Duration::from_std(new.deny_cooldown).unwrap_or(chrono::Duration::MAX),
        }),
        _ => None,
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
