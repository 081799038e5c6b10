//! Verification events: the transactional outbox, the one path that publishes events to the
//! queue, and the relay that publishes what was never confirmed.
//!
//! Every terminal transition writes its event together with the status change (PostgreSQL:
//! in the same statement, [`EVENTS_FROM_UPD`]; SQLite: in the same transaction,
//! [`insert_event_sqlite`]). The process that made the event hands it to its
//! [`EventPublisher`] right after commit without waiting for the queue; the relay publishes
//! anything still unpublished a few seconds later, so an event written while the queue is
//! down goes out when it returns. Delivery is at least once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement};
use truenumber_entities::verification_session::SessionStatus;

use crate::{
    queue::{Queue, QueueError},
    storage::sql::Twin,
};

/// The one event type (the API document's `event` field).
pub const EVENT_TYPE: &str = "verification.completed";

/// A CTE named `ev` that inserts one event per row of a preceding CTE named `upd` (the
/// sessions just made terminal), in the transition's own statement (the transactional
/// outbox). It returns `event_id` and `verification_id`. The event's body is not stored: it is
/// rendered from the event and its session when delivered ([`super::body`]).
pub const EVENTS_FROM_UPD: &str = "ev AS ( \
    INSERT INTO verification_events \
      (id, event_type, verification_id, company_id, status, livemode) \
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), 'verification.completed', \
      upd.verification_id, upd.company_id, upd.status, upd.livemode \
    FROM upd \
    RETURNING id AS event_id, verification_id)";

/// A session just made terminal: what its event reports (SQLite writes the event row from
/// Rust, PostgreSQL in [`EVENTS_FROM_UPD`]; the webhook body is rendered from the same fields,
/// [`super::body::WebhookBody::Completed`]).
#[derive(Debug, Clone, Copy)]
pub struct Terminal<'a> {
    /// The session.
    pub verification_id: &'a str,
    /// Its company.
    pub company_id: &'a str,
    /// The company's request id.
    pub request_id: &'a str,
    /// The number (E.164).
    pub mobile_number: &'a str,
    /// The terminal status.
    pub status: SessionStatus,
    /// When it was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// `false` for a test session (the webhook body's `livemode`).
    pub livemode: bool,
    /// How the completing app token was bound to the number (`numberBinding`).
    pub number_binding: Option<truenumber_entities::verification_session::NumberBinding>,
    /// When the app's identity provider last proved the number (`phoneVerifiedAt`).
    pub phone_verified_at: Option<DateTime<Utc>>,
}

/// A new event id: `evt_` and 32 hex digits, as PostgreSQL makes them.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// SQLite's counterpart of [`EVENTS_FROM_UPD`]: writes the event of one session just made
/// terminal, inside the caller's transaction; returns the event id.
pub async fn insert_event_sqlite(
    db: &impl ConnectionTrait,
    t: &Terminal<'_>,
    now: DateTime<Utc>,
) -> Result<String, DbErr> {
    use sea_orm::ActiveEnum as _;
    let id = new_event_id();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO verification_events \
           (id, event_type, verification_id, company_id, status, created_at, livemode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            id.clone().into(),
            EVENT_TYPE.into(),
            t.verification_id.into(),
            t.company_id.into(),
            t.status.to_value().into(),
            now.into(),
            t.livemode.into(),
        ],
    ))
    .await?;
    Ok(id)
}

/// Marks events published (`$1`: the ids, comma-separated on PostgreSQL so every batch size
/// is one prepared statement; a JSON array on SQLite).
const MARK_PUBLISHED: Twin = Twin {
    postgres: "UPDATE verification_events SET published_at = now() \
               WHERE id = ANY(string_to_array($1, ',')) AND published_at IS NULL",
    sqlite: "UPDATE verification_events SET published_at = $2 \
             WHERE id IN (SELECT value FROM json_each($1)) AND published_at IS NULL",
};

/// Gives back a relay's claims on events it could not publish (`$1` the ids, bound as in
/// [`MARK_PUBLISHED`]), so the next relay pass takes them at once instead of after
/// [`RELAY_CLAIM`].
const RELEASE_CLAIMS: Twin = Twin {
    postgres: "UPDATE verification_events SET relay_claimed_until = NULL \
               WHERE id = ANY(string_to_array($1, ',')) AND published_at IS NULL",
    sqlite: "UPDATE verification_events SET relay_claimed_until = NULL \
             WHERE id IN (SELECT value FROM json_each($1)) AND published_at IS NULL",
};

/// Event ids as one bound value: comma-separated on PostgreSQL, a JSON array on SQLite.
fn id_list(backend: DbBackend, ids: &[String]) -> sea_orm::Value {
    match backend {
        DbBackend::Sqlite => serde_json::Value::from(ids.to_vec()).to_string().into(),
        _ => ids.join(",").into(),
    }
}

/// Marks events published in one statement.
pub async fn mark_published(db: &impl ConnectionTrait, ids: &[String]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mut values = vec![id_list(backend, ids)];
    if backend == DbBackend::Sqlite {
        values.push(crate::storage::sql::now().into());
    }
    db.execute_raw(MARK_PUBLISHED.statement(backend, values))
        .await
        .map(|_| ())
}

/// Publishes events' first attempts ([`super::publish_attempts`]: concurrently, each
/// confirmed) and marks the confirmed ones published in one statement: the one publish path of
/// new events, used by the publisher task and by the relay. Returns the ids that were not
/// published (the queue refused or did not confirm).
pub async fn publish_and_mark(
    db: &impl ConnectionTrait,
    queue: &Queue,
    ids: &[String],
) -> Vec<String> {
    let firsts: Vec<(String, u32)> = ids.iter().map(|id| (id.clone(), 1)).collect();
    let failed = super::publish_attempts(queue, &firsts).await;
    let left: Vec<String> = failed
        .into_iter()
        .map(|(id, e)| {
            tracing::debug!(event_id = %id, error = %e, "event left to the relay");
            id
        })
        .collect();
    let unpublished: std::collections::HashSet<&str> = left.iter().map(String::as_str).collect();
    let published: Vec<String> = ids
        .iter()
        .filter(|id| !unpublished.contains(id.as_str()))
        .cloned()
        .collect();
    if let Err(e) = mark_published(db, &published).await {
        tracing::warn!(error = %e, "events published but not marked; the relay will publish them again");
    }
    left
}

/// Publishes new events in the background: one task takes event ids from a bounded queue and
/// publishes them in batches through [`publish_and_mark`]. A full queue or a failed publish
/// only defers the event to the relay. The API (after submit) and the expiry sweep both hand
/// their events to it.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    tx: tokio::sync::mpsc::Sender<String>,
}

impl EventPublisher {
    /// Most events published (and marked) together.
    const BATCH: usize = 256;

    /// Starts the publishing task.
    pub fn start(db: DatabaseConnection, queue: Queue) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(10_000);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < Self::BATCH {
                    match rx.try_recv() {
                        Ok(id) => batch.push(id),
                        Err(_) => break,
                    }
                }
                publish_and_mark(&db, &queue, &batch).await;
            }
        });
        Self { tx }
    }

    /// Queues an event for publishing; never waits.
    pub fn publish_soon(&self, event_id: String) {
        if let Err(e) = self.tx.try_send(event_id) {
            tracing::warn!(error = %e, "publisher queue full; the relay will publish the event");
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct EventId {
    id: String,
}

/// The relay's claim: up to `$2` unpublished events at least `$1` seconds old that no other
/// relay holds, oldest first, each claimed for `$3` seconds. The claim commits at once, so no
/// row lock is held while the queue is asked; a relay that dies leaves claims that run out.
const CLAIM_UNPUBLISHED: Twin = Twin {
    postgres: "UPDATE verification_events SET relay_claimed_until = now() + make_interval(secs => $3) \
               WHERE id IN ( \
                 SELECT id FROM verification_events \
                 WHERE published_at IS NULL AND created_at <= now() - make_interval(secs => $1) \
                   AND (relay_claimed_until IS NULL OR relay_claimed_until < now()) \
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
               RETURNING id",
    sqlite: "UPDATE verification_events SET relay_claimed_until = $6 \
             WHERE id IN ( \
               SELECT id FROM verification_events \
               WHERE published_at IS NULL AND created_at <= $4 \
                 AND (relay_claimed_until IS NULL OR relay_claimed_until < $5) \
               ORDER BY created_at LIMIT $2) \
             RETURNING id",
};

/// How long a relay's claim on an event lasts (longer than publishing a batch can take).
pub const RELAY_CLAIM: Duration = Duration::from_secs(30);

/// Publishes up to `batch` events older than `min_age` that were never confirmed, oldest
/// first. Several relays share the work through short claims ([`CLAIM_UNPUBLISHED`]); no
/// row is locked while the queue is waited on. Returns how many were published.
pub async fn relay_unpublished(
    db: &DatabaseConnection,
    queue: &Queue,
    min_age: Duration,
    batch: u64,
) -> Result<usize, DbErr> {
    let now = crate::storage::sql::now();
    let age = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
    let claim = chrono::Duration::from_std(RELAY_CLAIM).unwrap_or(chrono::Duration::zero());
    let backend = db.get_database_backend();
    let mut values: Vec<sea_orm::Value> = vec![
        min_age.as_secs_f64().into(),
        i64::try_from(batch).unwrap_or(i64::MAX).into(),
        RELAY_CLAIM.as_secs_f64().into(),
    ];
    if backend == DbBackend::Sqlite {
        values.extend([(now - age).into(), now.into(), (now + claim).into()]);
    }
    let ids: Vec<String> = EventId::find_by_statement(CLAIM_UNPUBLISHED.statement(backend, values))
        .all(db)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let left = publish_and_mark(db, queue, &ids).await;
    if !left.is_empty() {
        // Not published (the queue is down, or did not confirm in time): release the claims,
        // so that the next pass, here or on another worker, retries them without waiting
        // out the claim.
        db.execute_raw(RELEASE_CLAIMS.statement(backend, vec![id_list(backend, &left)]))
            .await?;
    }
    Ok(ids.len() - left.len())
}

/// The relay failed (the events stay unpublished and are tried again).
pub type RelayError = QueueError;

/// How many events are unpublished, and the age of the oldest (seconds).
pub async fn outbox_backlog(db: &impl ConnectionTrait) -> Result<(i64, f64), DbErr> {
    #[derive(FromQueryResult)]
    struct Backlog {
        n: i64,
        oldest: Option<DateTime<Utc>>,
    }
    // Portable: the age is computed here, from the oldest row's time.
    let b = Backlog::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT count(*) AS n, min(created_at) AS oldest \
         FROM verification_events WHERE published_at IS NULL",
    ))
    .one(db)
    .await?;
    Ok(b.map_or((0, 0.0), |b| {
        let age = b.oldest.map_or(0.0, |t| {
            (crate::storage::sql::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        });
        (b.n, age)
    }))
}

/// The event type of a company's own endpoint check.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// Writes a `webhook.test` event for `company_id` to the outbox: it reports on no session,
/// and its body ([`super::body::TestBody`]) is `event`, `companyId`, `livemode` and
/// `timestamp` (its creation). Returns its id. The caller publishes it like any other event
/// (the relay does if the caller cannot).
pub async fn insert_test_event(
    db: &impl sea_orm::ConnectionTrait,
    company_id: &str,
    livemode: bool,
) -> Result<String, DbErr> {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let id = new_event_id();
    let now = crate::storage::sql::now();
    truenumber_entities::verification_event::ActiveModel {
        id: Set(id.clone()),
        event_type: Set(WEBHOOK_TEST.to_owned()),
        verification_id: Set(None),
        company_id: Set(company_id.to_owned()),
        status: Set(None),
        payload: Set(None),
        created_at: Set(now),
        published_at: Set(None),
        relay_claimed_until: Set(None),
        livemode: Set(livemode),
    }
    .insert(db)
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_evt_and_32_hex_digits() {
        let id = new_event_id();
        assert_eq!(id.len(), 4 + 32);
        assert!(id.starts_with("evt_"));
    }
}
