//! Standalone mode's queue: the database is the queue, a channel is the fast path.
//!
//! - **Publishing an event** ([`Route::Deliver`]) makes sure the event's delivery row exists
//!   (when its company has a webhook URL; [`delivery::open`]), claims it for
//!   [`InProcessQueue::lease`] by setting its `next_attempt_at`, commits, and then hands the
//!   message to the consumer over a bounded channel. Once `publish` returns, a crash loses
//!   nothing: the claimed row comes due again when the claim runs out.
//! - **Retries** need no message at all: recording an attempt writes the delivery's
//!   `next_attempt_at` (the one retry decision, `webhooks::retry`), and the dispatcher ([`InProcessQueue::dispatch_due`], called every
//!   fraction of a second by the standalone loops) claims the rows that are due and hands them
//!   over. After a restart the first dispatch sends every retry that fell due while the
//!   process was down.
//! - A claim outlives the longest attempt (the lease is the webhook timeout plus a margin), so
//!   a row in flight is never dispatched twice while this process lives; only one process
//!   opens a data directory (its lock file), so no other process dispatches it either.

use std::{sync::Arc, time::Duration};

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use tokio::sync::{Mutex, mpsc};
use truenumber_entities::webhook_delivery::{self, DeliveryStatus};

use super::{DeliveryMessage, Route};
use crate::{
    config::Config,
    storage::db,
    webhooks::{deliveries, delivery},
};

/// The in-process queue of a standalone node; cheap to clone.
#[derive(Clone)]
pub struct InProcessQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    tx: mpsc::Sender<DeliveryMessage>,
    rx: Mutex<Option<mpsc::Receiver<DeliveryMessage>>>,
    lease: Duration,
}

impl std::fmt::Debug for InProcessQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessQueue")
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl InProcessQueue {
    /// Messages waiting for the consumer at most; beyond that the database holds them.
    pub const CAPACITY: usize = 4096;

    /// A queue over `db` whose claims last `lease` (longer than any attempt).
    pub fn new(db: DatabaseConnection, lease: Duration) -> Self {
        let (tx, rx) = mpsc::channel(Self::CAPACITY);
        Self {
            inner: Arc::new(Inner {
                db,
                tx,
                rx: Mutex::new(Some(rx)),
                lease,
            }),
        }
    }

    /// Standalone's queue over `db`. A claim outlives the longest attempt: `WEBHOOK_TIMEOUT`,
    /// plus a margin for the wait in the channel and the database.
    pub fn from_config(config: &Config, db: DatabaseConnection) -> Self {
        Self::new(db, config.webhook_timeout + Duration::from_secs(60))
    }

    /// How long a dispatched delivery stays claimed.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// The consumer's end; `None` after the first call (there is one consumer).
    pub async fn take_receiver(&self) -> Option<mpsc::Receiver<DeliveryMessage>> {
        self.inner.rx.lock().await.take()
    }

    pub(super) async fn publish(&self, msg: &DeliveryMessage, route: Route) -> Result<(), DbErr> {
        if matches!(route, Route::Retry { .. }) {
            // The delivery's row holds the retry's time (written with its attempt).
            return Ok(());
        }
        let db = &self.inner.db;
        let Some(delivery::OpenDelivery { delivery, .. }) =
            delivery::open(db, &msg.event_id).await?
        else {
            return Ok(()); // no such event, or no webhook: nothing to deliver
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(());
        }
        let until = chrono::Utc::now() + self.inner.lease;
        set_next_attempt(db, delivery.id, until).await?;
        if self.inner.tx.try_send(msg.clone()).is_err() {
            // Full (or stopping): due now, so the dispatcher sends it as soon as there is room.
            set_next_attempt(db, delivery.id, chrono::Utc::now()).await?;
        }
        Ok(())
    }

    /// Claims up to `batch` deliveries whose next attempt is due and hands them to the
    /// consumer, waiting for room in the channel at most `wait` each (a message that does not
    /// fit stays claimed and comes due again after the lease). Returns how many were sent.
    pub async fn dispatch_due(&self, batch: u64, wait: Duration) -> Result<usize, DbErr> {
        let due = deliveries::take_due(&self.inner.db, 0.0, self.inner.lease, batch).await?;
        let mut sent = 0;
        for (event_id, attempt) in due {
            let msg = DeliveryMessage::new(&event_id, attempt);
            if self.inner.tx.send_timeout(msg, wait).await.is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    }

    pub(super) async fn ping(&self) -> Result<(), DbErr> {
        db::ping(&self.inner.db).await
    }
}

/// Sets a pending delivery's `next_attempt_at` (its claim, or "due now").
async fn set_next_attempt(
    db: &DatabaseConnection,
    delivery_id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(at))
        .filter(webhook_delivery::Column::Id.eq(delivery_id))
        .filter(webhook_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .exec(db)
        .await
        .map(|_| ())
}
