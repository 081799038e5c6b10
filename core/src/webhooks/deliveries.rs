//! Webhook deliveries and their attempts: one delivery per (event, company), every attempt
//! recorded, failed deliveries redeliverable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use serde::Serialize;
pub use truenumber_entities::webhook_delivery::DeliveryStatus;
use truenumber_entities::{
    verification_session::{NumberBinding, SessionStatus},
    webhook_attempt, webhook_delivery,
};
use uuid::Uuid;

use super::{
    body::{TestBody, WebhookBody},
    events::{EVENT_TYPE, Terminal, WEBHOOK_TEST},
};
use crate::storage::sql::{self, Twin, delivery_columns};

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Delivery id.
    pub id: Uuid,
    /// The event (the webhook's `webhook-id`).
    pub event_id: String,
    /// The company.
    pub company_id: String,
    /// The URL of the latest attempt.
    pub url: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far (over all rounds).
    pub attempts: i32,
    /// Attempts made before the latest redelivery.
    pub round_start: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// HTTP status of the latest attempt.
    pub last_status_code: Option<i32>,
    /// Error of the latest attempt.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Finished (succeeded or failed).
    pub completed_at: Option<DateTime<Utc>>,
    /// `false` for a test-mode event's delivery (the operator's listing shows both modes).
    pub livemode: bool,
}

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1, 2, …
    pub attempt: i32,
    /// When.
    pub attempted_at: DateTime<Utc>,
    /// HTTP status, if a response came.
    pub status_code: Option<i32>,
    /// How long it took.
    pub latency_ms: i32,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// What the worker needs to deliver an event: the event, what its body is rendered from
/// (its session's fields for `verification.completed`), and its company's webhook settings.
#[derive(Debug, Clone, FromQueryResult)]
pub struct EventTarget {
    /// The event.
    pub event_id: String,
    /// `verification.completed` or `webhook.test`.
    pub event_type: String,
    /// The event's mode (`false`: test mode).
    pub livemode: bool,
    /// When the event was written.
    pub created_at: DateTime<Utc>,
    /// The company.
    pub company_id: String,
    /// The session it reports on (`None` for `webhook.test`).
    pub verification_id: Option<String>,
    /// The session's terminal status.
    pub status: Option<SessionStatus>,
    /// The session's number.
    pub mobile_number: Option<String>,
    /// The company's request id.
    pub request_id: Option<String>,
    /// When the session was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// How the completing app token was bound to the number.
    pub number_binding: Option<NumberBinding>,
    /// When the app's identity provider last proved the number.
    pub phone_verified_at: Option<DateTime<Utc>>,
    /// Its webhook URL, if it has one.
    pub webhook_url: Option<String>,
    /// Its `whsec_` secret.
    pub webhook_secret: String,
    /// The secret a rotation replaced, which still signs until
    /// `previous_webhook_secret_expires_at`.
    pub previous_webhook_secret: Option<String>,
    /// When the previous secret stops signing.
    pub previous_webhook_secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl EventTarget {
    /// The secrets that sign a delivery made at `now`: the current one, and during a
    /// rotation's overlap the previous one too.
    pub fn signing_secrets(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&str> {
        let mut secrets = vec![self.webhook_secret.as_str()];
        if let (Some(previous), Some(until)) = (
            &self.previous_webhook_secret,
            self.previous_webhook_secret_expires_at,
        ) && until > now
        {
            secrets.push(previous);
        }
        secrets
    }

    /// The webhook body of this event; `None` for an event whose session is gone (erased
    /// sessions take their events with them, so there is nothing to deliver) or of a type
    /// this release does not know.
    pub fn body(&self) -> Option<WebhookBody<'_>> {
        match self.event_type.as_str() {
            EVENT_TYPE => Some(WebhookBody::Completed(Terminal {
                verification_id: self.verification_id.as_deref()?,
                company_id: &self.company_id,
                request_id: self.request_id.as_deref()?,
                mobile_number: self.mobile_number.as_deref()?,
                status: self.status?,
                verified_at: self.verified_at,
                livemode: self.livemode,
                number_binding: self.number_binding,
                phone_verified_at: self.phone_verified_at,
            })),
            WEBHOOK_TEST => Some(WebhookBody::Test(TestBody {
                company_id: &self.company_id,
                livemode: self.livemode,
                created_at: self.created_at,
            })),
            _ => None,
        }
    }
}

/// An event (`$1`) with its session's fields (none for `webhook.test`) and its company's
/// webhook settings. One statement on both engines.
pub const EVENT_TARGET_SQL: &str = "SELECT e.id AS event_id, e.event_type, e.livemode, e.created_at, \
            e.company_id, e.verification_id, s.status, s.mobile_number, s.request_id, \
            s.verified_at, s.number_binding, s.phone_verified_at, \
            c.webhook_url, c.webhook_secret, c.previous_webhook_secret, \
            c.previous_webhook_secret_expires_at \
     FROM verification_events e JOIN companies c ON c.company_id = e.company_id \
       LEFT JOIN verification_sessions s ON s.verification_id = e.verification_id \
     WHERE e.id = $1";

/// Loads an event with its company's webhook settings.
pub async fn event_target(
    db: &impl ConnectionTrait,
    event_id: &str,
) -> Result<Option<EventTarget>, DbErr> {
    EventTarget::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        EVENT_TARGET_SQL,
        [event_id.into()],
    ))
    .one(db)
    .await
}

/// An event belongs to one company, so its delivery is found by `event_id` alone: the leading
/// column of the unique `(event_id, company_id)`. (A `company_id` predicate here would let a
/// cached generic plan walk the company's listing index instead; see migration 3.)
pub const FIND_BY_EVENT_SQL: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE event_id = $1"
);

/// Creates the delivery of event `$1` to company `$2` at URL `$3` (in its event's mode), or
/// reads the existing one, in one round trip.
pub const GET_OR_CREATE_SQL: &str = "WITH ins AS ( \
       INSERT INTO webhook_deliveries (event_id, company_id, url, livemode) \
       VALUES ($1, $2, $3, (SELECT livemode FROM verification_events WHERE id = $1::varchar)) \
       ON CONFLICT (event_id, company_id) DO NOTHING RETURNING *) \
     SELECT * FROM ins UNION ALL \
     SELECT * FROM webhook_deliveries WHERE event_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)";

/// [`GET_OR_CREATE_SQL`] on SQLite: the insert alone (`$4` now, `$5` a v4 id from Rust, as
/// PostgreSQL's `gen_random_uuid()`), returning nothing on conflict; [`FIND_BY_EVENT_SQL`]
/// then reads the existing row.
pub const CREATE_SQLITE_SQL: &str = concat!(
    "INSERT INTO webhook_deliveries \
       (event_id, company_id, url, created_at, updated_at, id, livemode) \
     VALUES ($1, $2, $3, $4, $4, $5, (SELECT livemode FROM verification_events WHERE id = $1)) \
     ON CONFLICT (event_id, company_id) DO NOTHING RETURNING ",
    delivery_columns!()
);

/// The delivery of an event to a company, created on first sight. A redelivered message
/// finds the same row, so it never makes a second delivery.
pub async fn get_or_create(
    db: &impl ConnectionTrait,
    event_id: &str,
    company_id: &str,
    url: &str,
) -> Result<Delivery, DbErr> {
    let backend = db.get_database_backend();
    let statement = match backend {
        DbBackend::Sqlite => Statement::from_sql_and_values(
            backend,
            CREATE_SQLITE_SQL,
            [
                event_id.into(),
                company_id.into(),
                url.into(),
                sql::now().into(),
                Uuid::new_v4().into(),
            ],
        ),
        _ => Statement::from_sql_and_values(
            DbBackend::Postgres,
            GET_OR_CREATE_SQL,
            [event_id.into(), company_id.into(), url.into()],
        ),
    };
    let row = Delivery::find_by_statement(statement).one(db).await?;
    match row {
        Some(d) => Ok(d),
        None => Delivery::find_by_statement(Statement::from_sql_and_values(
            backend,
            FIND_BY_EVENT_SQL,
            [event_id.into()],
        ))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("delivery".into())),
    }
}

/// How an attempt ended, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The attempt number.
    pub attempt: i32,
    /// The URL used.
    pub url: String,
    /// HTTP status, if any.
    pub status_code: Option<i32>,
    /// Latency.
    pub latency_ms: i32,
    /// Error, if any.
    pub error: Option<String>,
    /// What the delivery becomes.
    pub next: NextStep,
}

/// The delivery's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered.
    Succeeded,
    /// Given up (410, schedule exhausted, or a refused target).
    Failed,
    /// Another attempt at this instant (the one retry decision, [`super::retry`]).
    RetryAt(DateTime<Utc>),
}

/// Inserts attempt `$2` of delivery `$1` (`$3` status code, `$4` latency, `$5` error) unless
/// recorded already; SQLite binds `$6`, now, and `$7`, a v4 id.
pub const INSERT_ATTEMPT: Twin = Twin {
    postgres: "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id, attempt) DO NOTHING",
    sqlite: "INSERT INTO webhook_attempts \
           (delivery_id, attempt, status_code, latency_ms, error, attempted_at, id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt) DO NOTHING",
};

/// The delivery's state after attempt `$2`: `$1` id, `$3` URL, `$4` status, `$5` status
/// code, `$6` error, `$7` the next attempt's instant (or `NULL`), decided in Rust and bound on
/// both engines (it is also the time the queue holds the retry for); SQLite binds `$8`, now.
pub const UPDATE_AFTER_ATTEMPT: Twin = Twin {
    postgres: "UPDATE webhook_deliveries SET \
           attempts = GREATEST(attempts, $2), url = $3, status = $4, \
           last_status_code = $5, last_error = $6, updated_at = now(), \
           next_attempt_at = $7, \
           completed_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END \
         WHERE id = $1",
    sqlite: "UPDATE webhook_deliveries SET \
           attempts = MAX(attempts, $2), url = $3, status = $4, \
           last_status_code = $5, last_error = $6, updated_at = $8, \
           next_attempt_at = $7, \
           completed_at = CASE WHEN $4 = 'pending' THEN NULL ELSE $8 END \
         WHERE id = $1",
};

/// Records an attempt and the delivery's new state in one transaction (on SQLite its first
/// statement writes, so it holds the write lock from the start).
pub async fn record_attempt(
    db: &DatabaseConnection,
    delivery_id: Uuid,
    r: &AttemptRecord,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let now = sql::now();
    let (status, next_attempt_at) = match r.next {
        NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
        NextStep::Failed => (DeliveryStatus::Failed, None),
        NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
    };
    let mut insert: Vec<sea_orm::Value> = vec![
        delivery_id.into(),
        r.attempt.into(),
        r.status_code.into(),
        r.latency_ms.into(),
        r.error.clone().into(),
    ];
    let mut update: Vec<sea_orm::Value> = vec![
        delivery_id.into(),
        r.attempt.into(),
        r.url.clone().into(),
        status.into(),
        r.status_code.into(),
        r.error.clone().into(),
        next_attempt_at.into(),
    ];
    if backend == DbBackend::Sqlite {
        insert.push(now.into());
        insert.push(Uuid::new_v4().into());
        update.push(now.into());
    }
    crate::storage::db::within_transaction_limit(backend, async {
        let txn = db.begin().await?;
        txn.execute_raw(INSERT_ATTEMPT.statement(backend, insert))
            .await?;
        txn.execute_raw(UPDATE_AFTER_ATTEMPT.statement(backend, update))
            .await?;
        txn.commit().await
    })
    .await
}

/// `now + d`, saturating at the latest representable instant.
fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `now - d`, saturating at the earliest representable instant.
fn before(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How long [`take_overdue`] leases what it takes.
pub const OVERDUE_LEASE: Duration = Duration::from_secs(300);

/// Leases up to `$2` pending deliveries whose next attempt is overdue, returning
/// `(event_id, attempts)`. PostgreSQL: `$1` grace seconds, `$3` lease seconds, rows locked
/// by another worker skipped. SQLite (one process, writes serialized): `$1` the cutoff
/// instant, `$3` the lease's end, both bound from Rust.
pub const TAKE_DUE: Twin = Twin {
    postgres: "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $3) \
         WHERE id IN ( \
           SELECT id FROM webhook_deliveries \
           WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1) \
           ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING event_id, attempts",
    sqlite: "UPDATE webhook_deliveries SET next_attempt_at = $3 \
         WHERE id IN ( \
           SELECT id FROM webhook_deliveries \
           WHERE status = 'pending' AND next_attempt_at < $1 \
           ORDER BY next_attempt_at LIMIT $2) \
         RETURNING event_id, attempts",
};

/// Pending deliveries whose next attempt is more than `grace_secs` overdue (their retry
/// message was lost, with a dying worker or with standalone's in-process queue at a
/// restart): leases up to `batch` of them for `lease` (their `next_attempt_at` moves to
/// now + `lease`, so nobody takes them again meanwhile) and returns
/// `(event_id, next attempt)` to publish again.
pub async fn take_due(
    db: &impl ConnectionTrait,
    grace_secs: f64,
    lease: Duration,
    batch: u64,
) -> Result<Vec<(String, u32)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Due {
        event_id: String,
        attempts: i32,
    }
    let backend = db.get_database_backend();
    let values: [sea_orm::Value; 3] = match backend {
        DbBackend::Sqlite => {
            let now = sql::now();
            let grace = Duration::try_from_secs_f64(grace_secs.max(0.0)).unwrap_or(Duration::MAX);
            [
                before(now, grace).into(),
                batch.into(),
                after(now, lease).into(),
            ]
        }
        _ => [grace_secs.into(), batch.into(), lease.as_secs_f64().into()],
    };
    let rows = Due::find_by_statement(TAKE_DUE.statement(backend, values))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.event_id, u32::try_from(r.attempts).unwrap_or(0) + 1))
        .collect())
}

/// [`take_due`] with the lease of [`OVERDUE_LEASE`] (five minutes).
pub async fn take_overdue(
    db: &impl ConnectionTrait,
    grace_secs: f64,
    batch: u64,
) -> Result<Vec<(String, u32)>, DbErr> {
    take_due(db, grace_secs, OVERDUE_LEASE, batch).await
}

/// A company's deliveries, newest first, optionally of one status.
pub async fn list(
    db: &impl ConnectionTrait,
    company_id: &str,
    status: Option<DeliveryStatus>,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    let mut query =
        webhook_delivery::Entity::find().filter(webhook_delivery::Column::CompanyId.eq(company_id));
    if let Some(status) = status {
        query = query.filter(webhook_delivery::Column::Status.eq(status));
    }
    query
        .order_by_desc(webhook_delivery::Column::CreatedAt)
        .limit(limit)
        .into_model::<Delivery>()
        .all(db)
        .await
}

/// The attempts of a delivery, in order.
pub async fn attempts(db: &impl ConnectionTrait, delivery_id: Uuid) -> Result<Vec<Attempt>, DbErr> {
    webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.eq(delivery_id))
        .order_by_asc(webhook_attempt::Column::Attempt)
        .into_model::<Attempt>()
        .all(db)
        .await
}

/// The attempts of several deliveries in one query, each delivery's in order (a page of
/// deliveries with their attempts, without a query per delivery). Deliveries without attempts
/// are absent from the map.
pub async fn attempts_of(
    db: &impl ConnectionTrait,
    delivery_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<Attempt>>, DbErr> {
    let mut by_delivery: std::collections::HashMap<Uuid, Vec<Attempt>> =
        std::collections::HashMap::new();
    if delivery_ids.is_empty() {
        return Ok(by_delivery);
    }
    let rows = webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.is_in(delivery_ids.iter().copied()))
        .order_by_asc(webhook_attempt::Column::Attempt)
        .all(db)
        .await?;
    for row in rows {
        by_delivery
            .entry(row.delivery_id)
            .or_default()
            .push(Attempt {
                attempt: row.attempt,
                attempted_at: row.attempted_at,
                status_code: row.status_code,
                latency_ms: row.latency_ms,
                error: row.error,
            });
    }
    Ok(by_delivery)
}

/// Puts company `$1`'s failed deliveries (all, or only `$2`) back to pending, due at once,
/// with a fresh retry schedule; SQLite binds `$3`, now.
pub const REOPEN_FAILED: Twin = Twin {
    postgres: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = now(), completed_at = NULL, updated_at = now() \
         WHERE company_id = $1 AND status = 'failed' AND ($2::uuid IS NULL OR id = $2) \
         RETURNING event_id, attempts",
    sqlite: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = $3, completed_at = NULL, updated_at = $3 \
         WHERE company_id = $1 AND status = 'failed' AND ($2 IS NULL OR id = $2) \
         RETURNING event_id, attempts",
};

/// Puts failed deliveries of a company (one, or all) back to pending with a fresh retry
/// schedule; returns `(event_id, next attempt)` for each, to publish.
pub async fn reopen_failed(
    db: &impl ConnectionTrait,
    company_id: &str,
    delivery_id: Option<Uuid>,
) -> Result<Vec<(String, u32)>, DbErr> {
    reopen(
        db,
        REOPEN_FAILED,
        vec![company_id.into(), delivery_id.into()],
    )
    .await
}

/// Where a page of a listing starts: after the row with this `(created_at, id)`, newest
/// first (keyset pagination: stable while new rows arrive, never skipping or repeating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAfter {
    /// The last row's creation time.
    pub created_at: DateTime<Utc>,
    /// The last row's id (ties on `created_at` are ordered by it).
    pub id: Uuid,
}

impl PageAfter {
    /// The rows after this one, newest first: `(created_at, id) < (self.created_at, self.id)`
    /// on the given columns.
    pub fn rows_after<C: ColumnTrait>(&self, created_at: C, id: C) -> sea_orm::Condition {
        use sea_orm::Condition;
        Condition::any().add(created_at.lt(self.created_at)).add(
            Condition::all()
                .add(created_at.eq(self.created_at))
                .add(id.lt(self.id)),
        )
    }
}

/// A delivery with what its event says (for the company's own listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    /// The delivery.
    pub delivery: Delivery,
    /// The event's type (`verification.completed` or `webhook.test`).
    pub event_type: String,
    /// The session it reports on (`None` for `webhook.test`).
    pub verification_id: Option<String>,
}

async fn with_events(
    db: &impl ConnectionTrait,
    rows: Vec<Delivery>,
) -> Result<Vec<DeliveryView>, DbErr> {
    use truenumber_entities::verification_event;
    let ids: Vec<String> = rows.iter().map(|d| d.event_id.clone()).collect();
    let events: std::collections::HashMap<String, (String, Option<String>)> =
        verification_event::Entity::find()
            .filter(verification_event::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|e| (e.id, (e.event_type, e.verification_id)))
            .collect();
    Ok(rows
        .into_iter()
        .map(|d| {
            let (event_type, verification_id) =
                events.get(&d.event_id).cloned().unwrap_or_default();
            DeliveryView {
                delivery: d,
                event_type,
                verification_id,
            }
        })
        .collect())
}

/// One page of a company's deliveries of one mode, newest first, optionally of one status,
/// starting after `after`. Asks for `limit` rows; a full page means there may be more.
pub async fn list_page(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    status: Option<DeliveryStatus>,
    limit: u64,
    after: Option<PageAfter>,
) -> Result<Vec<DeliveryView>, DbErr> {
    use webhook_delivery::Column;
    let mut query = webhook_delivery::Entity::find()
        .filter(Column::CompanyId.eq(company_id))
        .filter(Column::Livemode.eq(livemode));
    if let Some(status) = status {
        query = query.filter(Column::Status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(after.rows_after(Column::CreatedAt, Column::Id));
    }
    let rows = query
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(limit)
        .into_model::<Delivery>()
        .all(db)
        .await?;
    with_events(db, rows).await
}

/// The deliveries of company `company_id`'s events about session `verification_id` in one
/// mode, oldest first (a session's timeline).
pub async fn for_verification(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    verification_id: &str,
) -> Result<Vec<DeliveryView>, DbErr> {
    use truenumber_entities::verification_event;
    let events: Vec<String> = verification_event::Entity::find()
        .select_only()
        .column(verification_event::Column::Id)
        .filter(verification_event::Column::CompanyId.eq(company_id))
        .filter(verification_event::Column::VerificationId.eq(verification_id))
        .into_tuple()
        .all(db)
        .await?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EventId.is_in(events))
        .filter(webhook_delivery::Column::CompanyId.eq(company_id))
        .filter(webhook_delivery::Column::Livemode.eq(livemode))
        .order_by_asc(webhook_delivery::Column::CreatedAt)
        .into_model::<Delivery>()
        .all(db)
        .await?;
    with_events(db, rows).await
}

/// One delivery of a company in one mode (`None` for another company's or mode's, exactly as
/// for an unknown id).
pub async fn find_for_company(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    delivery_id: Uuid,
) -> Result<Option<DeliveryView>, DbErr> {
    let row = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Id.eq(delivery_id))
        .filter(webhook_delivery::Column::CompanyId.eq(company_id))
        .filter(webhook_delivery::Column::Livemode.eq(livemode))
        .into_model::<Delivery>()
        .one(db)
        .await?;
    Ok(with_events(db, row.into_iter().collect()).await?.pop())
}

/// Reopens one finished delivery (succeeded or failed) of company `$1` in mode `$3`, id
/// `$2`, due at once with a fresh schedule; a pending one is left alone. SQLite binds `$4`,
/// now.
pub const REOPEN_ONE: Twin = Twin {
    postgres: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = now(), completed_at = NULL, updated_at = now() \
         WHERE company_id = $1 AND id = $2 AND livemode = $3 AND status <> 'pending' \
         RETURNING event_id, attempts",
    sqlite: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = $4, completed_at = NULL, updated_at = $4 \
         WHERE company_id = $1 AND id = $2 AND livemode = $3 AND status <> 'pending' \
         RETURNING event_id, attempts",
};

/// Reopens company `$1`'s failed deliveries of mode `$4` created in `[$2, $3)`, due at once
/// with a fresh schedule. SQLite binds `$5`, now.
pub const REOPEN_FAILED_WINDOW: Twin = Twin {
    postgres: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = now(), completed_at = NULL, updated_at = now() \
         WHERE company_id = $1 AND livemode = $4 AND status = 'failed' \
           AND created_at >= $2 AND created_at < $3 \
         RETURNING event_id, attempts",
    sqlite: "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = $5, completed_at = NULL, updated_at = $5 \
         WHERE company_id = $1 AND livemode = $4 AND status = 'failed' \
           AND created_at >= $2 AND created_at < $3 \
         RETURNING event_id, attempts",
};

async fn reopen(
    db: &impl ConnectionTrait,
    twin: Twin,
    mut values: Vec<sea_orm::Value>,
) -> Result<Vec<(String, u32)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Reopened {
        event_id: String,
        attempts: i32,
    }
    let backend = db.get_database_backend();
    if backend == DbBackend::Sqlite {
        values.push(sql::now().into());
    }
    let rows = Reopened::find_by_statement(twin.statement(backend, values))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.event_id, u32::try_from(r.attempts).unwrap_or(0) + 1))
        .collect())
}

/// Why a delivery could not be redelivered.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    /// No such delivery for this company.
    #[error("delivery not found")]
    NotFound,
    /// It is still pending: its schedule is running.
    #[error("delivery still in progress")]
    InProgress,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Redelivers one finished delivery of a company: pending again, due now, with a fresh
/// schedule and the same event (so the same `webhook-id`). Returns `(event_id, attempt)`
/// to publish.
pub async fn redeliver_one(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    delivery_id: Uuid,
) -> Result<(String, u32), RedeliverError> {
    let reopened = reopen(
        db,
        REOPEN_ONE,
        vec![company_id.into(), delivery_id.into(), livemode.into()],
    )
    .await?;
    if let Some(first) = reopened.into_iter().next() {
        return Ok(first);
    }
    match find_for_company(db, company_id, livemode, delivery_id).await? {
        Some(_) => Err(RedeliverError::InProgress),
        None => Err(RedeliverError::NotFound),
    }
}

/// Redelivers every failed delivery of a company in one mode created in `[since, until)`;
/// returns `(event_id, attempt)` of each, to publish.
pub async fn recover_failed(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(String, u32)>, DbErr> {
    reopen(
        db,
        REOPEN_FAILED_WINDOW,
        vec![
            company_id.into(),
            since.into(),
            until.into(),
            livemode.into(),
        ],
    )
    .await
}
