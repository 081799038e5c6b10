//! Probes: `/health` (every dependency with its latency), `/health/live`, `/health/ready`.

use std::time::{Duration, Instant};

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::{Value, json};
use truenumber_core::{
    limits::LimiterBackend,
    queue::QueueBackend,
    storage::{
        db,
        write_watch::{WriteTrouble, WriteWatch},
    },
    webhooks::events,
};

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one dependency check: up or down and how long it took. Why a probe failed
/// goes to the log, never into the response (`/health` is unauthenticated); only a fixed
/// description that names no data does ([`Check::reason`]).
#[derive(Debug)]
pub struct Check {
    /// Whether it answered in time.
    pub up: bool,
    /// Round-trip time in milliseconds.
    pub latency_ms: f64,
    /// Why it is down although it answers: standalone's database that has refused its write
    /// lock for longer than `SQLITE_BUSY_UNHEALTHY_SECONDS`.
    pub reason: Option<String>,
}

impl Check {
    fn to_json(&self) -> Value {
        let mut check = json!({
            "status": if self.up { "up" } else { "down" },
            "latencyMs": (self.latency_ms * 100.0).round() / 100.0,
        });
        if let Some(reason) = &self.reason {
            check["reason"] = json!(reason);
        }
        check
    }

    /// This check, down for `trouble` when there is any.
    fn unless_unwritable(mut self, trouble: Option<WriteTrouble>) -> Self {
        if let Some(t) = trouble {
            self.up = false;
            self.reason = Some(t.to_string());
        }
        self
    }
}

/// Times a probe of `dependency`, bounded by [`CHECK_TIMEOUT`]; a failure is logged with its
/// cause.
pub async fn check<F, E>(dependency: &str, probe: F) -> Check
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let up = match result {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(dependency, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(
                dependency,
                timeout_ms = CHECK_TIMEOUT.as_millis() as u64,
                "health check timed out"
            );
            false
        }
    };
    Check {
        up,
        latency_ms,
        reason: None,
    }
}

/// Each dependency by name: `database`, `redis` and `rabbitmq` in production mode;
/// `database`, `rateLimiter` and `queue` (both in-process) in standalone mode; with
/// `APP_TOKEN_JWKS_URL`, also `appTokenKeys`: up once the identity provider's key set has
/// arrived (a later failed refresh keeps it, and it stays up).
async fn dependency_checks(state: &AppState) -> Vec<(&'static str, Check)> {
    let limiter_name = match state.limiter.backend() {
        LimiterBackend::Redis => "redis",
        LimiterBackend::InProcess => "rateLimiter",
    };
    let queue_name = match state.queue.backend() {
        QueueBackend::RabbitMq => "rabbitmq",
        QueueBackend::InProcess => "queue",
    };
    let (database, limiter, queue) = tokio::join!(
        check("database", db::ping(&state.db)),
        check(limiter_name, state.limiter.ping()),
        check(queue_name, state.queue.ping())
    );
    let database =
        database.unless_unwritable(state.write_watch.as_ref().and_then(WriteWatch::trouble));
    let mut checks = vec![
        ("database", database),
        (limiter_name, limiter),
        (queue_name, queue),
    ];
    if let Some(source) = state.app_tokens.remote_source() {
        let up = source.is_ready();
        if !up {
            tracing::warn!(
                dependency = "appTokenKeys",
                url = source.url(),
                "health check failed: no app token key set has been fetched yet"
            );
        }
        checks.push((
            "appTokenKeys",
            Check {
                up,
                latency_ms: 0.0,
                reason: None,
            },
        ));
    }
    checks
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

/// `GET /health/ready`: 200 when this node can serve (the database answers and, standalone,
/// takes writes), else 503; every dependency's state is in the body, with `reasons` for the
/// checks that have one.
#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let checks = dependency_checks(state).await;
    let report: serde_json::Map<_, _> = checks
        .iter()
        .map(|(n, c)| ((*n).to_owned(), json!(if c.up { "up" } else { "down" })))
        .collect();
    let reasons: serde_json::Map<_, _> = checks
        .iter()
        .filter_map(|(n, c)| Some(((*n).to_owned(), json!(c.reason.as_ref()?))))
        .collect();
    let ready = checks
        .iter()
        .all(|(n, c)| c.up || !READINESS_GATES.contains(n));
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "checks": report,
    });
    if !reasons.is_empty() {
        body["reasons"] = Value::Object(reasons);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(body).with_status(status).into_response()
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
