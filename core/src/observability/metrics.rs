//! Prometheus metrics of the API and the worker (text exposition at `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Method.
    pub method: String,
    /// The matched route template (`unmatched` for unknown paths, so cardinality stays bounded).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of an HTTP latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// A single `outcome` / `limit` / `result` / `dependency` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The value.
    pub kind: String,
}

fn kind(k: &str) -> KindLabel {
    KindLabel { kind: k.to_owned() }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    verifications: Family<KindLabel, Counter>,
    rate_limited: Family<KindLabel, Counter>,
    initiations_refused: Family<KindLabel, Counter>,
    rate_limit_fail_open: Family<KindLabel, Counter>,
    webhook_attempts: Family<KindLabel, Counter>,
    webhook_latency: Histogram,
    outbox_backlog: Gauge,
    outbox_oldest_seconds: Gauge<f64, AtomicU64>,
    sweeps: Counter,
    sessions_expired: Counter,
    events_relayed: Counter,
    api_key_hashes: Counter,
    api_key_last_used_writes: Counter,
    app_token_key_fetches: Family<KindLabel, Counter>,
    dependency_up: Family<KindLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `truenumber` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("truenumber");
        let m = Self {
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            verifications: Family::default(),
            rate_limited: Family::default(),
            initiations_refused: Family::default(),
            rate_limit_fail_open: Family::default(),
            webhook_attempts: Family::default(),
            webhook_latency: latency_histogram(),
            outbox_backlog: Gauge::default(),
            outbox_oldest_seconds: Gauge::default(),
            sweeps: Counter::default(),
            sessions_expired: Counter::default(),
            events_relayed: Counter::default(),
            api_key_hashes: Counter::default(),
            api_key_last_used_writes: Counter::default(),
            app_token_key_fetches: Family::default(),
            dependency_up: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            m.http_latency.clone(),
        );
        registry.register(
            "verifications",
            "Live verification outcomes (initiated, replayed, verified, failed, denied, expired)",
            m.verifications.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "initiations_refused",
            "Initiations refused by the abuse controls, by reason (number_rate_limited, \
             recently_denied, blocked_by_user, country_not_allowed)",
            m.initiations_refused.clone(),
        );
        registry.register(
            "rate_limit_fail_open",
            "Requests let through unlimited because Redis was unavailable",
            m.rate_limit_fail_open.clone(),
        );
        registry.register(
            "webhook_attempts",
            "Webhook attempts by result (succeeded, retry, failed)",
            m.webhook_attempts.clone(),
        );
        registry.register(
            "webhook_attempt_duration_seconds",
            "Webhook attempt latency",
            m.webhook_latency.clone(),
        );
        registry.register(
            "app_token_key_fetches",
            "Fetches of APP_TOKEN_JWKS_URL by outcome (ok, failed; a failed one keeps the last \
             good key set)",
            m.app_token_key_fetches.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Events not yet published to RabbitMQ",
            m.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_oldest_unpublished_seconds",
            "Age of the oldest unpublished event",
            m.outbox_oldest_seconds.clone(),
        );
        registry.register("sweeps", "Expiry sweep passes", m.sweeps.clone());
        registry.register(
            "sessions_expired",
            "Sessions expired by sweeps",
            m.sessions_expired.clone(),
        );
        registry.register(
            "events_relayed",
            "Events published by the relay (the API did not publish them)",
            m.events_relayed.clone(),
        );
        registry.register(
            "api_key_hashes",
            "argon2 verifications of API keys (cache misses whose secret passed its check value)",
            m.api_key_hashes.clone(),
        );
        registry.register(
            "api_key_last_used_writes",
            "Writes of an API key's lastUsedAt (at most one per key per minute, across nodes)",
            m.api_key_last_used_writes.clone(),
        );
        registry.register(
            "dependency_up",
            "1 when a dependency answered the last scrape's check",
            m.dependency_up.clone(),
        );
        Self { registry, ..m }
    }

    /// Records one HTTP request.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a verification outcome.
    pub fn verification(&self, outcome: &str) {
        self.verifications.get_or_create(&kind(outcome)).inc();
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited.get_or_create(&kind(limit)).inc();
    }

    /// Counts a request let through because Redis was unavailable.
    pub fn rate_limit_fail_open(&self, limit: &str) {
        self.rate_limit_fail_open.get_or_create(&kind(limit)).inc();
    }

    /// Records a webhook attempt.
    pub fn webhook_attempt(&self, result: &str, seconds: f64) {
        self.webhook_attempts.get_or_create(&kind(result)).inc();
        self.webhook_latency.observe(seconds);
    }

    /// Records a sweep pass.
    pub fn sweep(&self, expired: u64) {
        self.sweeps.inc();
        self.sessions_expired.inc_by(expired);
    }

    /// Counts relayed events.
    pub fn relayed(&self, n: u64) {
        self.events_relayed.inc_by(n);
    }

    /// Sets the outbox gauges.
    pub fn set_outbox(&self, backlog: i64, oldest_seconds: f64) {
        self.outbox_backlog.set(backlog);
        self.outbox_oldest_seconds.set(oldest_seconds);
    }

    /// Sets a dependency's up gauge.
    pub fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .get_or_create(&kind(dependency))
            .set(i64::from(up));
    }

    /// The counters of the API-key authenticator: argon2 verifications and `lastUsedAt`
    /// writes.
    pub fn auth(&self) -> crate::companies::api_keys::AuthMetrics {
        crate::companies::api_keys::AuthMetrics {
            hashes: self.api_key_hashes.clone(),
            last_used_writes: self.api_key_last_used_writes.clone(),
        }
    }

    /// Counts an initiation refused by an abuse control.
    pub fn initiation_refused(&self, reason: &str) {
        self.initiations_refused.get_or_create(&kind(reason)).inc();
    }

    /// The counter of `APP_TOKEN_JWKS_URL` fetches, by outcome (for the key source).
    pub fn app_token_key_fetches(&self) -> Family<KindLabel, Counter> {
        self.app_token_key_fetches.clone()
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_encodes() {
        let m = Metrics::new();
        m.http_request("GET", "/health/live", 200, 0.002);
        m.verification("verified");
        m.rate_limited("initiate");
        m.webhook_attempt("succeeded", 0.05);
        m.set_outbox(3, 1.5);
        m.sweep(4);
        m.set_dependency_up("redis", false);
        let text = m.encode();
        for line in [
            "truenumber_http_requests_total{method=\"GET\",route=\"/health/live\",status=\"200\"} 1",
            "truenumber_verifications_total{kind=\"verified\"} 1",
            "truenumber_rate_limited_total{kind=\"initiate\"} 1",
            "truenumber_webhook_attempts_total{kind=\"succeeded\"} 1",
            "truenumber_outbox_backlog 3",
            "truenumber_sessions_expired_total 4",
            "truenumber_dependency_up{kind=\"redis\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
