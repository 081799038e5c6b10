//! Delivering one webhook attempt: sign, POST, classify, record, schedule the retry.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::DatabaseConnection;
use truenumber_core::{
    observability::metrics::Metrics,
    queue::{DeliveryMessage, Queue},
    webhooks::deliveries::{self, AttemptRecord, DeliveryStatus, NextStep},
};

use crate::{
    signing::WebhookSigner,
    ssrf::{GuardedResolver, check_url},
};

/// The longest `Retry-After` we honour beyond the schedule's own delay (one day).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// How much of a response body we keep for the record.
const ERROR_BODY_CHARS: usize = 200;
/// The most of a failed response's body we read (enough for 200 characters of UTF-8).
const ERROR_BODY_BYTES: usize = 4 * ERROR_BODY_CHARS;

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event no longer exists (or never did): nothing to do.
    UnknownEvent,
    /// The company has no webhook URL.
    NoWebhook,
    /// The delivery is already finished, or this attempt was already made.
    AlreadyHandled,
    /// An attempt was made; the delivery is now in this state.
    Attempted(NextStep),
}

/// Infrastructure failed before an attempt could be recorded; the message must come back.
#[derive(Debug, thiserror::Error)]
#[error("delivery could not be processed: {0}")]
pub struct Retryable(pub String);

/// Delivers webhooks for one worker.
#[derive(Clone)]
pub struct Deliverer {
    db: DatabaseConnection,
    queue: Queue,
    http: reqwest::Client,
    allow_private: bool,
    schedule: Vec<Duration>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").finish_non_exhaustive()
    }
}

/// The result of one HTTP attempt.
#[derive(Debug)]
struct Response {
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    error: Option<String>,
}

impl Deliverer {
    /// A deliverer with its own HTTP client: per-attempt timeout, no redirects, no proxy, and
    /// the SSRF-guarded resolver.
    pub fn new(
        db: DatabaseConnection,
        queue: Queue,
        timeout: Duration,
        allow_private: bool,
        schedule: Vec<Duration>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("TrueNumber-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver { allow_private })
            .build()?;
        Ok(Self {
            db,
            queue,
            http,
            allow_private,
            schedule,
            metrics,
        })
    }

    /// Handles one message.
    pub async fn handle(&self, msg: &DeliveryMessage) -> Result<Outcome, Retryable> {
        let db_err = |e: sea_orm::DbErr| Retryable(e.to_string());
        let Some(target) = deliveries::event_target(&self.db, &msg.event_id)
            .await
            .map_err(db_err)?
        else {
            return Ok(Outcome::UnknownEvent);
        };
        let Some(url) = target.webhook_url.clone() else {
            return Ok(Outcome::NoWebhook);
        };
        let delivery =
            deliveries::get_or_create(&self.db, &target.event_id, &target.company_id, &url)
                .await
                .map_err(db_err)?;
        let attempt = i32::try_from(msg.attempt).unwrap_or(i32::MAX);
        if delivery.status != DeliveryStatus::Pending || delivery.attempts >= attempt {
            return Ok(Outcome::AlreadyHandled);
        }

        let started = Instant::now();
        let response = self
            .send(
                &url,
                &target.event_id,
                &target.payload,
                &target.signing_secrets(chrono::Utc::now()),
            )
            .await;
        let elapsed = started.elapsed();
        let latency_ms = i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX);

        let retry_number = attempt - delivery.round_start; // 1 for the first of a round
        let scheduled = usize::try_from(retry_number - 1)
            .ok()
            .and_then(|i| self.schedule.get(i).copied());
        let next = match (&response.status, &response.error) {
            (Some(s), _) if s.is_success() => NextStep::Succeeded,
            (Some(s), _) if *s == StatusCode::GONE => NextStep::Failed,
            (None, Some(e)) if e.starts_with("refused:") => NextStep::Failed,
            _ => match scheduled {
                None => NextStep::Failed,
                Some(delay) => {
                    let wanted = response
                        .retry_after
                        .map_or(delay, |ra| ra.min(MAX_RETRY_AFTER).max(delay));
                    NextStep::RetryIn(wanted.as_secs())
                }
            },
        };
        let record = AttemptRecord {
            attempt,
            url,
            status_code: response.status.map(|s| i32::from(s.as_u16())),
            latency_ms,
            error: response.error,
            next,
        };
        deliveries::record_attempt(&self.db, delivery.id, &record)
            .await
            .map_err(db_err)?;
        let result = match next {
            NextStep::Succeeded => "succeeded",
            NextStep::Failed => "failed",
            NextStep::RetryIn(_) => "retry",
        };
        self.metrics.webhook_attempt(result, elapsed.as_secs_f64());

        if let NextStep::RetryIn(secs) = next {
            let retry = DeliveryMessage {
                v: DeliveryMessage::VERSION,
                event_id: target.event_id.clone(),
                attempt: msg.attempt.saturating_add(1),
            };
            if let Err(e) = self
                .queue
                .publish_retry(&retry, Duration::from_secs(secs))
                .await
            {
                // The attempt is recorded with its next_attempt_at; the overdue sweep
                // publishes the retry if this message is lost.
                tracing::warn!(event_id = %target.event_id, error = %e, "could not schedule retry");
            }
        }
        // The error says why an attempt failed without a status (a refused target, a
        // timeout, a connection error), so the log line alone explains the outcome.
        tracing::info!(event_id = %target.event_id, company_id = %target.company_id,
            attempt, status = ?record.status_code, error = record.error.as_deref(), latency_ms,
            next = ?next, "webhook attempt");
        Ok(Outcome::Attempted(next))
    }

    /// One attempt, signed with every secret in `secrets` (the current one first; two during a
    /// rotation's overlap, space-separated in `webhook-signature` as Standard Webhooks allows).
    async fn send(&self, url: &str, event_id: &str, payload: &str, secrets: &[&str]) -> Response {
        let fail = |error: String| Response {
            status: None,
            retry_after: None,
            error: Some(error),
        };
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return fail(format!("refused: invalid URL: {e}")),
        };
        if let Err(e) = check_url(&parsed, self.allow_private) {
            return fail(format!("refused: {e}"));
        }
        let timestamp = chrono::Utc::now().timestamp();
        let mut signatures = Vec::with_capacity(secrets.len());
        for secret in secrets {
            match WebhookSigner::new(secret) {
                Ok(signer) => signatures.push(signer.sign(event_id, timestamp, payload.as_bytes())),
                Err(e) => return fail(format!("refused: {e}")),
            }
        }
        let signature = signatures.join(" ");
        let result = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.to_owned())
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(resp.headers());
                let error = if status.is_success() {
                    None
                } else {
                    let body = body_prefix(resp).await;
                    Some(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        body.chars().take(ERROR_BODY_CHARS).collect::<String>()
                    ))
                };
                Response {
                    status: Some(status),
                    retry_after,
                    error,
                }
            }
            Err(e) => fail(describe(&e)),
        }
    }
}

/// The start of a failed response's body, for the attempt record. At most
/// [`ERROR_BODY_BYTES`] are read: a receiver's body can be any size, and the rest is dropped
/// with the connection.
async fn body_prefix(mut resp: reqwest::Response) -> String {
    let mut kept: Vec<u8> = Vec::new();
    while kept.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_BYTES - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// A readable cause, with the SSRF refusal marked so it is not retried.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("non-public address") {
            return format!("refused: {s}");
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let secs = date.signed_duration_since(chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap().as_secs();
        assert!((85..=90).contains(&d), "{d}");
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
