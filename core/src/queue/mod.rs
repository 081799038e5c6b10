//! The event queue behind one small interface, with two implementations (in the manner of
//! Svix's `queue` module): RabbitMQ for production mode ([`rabbitmq`]), and an in-process
//! queue over the database for standalone mode ([`in_process`]).
//!
//! Both give the same guarantee to a publisher: once `publish` returns `Ok`, the message
//! survives the death of this process (RabbitMQ has confirmed a persistent message; the
//! in-process queue has committed the delivery's row). Delivery is at least once.

pub mod in_process;
pub mod rabbitmq;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode};

pub use self::{
    in_process::InProcessQueue,
    rabbitmq::{Broker, BrokerError, Topology},
};

/// The message on the queues: which event to deliver, which attempt this is, and for a
/// retry when it is due. Versioned, so a newer worker can still read what an older API
/// published (`dueAt` is optional: a reader that does not know it attempts at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryMessage {
    /// Format version (1).
    pub v: u8,
    /// The event (also the webhook's `webhook-id`).
    pub event_id: String,
    /// The attempt this message asks for, from 1.
    pub attempt: u32,
    /// When a retry is due: its delivery's `next_attempt_at`, decided once
    /// ([`crate::webhooks::retry`]). `None`: due now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
}

impl DeliveryMessage {
    /// The current format version.
    pub const VERSION: u8 = 1;

    /// Attempt `attempt` (from 1) of an event, due now.
    pub fn new(event_id: &str, attempt: u32) -> Self {
        Self {
            v: Self::VERSION,
            event_id: event_id.to_owned(),
            attempt,
            due_at: None,
        }
    }

    /// The first attempt of an event.
    pub fn first(event_id: &str) -> Self {
        Self::new(event_id, 1)
    }

    /// This message as a retry due at `at`.
    #[must_use]
    pub fn retry_at(mut self, at: DateTime<Utc>) -> Self {
        self.due_at = Some(at);
        self
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the webhook queue.
    Deliver,
    /// Into the retry queue of this delay, expiring after `expiration` (at most the delay).
    Retry {
        /// The schedule step (picks the queue).
        delay: Duration,
        /// The message's own TTL: the time left until it is due.
        expiration: Duration,
    },
}

/// The queue could not take a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// RabbitMQ refused or did not answer.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The in-process queue could not record the message in the database.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Which implementation a [`Queue`] is (for health output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBackend {
    /// RabbitMQ (production mode).
    RabbitMq,
    /// In-process over the database (standalone mode).
    InProcess,
}

/// The event queue of a process.
#[derive(Debug, Clone)]
pub enum Queue {
    /// Production mode.
    RabbitMq(Arc<Broker>),
    /// Standalone mode.
    InProcess(InProcessQueue),
}

impl Queue {
    /// The queue of a configuration: RabbitMQ at `AMQP_URL` in production mode (nothing is
    /// connected yet), or standalone's in-process queue over `db`. The one way the API, the
    /// worker and the CLI make theirs.
    pub fn from_config(config: &Config, db: &DatabaseConnection) -> Self {
        match config.mode {
            Mode::Production => Self::RabbitMq(Arc::new(Broker::from_config(config))),
            Mode::Standalone => Self::InProcess(InProcessQueue::from_config(config, db.clone())),
        }
    }

    /// Publishes `msg` durably (see the module docs).
    pub async fn publish(&self, msg: &DeliveryMessage, route: Route) -> Result<(), QueueError> {
        match self {
            Self::RabbitMq(broker) => Ok(broker.publish(msg, route).await?),
            Self::InProcess(q) => Ok(q.publish(msg, route).await?),
        }
    }

    /// Holds `msg`, a retry, until its `due_at` (the instant its delivery's row holds as
    /// `next_attempt_at`, which is what a lost retry is recovered from; a message without one
    /// is due now).
    ///
    /// RabbitMQ: into the TTL queue of the smallest schedule step that covers the time left,
    /// expiring after exactly the time left; a retry due after the longest step waits that
    /// long and is then queued again for the rest (the deliverer sees it is early). In-process:
    /// nothing to do, the row *is* the delayed message; the dispatcher sends it when it is due.
    pub async fn publish_retry(&self, msg: &DeliveryMessage) -> Result<(), QueueError> {
        match self {
            Self::RabbitMq(broker) => {
                let left = msg.due_at.map_or(Duration::ZERO, |due| {
                    (due - Utc::now()).to_std().unwrap_or(Duration::ZERO)
                });
                let route = broker.topology().retry_route(left);
                Ok(broker.publish(msg, route).await?)
            }
            Self::InProcess(_) => Ok(()),
        }
    }

    /// Whether a retry that arrives early can be held again ([`Queue::publish_retry`]):
    /// RabbitMQ with at least one retry queue. The in-process queue only hands over what is
    /// due.
    pub fn holds_retries(&self) -> bool {
        match self {
            Self::RabbitMq(broker) => broker
                .topology()
                .retry_delay_at_least(Duration::ZERO)
                .is_some(),
            Self::InProcess(_) => false,
        }
    }

    /// Checks that the queue can take messages.
    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Self::RabbitMq(broker) => Ok(broker.ping().await?),
            Self::InProcess(q) => Ok(q.ping().await?),
        }
    }

    /// Which implementation this is.
    pub fn backend(&self) -> QueueBackend {
        match self {
            Self::RabbitMq(_) => QueueBackend::RabbitMq,
            Self::InProcess(_) => QueueBackend::InProcess,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_versioned_json() {
        let m = DeliveryMessage::first("evt_1");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"v":1,"eventId":"evt_1","attempt":1}"#);
        assert_eq!(serde_json::from_str::<DeliveryMessage>(&json).unwrap(), m);
        assert_eq!(DeliveryMessage::new("evt_1", 1), m);

        let at = DateTime::parse_from_rfc3339("2026-12-08T10:00:01.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let retry = DeliveryMessage::new("evt_1", 3).retry_at(at);
        let json = serde_json::to_string(&retry).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"eventId":"evt_1","attempt":3,"dueAt":"2026-12-08T10:00:01.250Z"}"#
        );
        assert_eq!(
            serde_json::from_str::<DeliveryMessage>(&json).unwrap(),
            retry
        );
    }
}
