//! The production queue: RabbitMQ topology (a direct exchange, a quorum webhook queue with a
//! delivery limit and a dead-letter queue, one TTL queue per retry delay) and a publisher
//! that waits for the broker's confirm.

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
use tokio::sync::Mutex;

use super::{DeliveryMessage, Route};

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

    /// Where a retry due in `left` waits: the queue of the smallest retry delay that is at
    /// least `left` (or of the largest), expiring after `left` exactly (rounded up to the
    /// millisecond, the resolution of an expiration, so it never comes out early); straight to
    /// the webhook queue when it is due now or there is no retry queue.
    pub fn retry_route(&self, left: Duration) -> Route {
        let left = Duration::from_millis(
            u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
        );
        match self.retry_delay_at_least(left) {
            Some(delay) if !left.is_zero() => Route::Retry {
                delay,
                expiration: left.min(delay),
            },
            _ => Route::Deliver,
        }
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
    /// How long a publish (or connecting for one) may take.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// The broker of a configuration: `AMQP_URL`, the queues under `AMQP_QUEUE_PREFIX` with one
    /// retry queue per step of `WEBHOOK_RETRY_SCHEDULE`; nothing is connected yet.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.amqp_url.expose(),
            Topology::new(&config.amqp_queue_prefix, &config.webhook_retry_schedule),
            Self::TIMEOUT,
        )
    }

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
    fn a_retry_waits_in_the_smallest_queue_that_covers_it_for_exactly_its_time() {
        let t = Topology::new("tn", &[5, 30, 120].map(Duration::from_secs));
        let ms = Duration::from_millis;
        assert_eq!(
            t.retry_route(ms(4_200)),
            Route::Retry {
                delay: Duration::from_secs(5),
                expiration: ms(4_200)
            }
        );
        assert_eq!(
            t.retry_route(ms(5_900)),
            Route::Retry {
                delay: Duration::from_secs(30),
                expiration: ms(5_900)
            },
            "a step jittered past its own queue waits in the next"
        );
        assert_eq!(
            t.retry_route(Duration::from_secs(86_400)),
            Route::Retry {
                delay: Duration::from_secs(120),
                expiration: Duration::from_secs(120)
            },
            "longer than the longest queue: that queue, then again for the rest"
        );
        assert_eq!(
            t.retry_route(Duration::from_micros(1_200_001)),
            Route::Retry {
                delay: Duration::from_secs(5),
                expiration: ms(1_201)
            },
            "rounded up, never early"
        );
        assert_eq!(t.retry_route(Duration::ZERO), Route::Deliver);
        assert_eq!(
            Topology::new("x", &[]).retry_route(Duration::from_secs(3)),
            Route::Deliver
        );
    }
}
