//! The TrueNumber worker daemon: consumes verification events from RabbitMQ and delivers
//! signed webhooks with retries; relays events the API could not publish; expires overdue
//! sessions; republishes retries lost with a dying worker. Any number of workers run side by
//! side against one PostgreSQL and RabbitMQ.

pub mod delivery;
pub mod signing;
pub mod ssrf;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, AcceptorExt, Listener, TcpListener},
    web::{Data, Json},
};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio::sync::watch;
use truenumber_core::{
    config::Config,
    observability::metrics::Metrics,
    queue::{Broker, DeliveryMessage, InProcessQueue, Queue, Route as QueueRoute, Topology},
    storage::db,
    verification::sweeps,
    webhooks::deliveries,
    webhooks::events::{self, EventPublisher},
};

use crate::delivery::Deliverer;

/// How often the relay looks for events the API did not publish, and how old they must be.
const RELAY_INTERVAL: Duration = Duration::from_secs(1);
const RELAY_MIN_AGE: Duration = Duration::from_secs(2);
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

/// Shared state of a worker.
#[derive(Clone, Debug)]
pub struct WorkerState {
    /// PostgreSQL pool.
    pub db: DatabaseConnection,
    /// The queue (RabbitMQ).
    pub queue: Queue,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

/// `GET /metrics` of a worker: its own deliveries, sweeps and relays, plus the outbox and
/// dependency gauges refreshed per scrape.
#[handler]
async fn metrics_endpoint(Data(state): Data<&WorkerState>) -> Response {
    let (database, rabbitmq) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), db::ping(&state.db)),
        tokio::time::timeout(Duration::from_secs(2), state.queue.ping())
    );
    state
        .metrics
        .set_dependency_up("database", matches!(database, Ok(Ok(()))));
    state
        .metrics
        .set_dependency_up("rabbitmq", matches!(rabbitmq, Ok(Ok(()))));
    if let Ok((backlog, oldest)) = events::outbox_backlog(&state.db).await {
        state.metrics.set_outbox(backlog, oldest);
    }
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

#[handler]
async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health`: each dependency with its latency; 503 when any is down.
#[handler]
async fn health(Data(state): Data<&WorkerState>) -> Response {
    async fn timed<E>(f: impl std::future::Future<Output = Result<(), E>>) -> serde_json::Value {
        let started = std::time::Instant::now();
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), f).await,
            Ok(Ok(()))
        );
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        json!({"status": if ok { "up" } else { "down" }, "latencyMs": latency_ms})
    }
    let (database, rabbitmq) = tokio::join!(timed(db::ping(&state.db)), timed(state.queue.ping()));
    let healthy = database["status"] == "up" && rabbitmq["status"] == "up";
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {"database": database, "rabbitmq": rabbitmq},
    });
    if healthy {
        Json(body).into_response()
    } else {
        Json(body)
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    }
}

#[handler]
async fn ready(Data(state): Data<&WorkerState>) -> Response {
    let (database, rabbitmq) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), db::ping(&state.db)),
        tokio::time::timeout(Duration::from_secs(2), state.queue.ping())
    );
    let up = |ok: bool| if ok { "up" } else { "down" };
    let (db_ok, mq_ok) = (
        matches!(database, Ok(Ok(()))),
        matches!(rabbitmq, Ok(Ok(()))),
    );
    let body = json!({
        "status": if db_ok && mq_ok { "ready" } else { "unavailable" },
        "checks": {"database": up(db_ok), "rabbitmq": up(mq_ok)},
    });
    if db_ok && mq_ok {
        Json(body).into_response()
    } else {
        Json(body)
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    }
}

/// Runs a worker until `shutdown` resolves: stops consuming, lets in-flight deliveries finish
/// (their unacknowledged messages return to the queue if they cannot), and returns.
/// Serves `/health`, `/health/live`, `/health/ready` and `/metrics` on `WORKER_PORT` (0 picks a free port, reported
/// through `on_bound`).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let db = db::connect(&config).await?;
    let topology = Topology::new(&config.amqp_queue_prefix, &config.webhook_retry_schedule);
    let broker = Arc::new(Broker::new(
        config.amqp_url.expose(),
        topology,
        Duration::from_secs(5),
    ));
    let queue = Queue::RabbitMq(broker.clone());
    let metrics = Arc::new(Metrics::new());
    let deliverer = Deliverer::new(
        db.clone(),
        queue.clone(),
        config.webhook_timeout,
        config.webhook_allow_private_networks,
        config.webhook_retry_schedule.clone(),
        metrics.clone(),
    )?;

    let bind_addr = SocketAddr::from(([0, 0, 0, 0], config.worker_port));
    let acceptor = TcpListener::bind(bind_addr)
        .into_acceptor()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on WORKER_PORT {bind_addr}: {e} (another worker on this host? \
                 give each its own WORKER_PORT, or 0 for a free one)"
            )
        })?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("worker listener has no address"))?;
    on_bound(addr);

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = WorkerState {
        db: db.clone(),
        queue: queue.clone(),
        metrics: metrics.clone(),
    };
    let publisher = EventPublisher::start(db.clone(), queue.clone());
    let tasks = vec![
        tokio::spawn(consume_loop(
            broker.clone(),
            deliverer,
            config.worker_concurrency,
            stop_rx.clone(),
        )),
        tokio::spawn(relay_loop(
            db.clone(),
            queue.clone(),
            metrics.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(sweep_loop(
            db.clone(),
            publisher,
            metrics.clone(),
            config.sweep_interval,
            stop_rx.clone(),
        )),
        tokio::spawn(overdue_loop(db.clone(), broker.clone(), stop_rx.clone())),
        tokio::spawn(retention_loop(
            db.clone(),
            config.data_retention_days,
            stop_rx.clone(),
        )),
    ];
    tracing::info!(%addr, health = %format!("http://{addr}/health"), "truenumber-worker running");

    let app = Route::new()
        .at("/health", get(health))
        .at("/health/live", get(live))
        .at("/health/ready", get(ready))
        .at("/metrics", get(metrics_endpoint))
        .data(state);
    let mut stop_for_server = stop_rx.clone();
    let server = Server::new_with_acceptor(acceptor.boxed()).run_with_graceful_shutdown(
        app,
        async move {
            let _ = stop_for_server.wait_for(|s| *s).await;
        },
        Some(Duration::from_secs(5)),
    );
    let server = tokio::spawn(server);

    shutdown.await;
    tracing::info!("shutdown requested; finishing in-flight deliveries");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = server.await;
    let _ = db.close().await;
    tracing::info!("truenumber-worker stopped");
    Ok(())
}

/// Standalone mode: the worker's loops inside the API's process, on its SQLite database and
/// in-process queue: the consumer (deliveries with retries), the dispatcher of due deliveries,
/// the relay, the expiry sweep and the retention sweep. They return once `stop` turns true, after in-flight
/// deliveries finish. `publisher` is the process's one event publisher (the API's).
pub async fn spawn_in_process(
    config: &Config,
    db: DatabaseConnection,
    queue: InProcessQueue,
    publisher: EventPublisher,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let receiver = queue
        .take_receiver()
        .await
        .ok_or_else(|| anyhow::anyhow!("the in-process queue already has its consumer"))?;
    let deliverer = Deliverer::new(
        db.clone(),
        Queue::InProcess(queue.clone()),
        config.webhook_timeout,
        config.webhook_allow_private_networks,
        config.webhook_retry_schedule.clone(),
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

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `d`, or returns true early when asked to stop.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        () = stopped(stop) => true,
    }
}

async fn consume_loop(
    broker: Arc<Broker>,
    deliverer: Deliverer,
    concurrency: u16,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let tag = format!("truenumber-worker-{}", uuid::Uuid::new_v4().simple());
    loop {
        if *stop.borrow() {
            return;
        }
        match broker.consume(&tag, concurrency).await {
            Ok((conn, channel, consumer)) => {
                backoff = Duration::from_millis(200);
                let mut stop_stream = stop.clone();
                consumer
                    .take_until(Box::pin(async move { stopped(&mut stop_stream).await }))
                    .for_each_concurrent(usize::from(concurrency), |delivery| {
                        let (deliverer, broker) = (deliverer.clone(), broker.clone());
                        async move {
                            match delivery {
                                Ok(d) => process(&deliverer, &broker, d).await,
                                Err(e) => tracing::warn!(error = %e, "consumer error"),
                            }
                        }
                    })
                    .await;
                // Unacknowledged messages go back to the queue when the channel closes.
                let _ = channel.close(200, "worker stopping".into()).await;
                let _ = conn.close(200, "worker stopping".into()).await;
                if *stop.borrow() {
                    return;
                }
                tracing::warn!("RabbitMQ consumer ended; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot consume from RabbitMQ");
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn process(deliverer: &Deliverer, broker: &Broker, d: lapin::message::Delivery) {
    let Ok(msg) = serde_json::from_slice::<DeliveryMessage>(&d.data) else {
        // A poison message: to the dead-letter queue, never back.
        tracing::error!(bytes = d.data.len(), "unreadable message dead-lettered");
        let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
        return;
    };
    match deliverer.handle(&msg).await {
        Ok(outcome) => {
            tracing::debug!(event_id = %msg.event_id, ?outcome, "message handled");
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
        Err(e) => {
            // The database is unreachable: park the message in the shortest retry queue
            // (which also resets RabbitMQ's delivery count), or failing that, requeue it.
            tracing::warn!(event_id = %msg.event_id, error = %e, "delivery postponed");
            let parked = match broker.topology().retry_delay_at_least(Duration::ZERO) {
                Some(delay) => broker
                    .publish(
                        &msg,
                        QueueRoute::Retry {
                            delay,
                            expiration: delay,
                        },
                    )
                    .await
                    .is_ok(),
                None => false,
            };
            if parked {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            } else {
                let _ = d
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
            }
        }
    }
}

async fn relay_loop(
    db: DatabaseConnection,
    queue: Queue,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match events::relay_unpublished(&db, &queue, RELAY_MIN_AGE, 200).await {
                Ok(200) => {
                    metrics.relayed(200);
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

async fn sweep_loop(
    db: DatabaseConnection,
    publisher: EventPublisher,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match sweeps::expire_due_sessions(&db, 500).await {
                Ok(ids) => {
                    let n = ids.len();
                    metrics.sweep(n as u64);
                    if n > 0 {
                        tracing::info!(expired = n, "expired overdue sessions");
                    }
                    for id in ids {
                        publisher.publish_soon(id);
                    }
                    if n < 500 {
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
/// deliveries, every [`RETENTION_INTERVAL`]. Logs counts only, never a number.
async fn retention_loop(
    db: DatabaseConnection,
    default_days: u32,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match sweeps::apply_retention(&db, default_days, RETENTION_BATCH).await {
            Ok(run) if run == sweeps::RetentionRun::default() => {}
            Ok(run) => tracing::info!(
                sessions = run.sessions,
                test_events = run.test_events,
                "retention: old data deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        if sleep_or_stop(RETENTION_INTERVAL, &mut stop).await {
            return;
        }
    }
}

async fn overdue_loop(
    db: DatabaseConnection,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if sleep_or_stop(OVERDUE_INTERVAL, &mut stop).await {
            return;
        }
        match deliveries::take_overdue(&db, OVERDUE_GRACE_SECS, 200).await {
            Ok(due) => {
                for (event_id, attempt) in due {
                    let msg = DeliveryMessage {
                        v: DeliveryMessage::VERSION,
                        event_id,
                        attempt,
                    };
                    if let Err(e) = broker.publish(&msg, QueueRoute::Deliver).await {
                        tracing::warn!(error = %e, "could not republish an overdue delivery");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "overdue sweep failed"),
        }
    }
}
