//! The TrueNumber worker daemon: consumes verification events from RabbitMQ and delivers
//! signed webhooks with retries; relays events the API could not publish; expires overdue
//! sessions; republishes retries lost with a dying worker. Any number of workers run side by
//! side against one PostgreSQL and RabbitMQ.
//!
//! The delivery itself and the loops beside the consumer live in `truenumber_core`
//! (`webhooks::delivery`, `background`), shared with standalone mode; this crate is the
//! daemon: the RabbitMQ consumer, its health server and its shutdown.

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
use tokio::sync::watch;
use truenumber_core::{
    background::{self, sleep_or_stop, stopped},
    config::Config,
    observability::{
        health::{self, Checks},
        metrics::Metrics,
    },
    queue::{Broker, DeliveryMessage, Queue, Route as QueueRoute},
    storage::db,
    webhooks::{delivery::Deliverer, events::EventPublisher},
};

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

/// The worker's dependencies, checked: its database and RabbitMQ, both of which gate its
/// readiness (a worker without either delivers nothing).
async fn dependency_checks(state: &WorkerState) -> Checks {
    let (database, rabbitmq) = tokio::join!(
        health::check("database", db::ping(&state.db)),
        health::check("rabbitmq", state.queue.ping())
    );
    Checks(vec![("database", database), ("rabbitmq", rabbitmq)])
}

/// What gates a worker's readiness: everything it depends on.
const READINESS_GATES: [&str; 2] = ["database", "rabbitmq"];

/// A probe's answer.
fn respond(status: u16, body: serde_json::Value) -> Response {
    Json(body)
        .with_status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .into_response()
}

/// `GET /metrics` of a worker: its own deliveries, sweeps and relays, plus the outbox and
/// dependency gauges refreshed per scrape.
#[handler]
async fn metrics_endpoint(Data(state): Data<&WorkerState>) -> Response {
    dependency_checks(state).await.record(&state.metrics);
    Response::builder()
        .content_type(health::METRICS_CONTENT_TYPE)
        .body(health::metrics_text(&state.metrics, &state.db).await)
}

/// `GET /health/live`.
#[handler]
async fn live() -> Json<serde_json::Value> {
    Json(health::live())
}

/// `GET /health`: each dependency with its latency; 503 when any is down.
#[handler]
async fn health_endpoint(Data(state): Data<&WorkerState>) -> Response {
    let (status, body) = dependency_checks(state)
        .await
        .health(serde_json::Map::new());
    respond(status, body)
}

/// `GET /health/ready`: 503 unless the database and RabbitMQ answer.
#[handler]
async fn ready(Data(state): Data<&WorkerState>) -> Response {
    let (status, body) = dependency_checks(state).await.ready(&READINESS_GATES);
    respond(status, body)
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
    let broker = Arc::new(Broker::from_config(&config));
    let queue = Queue::RabbitMq(broker.clone());
    let metrics = Arc::new(Metrics::new());
    let deliverer = Deliverer::new(&config, db.clone(), queue.clone(), metrics.clone())?;

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
    let mut tasks = vec![tokio::spawn(consume_loop(
        broker.clone(),
        deliverer,
        config.worker_concurrency,
        stop_rx.clone(),
    ))];
    tasks.extend(background::spawn_upkeep(
        &config, &db, &queue, publisher, &metrics, &stop_rx,
    ));
    tracing::info!(%addr, health = %format!("http://{addr}/health"), "truenumber-worker running");

    let app = Route::new()
        .at("/health", get(health_endpoint))
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

/// Consumes the webhook queue, `concurrency` deliveries at a time, reconnecting with a
/// backoff; returns once `stop` turns true and the deliveries in flight are done.
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
