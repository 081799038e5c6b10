//! Probes: `/health` (every dependency with its latency), `/health/live`, `/health/ready`.

use std::time::{Duration, Instant};

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::{Value, json};
use truenumber_core::{db, events};

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one dependency check.
#[derive(Debug)]
pub struct Check {
    /// Whether it answered in time.
    pub up: bool,
    /// Round-trip time in milliseconds.
    pub latency_ms: f64,
    /// Why not, when down.
    pub error: Option<String>,
}

impl Check {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "status": if self.up { "up" } else { "down" },
            "latencyMs": (self.latency_ms * 100.0).round() / 100.0,
        });
        if let (Some(err), Some(obj)) = (&self.error, v.as_object_mut()) {
            obj.insert("error".into(), json!(err));
        }
        v
    }
}

/// Times a probe, bounded by [`CHECK_TIMEOUT`].
pub async fn check<F, E>(probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(())) => Check {
            up: true,
            latency_ms,
            error: None,
        },
        Ok(Err(e)) => Check {
            up: false,
            latency_ms,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            up: false,
            latency_ms,
            error: Some("timed out".into()),
        },
    }
}

async fn dependency_checks(state: &AppState) -> Vec<(&'static str, Check)> {
    let (database, redis, rabbitmq) = tokio::join!(
        check(db::ping(&state.db)),
        check(state.limiter.ping()),
        check(state.broker.ping())
    );
    vec![
        ("database", database),
        ("redis", redis),
        ("rabbitmq", rabbitmq),
    ]
}

/// Only the database gates readiness: without Redis a node still serves status and submit
/// (fail-open) and answers initiate with a clean 503, and without RabbitMQ events wait in the
/// outbox; both beat being taken out of rotation.
const READINESS_GATES: [&str; 1] = ["database"];

/// `GET /health`: every dependency, its latency; 503 when any is down.
#[handler]
pub async fn health(Data(state): Data<&AppState>) -> Response {
    let checks = dependency_checks(state).await;
    let healthy = checks.iter().all(|(_, c)| c.up);
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "rateLimiterFailOpenTotal": state.limiter.fail_open_total(),
        "version": env!("CARGO_PKG_VERSION"),
        "checks": checks.iter().map(|(n, c)| ((*n).to_owned(), c.to_json())).collect::<serde_json::Map<_, _>>(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(body).with_status(status).into_response()
}

/// `GET /health/live`: the process serves HTTP.
#[handler]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/ready`: 200 when this node can serve (the database answers), else 503; every
/// dependency's state is in the body.
#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let checks = dependency_checks(state).await;
    let report: serde_json::Map<_, _> = checks
        .iter()
        .map(|(n, c)| ((*n).to_owned(), json!(if c.up { "up" } else { "down" })))
        .collect();
    let ready = checks
        .iter()
        .all(|(n, c)| c.up || !READINESS_GATES.contains(n));
    if ready {
        Json(json!({"status": "ready", "checks": report})).into_response()
    } else {
        Json(json!({"status": "unavailable", "checks": report}))
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text. Dependency and outbox gauges are refreshed per scrape.
#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    for (name, c) in dependency_checks(state).await {
        state.metrics.set_dependency_up(name, c.up);
    }
    if let Ok((backlog, oldest)) = events::outbox_backlog(&state.db).await {
        state.metrics.set_outbox(backlog, oldest);
    }
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}
