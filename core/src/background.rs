//! The background loops of webhook delivery and data upkeep, shared by the worker daemon and
//! standalone mode: the relay of unpublished events, the expiry sweep, the retention sweep,
//! the overdue sweep (production), and standalone's in-process consumer and dispatcher.
//!
//! [`spawn_standalone`] starts standalone's set; [`spawn_upkeep`] the loops a worker runs
//! beside its RabbitMQ consumer (which, with its health server, stays in the worker crate).
//! Every loop returns once `stop` turns true (a consumer after its in-flight deliveries).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    config::Config,
    observability::metrics::Metrics,
    queue::{DeliveryMessage, InProcessQueue, Queue},
    verification::{expiry, retention},
    webhooks::{
        self, deliveries,
        delivery::Deliverer,
        events::{self, EventPublisher},
    },
};

/// How often the relay looks for events the API did not publish, and how old they must be.
const RELAY_INTERVAL: Duration = Duration::from_secs(1);
const RELAY_MIN_AGE: Duration = Duration::from_secs(2);
/// Events the relay publishes per pass.
const RELAY_BATCH: usize = 200;
/// How often overdue deliveries are looked for, and how overdue they must be.
const OVERDUE_INTERVAL: Duration = Duration::from_secs(15);
const OVERDUE_GRACE_SECS: f64 = 60.0;
/// How often standalone mode hands due deliveries (first attempts and retries) to its consumer.
const DISPATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How often the retention sweep runs (deleting a day-old boundary's worth of sessions late by
/// a minute changes nothing; each run is one index probe per company when there is nothing to
/// delete).
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Sessions deleted per statement by the retention sweep: a bounded transaction.
const RETENTION_BATCH: u64 = 500;
/// Sessions expired per statement by the expiry sweep.
const SWEEP_BATCH: u64 = 500;

/// Resolves once `stop` turns true.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or returns true early when asked to stop.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        () = stopped(stop) => true,
    }
}

/// The loops a worker runs beside its consumer: the relay, the expiry sweep (its events to
/// `publisher`), the overdue sweep and the retention sweep.
pub fn spawn_upkeep(
    config: &Config,
    db: &DatabaseConnection,
    queue: &Queue,
    publisher: EventPublisher,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(relay_loop(
            db.clone(),
            queue.clone(),
            metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(sweep_loop(
            db.clone(),
            publisher,
            metrics.clone(),
            config.sweep_interval,
            stop.clone(),
        )),
        tokio::spawn(overdue_loop(db.clone(), queue.clone(), stop.clone())),
        tokio::spawn(retention_loop(
            db.clone(),
            config.data_retention_days,
            config.deny_cooldown,
            stop.clone(),
        )),
    ]
}

/// Standalone mode: the worker's loops inside the API's process, on its SQLite database and
/// in-process queue: the consumer (deliveries with retries), the dispatcher of due deliveries,
/// the relay, the expiry sweep and the retention sweep. `publisher` is the process's one event
/// publisher (the API's).
pub async fn spawn_standalone(
    config: &Config,
    db: DatabaseConnection,
    queue: InProcessQueue,
    publisher: EventPublisher,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let receiver = queue
        .take_receiver()
        .await
        .ok_or_else(|| anyhow::anyhow!("the in-process queue already has its consumer"))?;
    let deliverer = Deliverer::new(
        config,
        db.clone(),
        Queue::InProcess(queue.clone()),
        metrics.clone(),
    )?;
    Ok(vec![
        tokio::spawn(consume_in_process(
            receiver,
            deliverer,
            config.worker_concurrency,
            stop.clone(),
        )),
        tokio::spawn(dispatch_loop(queue.clone(), stop.clone())),
        tokio::spawn(relay_loop(
            db.clone(),
            Queue::InProcess(queue),
            metrics.clone(),
            stop.clone(),
        )),
        tokio::spawn(retention_loop(
            db.clone(),
            config.data_retention_days,
            config.deny_cooldown,
            stop.clone(),
        )),
        tokio::spawn(sweep_loop(
            db,
            publisher,
            metrics,
            config.sweep_interval,
            stop,
        )),
    ])
}

/// Delivers what the in-process queue hands over, `concurrency` at a time. Nothing needs
/// acknowledging: a delivery's state is in its row, and one that could not be processed (the
/// database failed) comes due again when its claim runs out.
async fn consume_in_process(
    mut receiver: tokio::sync::mpsc::Receiver<DeliveryMessage>,
    deliverer: Deliverer,
    concurrency: u16,
    stop: watch::Receiver<bool>,
) {
    let mut stop_stream = stop.clone();
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
        .take_until(Box::pin(async move { stopped(&mut stop_stream).await }))
        .for_each_concurrent(usize::from(concurrency), |msg| {
            let deliverer = deliverer.clone();
            async move {
                match deliverer.handle(&msg).await {
                    Ok(outcome) => {
                        tracing::debug!(event_id = %msg.event_id, ?outcome, "message handled");
                    }
                    Err(e) => tracing::warn!(event_id = %msg.event_id, error = %e,
                        "delivery postponed; it comes due again when its claim runs out"),
                }
            }
        })
        .await;
}

/// Hands due deliveries (retries, and anything a crash or a full channel left behind) to the
/// in-process consumer. The first pass runs at once, so retries that fell due while the
/// process was down go out right after start.
async fn dispatch_loop(queue: InProcessQueue, mut stop: watch::Receiver<bool>) {
    const BATCH: u64 = 200;
    loop {
        loop {
            match queue.dispatch_due(BATCH, Duration::from_secs(5)).await {
                Ok(n) if n as u64 == BATCH => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatching due deliveries failed");
                    break;
                }
            }
            if *stop.borrow() {
                return;
            }
        }
        if sleep_or_stop(DISPATCH_INTERVAL, &mut stop).await {
            return;
        }
    }
}

/// Publishes events the API could not (see [`events::relay_unpublished`]).
async fn relay_loop(
    db: DatabaseConnection,
    queue: Queue,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match events::relay_unpublished(&db, &queue, RELAY_MIN_AGE, RELAY_BATCH as u64).await {
                Ok(RELAY_BATCH) => {
                    metrics.relayed(RELAY_BATCH as u64);
                    continue;
                }
                Ok(n) => {
                    metrics.relayed(n as u64);
                    if n > 0 {
                        tracing::info!(published = n, "relayed unpublished events");
                    }
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "relay pass failed");
                    break;
                }
            }
        }
        if sleep_or_stop(RELAY_INTERVAL, &mut stop).await {
            return;
        }
    }
}

/// Expires pending sessions past their expiry every `every`, handing their events to
/// `publisher`.
async fn sweep_loop(
    db: DatabaseConnection,
    publisher: EventPublisher,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match expiry::expire_due_sessions(&db, SWEEP_BATCH).await {
                Ok(ids) => {
                    let n = ids.len();
                    metrics.sweep(n as u64);
                    if n > 0 {
                        tracing::info!(expired = n, "expired overdue sessions");
                    }
                    for id in ids {
                        publisher.publish_soon(id);
                    }
                    if (n as u64) < SWEEP_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed");
                    break;
                }
            }
        }
        if sleep_or_stop(every, &mut stop).await {
            return;
        }
    }
}

/// Deletes completed sessions past their company's retention window, with their events and
/// deliveries, and the abuse controls' data once it has served (cooldowns that ended, refusal
/// counters older than the summary's longest window), every [`RETENTION_INTERVAL`]. Logs counts
/// only, never a number.
async fn retention_loop(
    db: DatabaseConnection,
    default_days: u32,
    default_cooldown: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match retention::apply_retention(&db, default_days, RETENTION_BATCH).await {
            Ok(run) if run == retention::RetentionRun::default() => {}
            Ok(run) => tracing::info!(
                sessions = run.sessions,
                test_events = run.test_events,
                "retention: old data deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        match crate::abuse::forget_served(&db, default_cooldown).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(
                rows,
                "retention: ended cooldowns and old refusal counts deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "abuse-control retention failed"),
        }
        if sleep_or_stop(RETENTION_INTERVAL, &mut stop).await {
            return;
        }
    }
}

/// Publishes again the retries that a dying worker took with it: deliveries more than a
/// minute past their `next_attempt_at`, leased so that only one worker takes each.
async fn overdue_loop(db: DatabaseConnection, queue: Queue, mut stop: watch::Receiver<bool>) {
    loop {
        if sleep_or_stop(OVERDUE_INTERVAL, &mut stop).await {
            return;
        }
        match deliveries::take_overdue(&db, OVERDUE_GRACE_SECS, 200).await {
            Ok(due) => {
                for (event_id, e) in webhooks::publish_attempts(&queue, &due).await {
                    tracing::warn!(%event_id, error = %e, "could not republish an overdue delivery");
                }
            }
            Err(e) => tracing::warn!(error = %e, "overdue sweep failed"),
        }
    }
}
