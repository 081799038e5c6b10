//! The TrueNumber worker daemon. Any number of workers run side by side against one
//! PostgreSQL, Redis and RabbitMQ. For now it connects, serves its health probes and idles;
//! webhook delivery, expiry sweeps and the outbox relay arrive with the event pipeline.

use std::{net::SocketAddr, time::Duration};

use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, AcceptorExt, Listener, TcpListener},
    web::{Data, Json},
};
use sea_orm::DatabaseConnection;
use serde_json::json;
use truenumber_core::{config::Config, db};

/// Shared state of a worker.
#[derive(Clone, Debug)]
pub struct WorkerState {
    /// PostgreSQL pool.
    pub db: DatabaseConnection,
}

#[handler]
async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[handler]
async fn ready(Data(state): Data<&WorkerState>) -> Response {
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), db::ping(&state.db)).await,
        Ok(Ok(()))
    );
    if ok {
        Json(json!({"status": "ready", "checks": {"database": "up"}})).into_response()
    } else {
        Json(json!({"status": "unavailable", "checks": {"database": "down"}}))
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    }
}

/// Runs a worker until `shutdown` resolves: connects, serves `/health/live` and
/// `/health/ready` on `WORKER_PORT` (0 picks a free port, reported through `on_bound`).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
    on_bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let db = db::connect(&config).await?;
    let acceptor = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], config.worker_port)))
        .into_acceptor()
        .await?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or_else(|| anyhow::anyhow!("worker listener has no address"))?;
    on_bound(addr);
    tracing::info!(%addr, "truenumber-worker ready (health probes only until the event pipeline lands)");
    let app = Route::new()
        .at("/health/live", get(live))
        .at("/health/ready", get(ready))
        .data(WorkerState { db: db.clone() });
    Server::new_with_acceptor(acceptor.boxed())
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(30)))
        .await?;
    let _ = db.close().await;
    tracing::info!("truenumber-worker stopped");
    Ok(())
}
