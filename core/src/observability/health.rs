//! The probes' logic, shared by the API node and the worker daemon (each serves it on its own
//! port, from its own list of dependencies): timing a dependency's check, the JSON of
//! `/health` (each dependency with its latency; 503 when any is down), `/health/ready` (503
//! when a dependency that gates readiness is down), `/health/live`, and refreshing the gauges
//! `/metrics` shows. Why a probe failed goes to the log, never into a response (the probes are
//! unauthenticated); only a fixed description that names no data does ([`Check::reason`]).

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use super::metrics::Metrics;

/// The longest one dependency's check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one dependency check: up or down and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Whether it answered in time.
    pub up: bool,
    /// Round-trip time in milliseconds.
    pub latency_ms: f64,
    /// Why it is down although it answers (standalone's database that has refused its write
    /// lock for too long): a fixed description, safe to show.
    pub reason: Option<String>,
}

impl Check {
    /// A check known without a round trip (a key set held or not).
    pub fn known(up: bool) -> Self {
        Self {
            up,
            latency_ms: 0.0,
            reason: None,
        }
    }

    /// This check, down for `reason` when there is one.
    pub fn down_for(mut self, reason: Option<String>) -> Self {
        if let Some(reason) = reason {
            self.up = false;
            self.reason = Some(reason);
        }
        self
    }

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

/// Every dependency of a process, by name, checked.
#[derive(Debug, Clone, Default)]
pub struct Checks(pub Vec<(&'static str, Check)>);

impl Checks {
    /// `/health`: `(status, body)`, 503 when any dependency is down; `extra` members (a
    /// counter the process wants shown) join the body.
    pub fn health(&self, extra: serde_json::Map<String, Value>) -> (u16, Value) {
        let healthy = self.0.iter().all(|(_, c)| c.up);
        let mut body = json!({
            "status": if healthy { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "checks": self
                .0
                .iter()
                .map(|(n, c)| ((*n).to_owned(), c.to_json()))
                .collect::<serde_json::Map<_, _>>(),
        });
        if let Some(members) = body.as_object_mut() {
            members.extend(extra);
        }
        (if healthy { 200 } else { 503 }, body)
    }

    /// `/health/ready`: `(status, body)`, 503 when a dependency named in `gates` is down;
    /// every dependency's state is in the body, with `reasons` for the checks that have one.
    pub fn ready(&self, gates: &[&str]) -> (u16, Value) {
        let report: serde_json::Map<_, _> = self
            .0
            .iter()
            .map(|(n, c)| ((*n).to_owned(), json!(if c.up { "up" } else { "down" })))
            .collect();
        let reasons: serde_json::Map<_, _> = self
            .0
            .iter()
            .filter_map(|(n, c)| Some(((*n).to_owned(), json!(c.reason.as_ref()?))))
            .collect();
        let ready = self.0.iter().all(|(n, c)| c.up || !gates.contains(n));
        let mut body = json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": report,
        });
        if !reasons.is_empty() {
            body["reasons"] = Value::Object(reasons);
        }
        (if ready { 200 } else { 503 }, body)
    }

    /// Sets the `dependency_up` gauges from these checks.
    pub fn record(&self, metrics: &Metrics) {
        for (name, c) in &self.0 {
            metrics.set_dependency_up(name, c.up);
        }
    }
}

/// `/health/live`: the process serves HTTP.
pub fn live() -> Value {
    json!({"status": "ok"})
}

/// `/metrics`: the Prometheus text, with the outbox gauges refreshed from `db` first (the
/// dependency gauges are the caller's [`Checks::record`]).
pub async fn metrics_text(metrics: &Metrics, db: &DatabaseConnection) -> String {
    if let Ok((backlog, oldest)) = crate::webhooks::events::outbox_backlog(db).await {
        metrics.set_outbox(backlog, oldest);
    }
    metrics.encode()
}

/// The content type of [`metrics_text`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_503_when_any_is_down_and_ready_only_when_a_gate_is() {
        let checks = Checks(vec![
            ("database", Check::known(true)),
            (
                "redis",
                Check {
                    up: false,
                    latency_ms: 2000.123,
                    reason: None,
                },
            ),
        ]);
        let (status, body) = checks.health(serde_json::Map::new());
        assert_eq!(status, 503);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["redis"]["latencyMs"], 2000.12);
        assert_eq!(checks.ready(&["database"]).0, 200);
        assert_eq!(checks.ready(&["database", "redis"]).0, 503);
        let unwritable = Checks(vec![(
            "database",
            Check::known(true).down_for(Some("locked".into())),
        )]);
        let (status, body) = unwritable.ready(&["database"]);
        assert_eq!(status, 503);
        assert_eq!(body["reasons"]["database"], "locked");
        assert_eq!(
            unwritable.health(serde_json::Map::new()).1["checks"]["database"]["reason"],
            "locked"
        );
    }
}
