//! Verification events: the transactional outbox, the RabbitMQ topology, publishing with
//! confirms, the relay that republishes what was never confirmed, and the expiry sweep.
//!
//! Every terminal transition writes its event in the same statement as the status change
//! ([`EVENTS_FROM_UPD`]). The API publishes new events right after commit without waiting for
//! the broker; workers relay anything still unpublished a few seconds later, so an event
//! written while RabbitMQ is down goes out when it returns. Delivery is at least once.

use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
    options::{
        BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// The one event type (the API document's `event` field).
pub const EVENT_TYPE: &str = "verification.completed";

/// A CTE named `ev` that inserts one event per row of a preceding CTE named `upd` (the
/// sessions just made terminal), with the webhook body of the API document as its payload.
/// It returns `event_id` and `verification_id`.
pub const EVENTS_FROM_UPD: &str = "ev AS ( \
    INSERT INTO verification_events \
      (id, event_type, verification_id, company_id, status, payload) \
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), 'verification.completed', \
      upd.verification_id, upd.company_id, upd.status, \
      jsonb_build_object( \
        'event', 'verification.completed', \
        'verificationId', upd.verification_id, \
        'status', upd.status, \
        'mobileNumber', upd.mobile_number, \
        'verifiedAt', to_char(upd.verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
        'companyId', upd.company_id, \
        'requestId', upd.request_id) \
    FROM upd \
    RETURNING id AS event_id, verification_id)";

/// The message on the queues: which event to deliver, and which attempt this is.
/// Versioned, so a newer worker can still read what an older API published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryMessage {
    /// Format version (1).
    pub v: u8,
    /// The event (also the webhook's `webhook-id`).
    pub event_id: String,
    /// The attempt this message asks for, from 1.
    pub attempt: u32,
}

impl DeliveryMessage {
    /// The current format version.
    pub const VERSION: u8 = 1;

    /// The first attempt of an event.
    pub fn first(event_id: &str) -> Self {
        Self {
            v: Self::VERSION,
            event_id: event_id.to_owned(),
            attempt: 1,
        }
    }
}

/// Names of the exchanges and queues, from `AMQP_QUEUE_PREFIX`.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    retry_delays: Vec<Duration>,
}

/// Routing key of webhook deliveries on the events exchange.
const WEBHOOK_KEY: &str = "webhook";
/// After this many deliveries of one message without an ack, RabbitMQ dead-letters it, so a
/// poison message cannot loop forever.
const DELIVERY_LIMIT: i64 = 10;

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

impl Topology {
    /// Names under `prefix`; one retry queue per distinct delay of the schedule.
    pub fn new(prefix: &str, retry_schedule: &[Duration]) -> Self {
        let mut retry_delays: Vec<Duration> = retry_schedule.to_vec();
        retry_delays.sort();
        retry_delays.dedup();
        Self {
            prefix: prefix.to_owned(),
            retry_delays,
        }
    }

    /// The direct exchange events are published to.
    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The quorum queue workers consume.
    pub fn webhook_queue(&self) -> String {
        format!("{}.webhooks", self.prefix)
    }

    /// Where poison and over-delivered messages end up, for inspection.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The TTL queue that holds a retry for `delay` and then dead-letters it back.
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}s", self.prefix, delay.as_secs())
    }

    /// The smallest retry delay of the schedule that is at least `wanted` (or the largest).
    pub fn retry_delay_at_least(&self, wanted: Duration) -> Option<Duration> {
        self.retry_delays
            .iter()
            .copied()
            .find(|d| *d >= wanted)
            .or_else(|| self.retry_delays.last().copied())
    }

    /// Every queue name (for tests that clean up after themselves).
    pub fn all_queues(&self) -> Vec<String> {
        let mut q = vec![self.webhook_queue(), self.dead_queue()];
        q.extend(self.retry_delays.iter().map(|d| self.retry_queue(*d)));
        q
    }

    /// Declares everything idempotently (whoever connects first creates it).
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.exchange_declare(
            self.exchange().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_exchange().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            self.dead_queue().into(),
            durable_queue,
            args(&[("x-queue-type", long("quorum"))]),
        )
        .await?;
        ch.queue_bind(
            self.dead_queue().into(),
            self.dead_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            self.webhook_queue().into(),
            durable_queue,
            args(&[
                ("x-queue-type", long("quorum")),
                ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
                ("x-dead-letter-exchange", long(&self.dead_exchange())),
            ]),
        )
        .await?;
        ch.queue_bind(
            self.webhook_queue().into(),
            self.exchange().into(),
            WEBHOOK_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for delay in &self.retry_delays {
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            ch.queue_declare(
                self.retry_queue(*delay).into(),
                durable_queue,
                args(&[
                    ("x-queue-type", long("quorum")),
                    ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
                    ("x-dead-letter-exchange", long(&self.exchange())),
                    ("x-dead-letter-routing-key", long(WEBHOOK_KEY)),
                    // Expired messages move on only once the webhook queue has them.
                    ("x-dead-letter-strategy", long("at-least-once")),
                    ("x-overflow", long("reject-publish")),
                ]),
            )
            .await?;
        }
        Ok(())
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the webhook queue.
    Deliver,
    /// Into the retry queue of this delay; `expiration` (≤ the delay) adds jitter.
    Retry {
        /// The schedule step (picks the queue).
        delay: Duration,
        /// The message's own TTL.
        expiration: Duration,
    },
}

/// The broker could not take a message.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Connecting or talking to RabbitMQ failed.
    #[error("rabbitmq: {0}")]
    Amqp(#[from] lapin::Error),
    /// Nothing answered in time.
    #[error("rabbitmq: timed out")]
    Timeout,
    /// The broker nacked the message.
    #[error("rabbitmq nacked the message")]
    Nacked,
    /// The message matched no queue (returned by the broker).
    #[error("rabbitmq returned the message as unroutable")]
    Unroutable,
    /// The message could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A RabbitMQ connection for publishing with confirms, made on first use and remade after
/// any failure.
pub struct Broker {
    url: String,
    topology: Topology,
    timeout: Duration,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker at `url` (`AMQP_URL`); nothing is connected yet.
    pub fn new(url: &str, topology: Topology, timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            topology,
            timeout,
            publisher: Mutex::new(None),
        }
    }

    /// The names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = lapin::Result<T>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| BrokerError::Timeout)?
            .map_err(BrokerError::from)
    }

    /// Opens a connection and a channel, and declares the topology.
    pub async fn open_channel(&self) -> Result<(Connection, Channel), BrokerError> {
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from("truenumber"));
        let conn = self.bounded(Connection::connect(&self.url, props)).await?;
        let ch = self.bounded(conn.create_channel()).await?;
        self.bounded(self.topology.declare(&ch)).await?;
        Ok((conn, ch))
    }

    async fn publisher_channel(&self) -> Result<Channel, BrokerError> {
        let mut guard = self.publisher.lock().await;
        if let Some((conn, ch)) = guard.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        *guard = None;
        let (conn, ch) = self.open_channel().await?;
        self.bounded(ch.confirm_select(ConfirmSelectOptions::default()))
            .await?;
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget_publisher(&self) {
        if let Some((conn, _)) = self.publisher.lock().await.take() {
            let _ = conn.close(200, "reconnecting".into()).await;
        }
    }

    /// Publishes persistently and waits for the broker's confirm; an unroutable message
    /// (returned by the broker) or a nack is an error.
    pub async fn publish(&self, msg: &DeliveryMessage, route: Route) -> Result<(), BrokerError> {
        let result = self.publish_once(msg, route).await;
        if result.is_err() {
            self.forget_publisher().await;
        }
        result
    }

    async fn publish_once(&self, msg: &DeliveryMessage, route: Route) -> Result<(), BrokerError> {
        let ch = self.publisher_channel().await?;
        let body = serde_json::to_vec(msg)?;
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(msg.event_id.as_str().into());
        let (exchange, key) = match route {
            Route::Deliver => (self.topology.exchange(), WEBHOOK_KEY.to_owned()),
            Route::Retry { delay, expiration } => {
                props = props.with_expiration(expiration.as_millis().to_string().as_str().into());
                (String::new(), self.topology.retry_queue(delay))
            }
        };
        let opts = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .bounded(ch.basic_publish(exchange.into(), key.into(), opts, &body, props))
            .await?;
        match self.bounded(confirm).await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BrokerError::Unroutable),
            Confirmation::Nack(_) => Err(BrokerError::Nacked),
            Confirmation::NotRequested => Ok(()),
        }
    }

    /// Opens a consumer of the webhook queue with `prefetch` unacknowledged messages at most.
    pub async fn consume(
        &self,
        tag: &str,
        prefetch: u16,
    ) -> Result<(Connection, Channel, Consumer), BrokerError> {
        let (conn, ch) = self.open_channel().await?;
        self.bounded(ch.basic_qos(prefetch, BasicQosOptions::default()))
            .await?;
        let consumer = self
            .bounded(ch.basic_consume(
                self.topology.webhook_queue().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .await?;
        Ok((conn, ch, consumer))
    }

    /// Checks that RabbitMQ answers (the publisher channel is usable).
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let result = self.publisher_channel().await.map(|_| ());
        if result.is_err() {
            self.forget_publisher().await;
        }
        result
    }
}

/// Marks an event published.
pub async fn mark_published(db: &impl ConnectionTrait, event_id: &str) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE verification_events SET published_at = now() \
         WHERE id = $1 AND published_at IS NULL",
        [event_id.into()],
    ))
    .await
    .map(|_| ())
}

/// Marks several events published in one statement.
pub async fn mark_published_many(db: &impl ConnectionTrait, ids: &[String]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE verification_events SET published_at = now() \
         WHERE id = ANY(string_to_array($1, ',')) AND published_at IS NULL",
        [ids.join(",").into()],
    ))
    .await
    .map(|_| ())
}

/// Publishes new events in the background for an API node: one task takes event ids from a
/// bounded queue, publishes them concurrently with confirms, and marks each batch published
/// in one statement. A full queue or a failed publish only defers the event to the relay.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    tx: tokio::sync::mpsc::Sender<String>,
}

impl EventPublisher {
    /// Most events published (and marked) together.
    const BATCH: usize = 256;

    /// Starts the publishing task.
    pub fn start(db: DatabaseConnection, broker: std::sync::Arc<Broker>) -> Self {
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
                let results = futures::future::join_all(batch.iter().map(|id| {
                    let broker = broker.clone();
                    async move {
                        let ok = broker
                            .publish(&DeliveryMessage::first(id), Route::Deliver)
                            .await;
                        (id.clone(), ok)
                    }
                }))
                .await;
                let mut published = Vec::with_capacity(results.len());
                for (id, result) in results {
                    match result {
                        Ok(()) => published.push(id),
                        Err(e) => {
                            tracing::debug!(event_id = %id, error = %e, "event deferred to the relay")
                        }
                    }
                }
                if let Err(e) = mark_published_many(&db, &published).await {
                    tracing::warn!(error = %e, "events published but not marked; the relay will publish them again");
                }
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

/// Publishes one new event and records it; on failure the relay will publish it later.
pub async fn publish_event(db: &DatabaseConnection, broker: &Broker, event_id: &str) {
    match broker
        .publish(&DeliveryMessage::first(event_id), Route::Deliver)
        .await
    {
        Ok(()) => {
            if let Err(e) = mark_published(db, event_id).await {
                tracing::warn!(event_id, error = %e, "event published but not marked; the relay will publish it again");
            }
        }
        Err(e) => {
            tracing::warn!(event_id, error = %e, "event not published now; the relay will retry");
        }
    }
}

#[derive(Debug, FromQueryResult)]
struct EventId {
    id: String,
}

/// Publishes up to `batch` events older than `min_age` that were never confirmed, oldest
/// first; rows are locked `SKIP LOCKED`, so several relays share the work. Returns how many
/// were published.
pub async fn relay_unpublished(
    db: &DatabaseConnection,
    broker: &Broker,
    min_age: Duration,
    batch: u64,
) -> Result<usize, RelayError> {
    let txn = db.begin().await?;
    let ids = EventId::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id FROM verification_events \
         WHERE published_at IS NULL AND created_at <= now() - make_interval(secs => $1) \
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        [min_age.as_secs_f64().into(), batch.into()],
    ))
    .all(&txn)
    .await?;
    let mut published = 0;
    for EventId { id } in &ids {
        broker
            .publish(&DeliveryMessage::first(id), Route::Deliver)
            .await?;
        mark_published(&txn, id).await?;
        published += 1;
    }
    txn.commit().await?;
    Ok(published)
}

/// The relay failed (the events stay unpublished and are tried again).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Database.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// Broker.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// How many events are unpublished, and the age of the oldest (seconds).
pub async fn outbox_backlog(db: &impl ConnectionTrait) -> Result<(i64, f64), DbErr> {
    #[derive(FromQueryResult)]
    struct Backlog {
        n: i64,
        oldest: f64,
    }
    let b = Backlog::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*) AS n, \
         COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest \
         FROM verification_events WHERE published_at IS NULL",
    ))
    .one(db)
    .await?;
    Ok(b.map_or((0, 0.0), |b| (b.n, b.oldest)))
}

#[derive(Debug, FromQueryResult)]
struct ExpiredEvent {
    event_id: String,
}

/// The expiry sweep (`$1` batch size): due sessions through the open-session index
/// (`completed_at IS NULL`, see migration 3), locked `SKIP LOCKED`, expired with their events.
pub static EXPIRE_DUE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH due AS ( \
           SELECT id FROM verification_sessions \
           WHERE completed_at IS NULL AND status = 'pending' AND expires_at <= now() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
         upd AS ( \
           UPDATE verification_sessions vs SET status = 'expired', completed_at = now() \
           FROM due WHERE vs.id = due.id AND vs.status = 'pending' \
           RETURNING vs.*), \
         {EVENTS_FROM_UPD} \
         SELECT event_id FROM ev"
    )
});

/// Expires up to `batch` pending sessions past their expiry, each with its event, in one
/// statement. Rows locked by another sweeper are skipped, and a session is only expired if
/// still pending, so several workers never double-expire. Returns the new event ids.
pub async fn expire_due_sessions(
    db: &impl ConnectionTrait,
    batch: u64,
) -> Result<Vec<String>, DbErr> {
    let rows = ExpiredEvent::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        EXPIRE_DUE_SQL.as_str(),
        [batch.into()],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_queues_follow_the_schedule() {
        let secs = |v: &[u64]| {
            v.iter()
                .map(|s| Duration::from_secs(*s))
                .collect::<Vec<_>>()
        };
        let t = Topology::new("tn", &secs(&[5, 30, 30, 120]));
        assert_eq!(t.exchange(), "tn.events");
        assert_eq!(t.webhook_queue(), "tn.webhooks");
        assert_eq!(t.retry_queue(Duration::from_secs(30)), "tn.retry.30s");
        assert_eq!(t.all_queues().len(), 2 + 3);
        assert_eq!(
            t.retry_delay_at_least(Duration::from_secs(0)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            t.retry_delay_at_least(Duration::from_secs(31)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            t.retry_delay_at_least(Duration::from_secs(9999)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            Topology::new("x", &[]).retry_delay_at_least(Duration::ZERO),
            None
        );
    }

    #[test]
    fn messages_are_versioned_json() {
        let m = DeliveryMessage::first("evt_1");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"v":1,"eventId":"evt_1","attempt":1}"#);
        assert_eq!(serde_json::from_str::<DeliveryMessage>(&json).unwrap(), m);
    }
}
