//! Webhook deliveries and their attempts: one delivery per (event, company), every attempt
//! recorded, failed deliveries redeliverable.

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement,
    TransactionTrait,
};
use serde::Serialize;
pub use truenumber_entities::webhook_delivery::DeliveryStatus;
use uuid::Uuid;

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

/// What the worker needs to deliver an event.
#[derive(Debug, Clone, FromQueryResult)]
pub struct EventTarget {
    /// The event.
    pub event_id: String,
    /// The webhook body, exactly as signed and sent.
    pub payload: String,
    /// The company.
    pub company_id: String,
    /// Its webhook URL, if it has one.
    pub webhook_url: Option<String>,
    /// Its `whsec_` secret.
    pub webhook_secret: String,
}

/// Loads an event with its company's webhook settings.
pub async fn event_target(
    db: &impl ConnectionTrait,
    event_id: &str,
) -> Result<Option<EventTarget>, DbErr> {
    EventTarget::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT e.id AS event_id, e.payload::text AS payload, e.company_id, \
                c.webhook_url, c.webhook_secret \
         FROM verification_events e JOIN companies c ON c.company_id = e.company_id \
         WHERE e.id = $1",
        [event_id.into()],
    ))
    .one(db)
    .await
}

/// An event belongs to one company, so its delivery is found by `event_id` alone: the leading
/// column of the unique `(event_id, company_id)`. (A `company_id` predicate here would let a
/// cached generic plan walk the company's listing index instead; see migration 3.)
pub const FIND_BY_EVENT_SQL: &str = "SELECT * FROM webhook_deliveries WHERE event_id = $1";

/// Creates the delivery of event `$1` to company `$2` at URL `$3`, or reads the existing one,
/// in one round trip.
pub const GET_OR_CREATE_SQL: &str = "WITH ins AS ( \
       INSERT INTO webhook_deliveries (event_id, company_id, url) VALUES ($1, $2, $3) \
       ON CONFLICT (event_id, company_id) DO NOTHING RETURNING *) \
     SELECT * FROM ins UNION ALL \
     SELECT * FROM webhook_deliveries WHERE event_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)";

/// The delivery of an event to a company, created on first sight. A redelivered message
/// finds the same row, so it never makes a second delivery.
pub async fn get_or_create(
    db: &impl ConnectionTrait,
    event_id: &str,
    company_id: &str,
    url: &str,
) -> Result<Delivery, DbErr> {
    let row = Delivery::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        GET_OR_CREATE_SQL,
        [event_id.into(), company_id.into(), url.into()],
    ))
    .one(db)
    .await?;
    match row {
        Some(d) => Ok(d),
        None => Delivery::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
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
    /// Another attempt after this many seconds.
    RetryIn(u64),
}

/// Records an attempt and the delivery's new state in one transaction.
pub async fn record_attempt(
    db: &DatabaseConnection,
    delivery_id: Uuid,
    r: &AttemptRecord,
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        [
            delivery_id.into(),
            r.attempt.into(),
            r.status_code.into(),
            r.latency_ms.into(),
            r.error.clone().into(),
        ],
    ))
    .await?;
    let (status, retry_secs) = match r.next {
        NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
        NextStep::Failed => (DeliveryStatus::Failed, None),
        NextStep::RetryIn(s) => (DeliveryStatus::Pending, Some(s as f64)),
    };
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_deliveries SET \
           attempts = GREATEST(attempts, $2), url = $3, status = $4, \
           last_status_code = $5, last_error = $6, updated_at = now(), \
           next_attempt_at = CASE WHEN $7::float8 IS NULL THEN NULL \
                                  ELSE now() + make_interval(secs => $7::float8) END, \
           completed_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END \
         WHERE id = $1",
        [
            delivery_id.into(),
            r.attempt.into(),
            r.url.clone().into(),
            status.into(),
            r.status_code.into(),
            r.error.clone().into(),
            retry_secs.into(),
        ],
    ))
    .await?;
    txn.commit().await
}

/// Pending deliveries whose next attempt is more than `grace_secs` overdue (their retry
/// message was lost with a dying worker): leases them for five minutes and returns
/// `(event_id, next attempt)` to publish again.
pub async fn take_overdue(
    db: &impl ConnectionTrait,
    grace_secs: f64,
    batch: u64,
) -> Result<Vec<(String, u32)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Overdue {
        event_id: String,
        attempts: i32,
    }
    let rows = Overdue::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '5 minutes' \
         WHERE id IN ( \
           SELECT id FROM webhook_deliveries \
           WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1) \
           ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING event_id, attempts",
        [grace_secs.into(), batch.into()],
    ))
    .all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.event_id, u32::try_from(r.attempts).unwrap_or(0) + 1))
        .collect())
}

/// A company's deliveries, newest first, optionally of one status.
pub async fn list(
    db: &impl ConnectionTrait,
    company_id: &str,
    status: Option<DeliveryStatus>,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    Delivery::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT * FROM webhook_deliveries WHERE company_id = $1 \
         AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT $3",
        [company_id.into(), status.into(), limit.into()],
    ))
    .all(db)
    .await
}

/// The attempts of a delivery, in order.
pub async fn attempts(db: &impl ConnectionTrait, delivery_id: Uuid) -> Result<Vec<Attempt>, DbErr> {
    Attempt::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT attempt, attempted_at, status_code, latency_ms, error FROM webhook_attempts \
         WHERE delivery_id = $1 ORDER BY attempt",
        [delivery_id.into()],
    ))
    .all(db)
    .await
}

/// Puts failed deliveries of a company (one, or all) back to pending with a fresh retry
/// schedule; returns `(event_id, next attempt)` for each, to publish.
pub async fn reopen_failed(
    db: &impl ConnectionTrait,
    company_id: &str,
    delivery_id: Option<Uuid>,
) -> Result<Vec<(String, u32)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Reopened {
        event_id: String,
        attempts: i32,
    }
    let rows = Reopened::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, \
           next_attempt_at = now(), completed_at = NULL, updated_at = now() \
         WHERE company_id = $1 AND status = 'failed' AND ($2::uuid IS NULL OR id = $2) \
         RETURNING event_id, attempts",
        [company_id.into(), delivery_id.into()],
    ))
    .all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.event_id, u32::try_from(r.attempts).unwrap_or(0) + 1))
        .collect())
}
