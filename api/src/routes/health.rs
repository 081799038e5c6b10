//! Probes: `/health` (every dependency with its latency), `/health/live`, `/health/ready`.

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::Value;
use truenumber_core::{
    limits::LimiterBackend,
    observability::health::{self as probes, Check, Checks, check},
    queue::QueueBackend,
    storage::{db, write_watch::WriteWatch},
};

use crate::state::AppState;

/// A probe's answer.
pub(crate) fn respond(status: u16, body: Value) -> Response {
    Json(body)
        .with_status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .into_response()
}

/// Each dependency by name: `database`, `redis` and `rabbitmq` in production mode;
/// `database`, `rateLimiter` and `queue` (both in-process) in standalone mode; with
/// `APP_TOKEN_JWKS_URL`, also `appTokenKeys`: up once the identity provider's key set has
/// arrived (a later failed refresh keeps it, and it stays up).
async fn dependency_checks(state: &AppState) -> Checks {
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
    let database = database.down_for(
        state
            .write_watch
            .as_ref()
            .and_then(WriteWatch::trouble)
            .map(|t| t.to_string()),
    );
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
        checks.push(("appTokenKeys", Check::known(up)));
    }
    Checks(checks)
}

/// Only the database gates readiness: without Redis a node still serves status and submit
/// (fail-open) and answers initiate with a clean 503, and without RabbitMQ events wait in the
/// outbox; both beat being taken out of rotation.
const READINESS_GATES: [&str; 1] = ["database"];

/// `GET /health`: every dependency, its latency; 503 when any is down.
#[handler]
pub async fn health(Data(state): Data<&AppState>) -> Response {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "rateLimiterFailOpenTotal".into(),
        state.limiter.fail_open_total().into(),
    );
    let (status, body) = dependency_checks(state).await.health(extra);
    respond(status, body)
}

/// `GET /health/live`: the process serves HTTP.
#[handler]
pub async fn live() -> Json<Value> {
    Json(probes::live())
}

/// `GET /health/ready`: 200 when this node can serve (the database answers and, standalone,
/// takes writes), else 503; every dependency's state is in the body, with `reasons` for the
/// checks that have one.
#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let (status, body) = dependency_checks(state).await.ready(&READINESS_GATES);
    respond(status, body)
}

/// `GET /metrics`: Prometheus text. Dependency and outbox gauges are refreshed per scrape.
#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    dependency_checks(state).await.record(&state.metrics);
    Response::builder()
        .content_type(probes::METRICS_CONTENT_TYPE)
        .body(probes::metrics_text(&state.metrics, &state.db).await)
}
