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

use rand::RngExt;
use serde::{Deserialize, Serialize};

pub use self::{
    in_process::InProcessQueue,
    rabbitmq::{Broker, BrokerError, Topology},
};

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
    /// Publishes `msg` durably (see the module docs).
    pub async fn publish(&self, msg: &DeliveryMessage, route: Route) -> Result<(), QueueError> {
        match self {
            Self::RabbitMq(broker) => Ok(broker.publish(msg, route).await?),
            Self::InProcess(q) => Ok(q.publish(msg, route).await?),
        }
    }

    /// Schedules `msg` (a retry) at least `wanted` from now. The delivery's row already holds
    /// its `next_attempt_at` (written with the attempt), which is what a lost retry is
    /// recovered from.
    ///
    /// RabbitMQ: into the TTL queue of the smallest schedule delay that covers `wanted`, with a
    /// jittered expiration (80–100% of that delay, never less than `wanted`). In-process: that
    /// row *is* the delayed message; the dispatcher sends it when it is due.
    pub async fn publish_retry(
        &self,
        msg: &DeliveryMessage,
        wanted: Duration,
    ) -> Result<(), QueueError> {
        match self {
            Self::RabbitMq(broker) => {
                let Some(queue_delay) = broker.topology().retry_delay_at_least(wanted) else {
                    return Ok(broker.publish(msg, Route::Deliver).await?);
                };
                let factor = rand::rng().random_range(0.8..=1.0);
                let jittered = queue_delay.mul_f64(factor).max(wanted.min(queue_delay));
                Ok(broker
                    .publish(
                        msg,
                        Route::Retry {
                            delay: queue_delay,
                            expiration: jittered.max(Duration::from_millis(1)),
                        },
                    )
                    .await?)
            }
            Self::InProcess(_) => Ok(()),
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
    }
}
