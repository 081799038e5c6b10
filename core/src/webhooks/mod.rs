//! Webhooks, from an event to its receiver:
//!
//! - [`events`]: the transactional outbox of events, their publisher and relay;
//! - [`body`]: the one builder of webhook bodies;
//! - [`target`]: where a webhook may go (the URL rules and the SSRF guard);
//! - [`signing`]: Standard Webhooks signatures;
//! - [`delivery`]: one attempt (open the delivery, sign, POST, classify, record, retry);
//! - [`retry`]: the one retry decision;
//! - [`deliveries`]: the deliveries and their attempts as stored.
//!
//! Anything that wants an attempt made hands it to the delivery side through
//! [`publish_attempts`].

pub mod body;
pub mod deliveries;
pub mod delivery;
pub mod events;
pub mod retry;
pub mod signing;
pub mod target;

use futures::StreamExt;
use sea_orm::{DatabaseConnection, DbErr};

use crate::queue::{DeliveryMessage, Queue, QueueError, Route};

/// Messages published at once by [`publish_attempts`] (a whole batch of the event publisher,
/// so new events go out as before; a large recovery is published this many at a time).
const PUBLISH_CONCURRENCY: usize = 256;

/// Hands attempts to the delivery side: for each `(event_id, attempt)`, a message asking for
/// that attempt now, published durably (RabbitMQ's webhook queue; standalone's in-process
/// queue, which makes the delivery due and hands it to its consumer), several at once. The one
/// way anything asks for an attempt: new events' first attempts
/// ([`events::publish_and_mark`]), redeliveries and recoveries (API and CLI), and the overdue
/// sweep. Returns those that could not be published, with why; their deliveries stay due in
/// the database, so the overdue sweep (or standalone's dispatcher) sends them later.
pub async fn publish_attempts(
    queue: &Queue,
    attempts: &[(String, u32)],
) -> Vec<(String, QueueError)> {
    let publishes: Vec<_> = attempts
        .iter()
        .map(|(event_id, attempt)| async move {
            let msg = DeliveryMessage::new(event_id, *attempt);
            queue
                .publish(&msg, Route::Deliver)
                .await
                .err()
                .map(|e| (event_id.clone(), e))
        })
        .collect();
    let results: Vec<Option<(String, QueueError)>> = futures::stream::iter(publishes)
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// A `webhook.test` event on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTest {
    /// The event (the webhook's `webhook-id`).
    pub event_id: String,
    /// Its delivery.
    pub delivery_id: uuid::Uuid,
}

/// Sends a company's endpoint a `webhook.test` event through the normal delivery path: the
/// event is written to the outbox, its delivery opened ([`delivery::open`], so the caller can
/// name it at once), and the event handed to `publisher` (the relay publishes it if that
/// fails). `None` when the company has no webhook URL (removed since the caller looked).
pub async fn send_test(
    db: &DatabaseConnection,
    publisher: &events::EventPublisher,
    company_id: &str,
    livemode: bool,
) -> Result<Option<SentTest>, DbErr> {
    let event_id = events::insert_test_event(db, company_id, livemode).await?;
    let opened = delivery::open(db, &event_id).await?;
    publisher.publish_soon(event_id.clone());
    Ok(opened.map(|open| SentTest {
        event_id,
        delivery_id: open.delivery.id,
    }))
}
