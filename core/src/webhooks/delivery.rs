//! Delivering one webhook attempt: open the delivery (the one place delivery rows are made),
//! sign, POST, classify the outcome, decide the retry, record it, queue the retry.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, header::HeaderMap};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use super::{
    deliveries::{self, AttemptRecord, Delivery, DeliveryStatus, EventTarget, NextStep},
    retry::{self, JitterSource, RandomJitter, Retry},
    signing::{BadSecret, WebhookSigner},
    target::{GuardedResolver, TargetRefused, check_url},
};
use crate::{
    config::Config,
    observability::metrics::Metrics,
    queue::{DeliveryMessage, Queue},
};

/// How much of a response body we keep for the record.
const ERROR_BODY_CHARS: usize = 200;
/// The most of a failed response's body we read (enough for 200 characters of UTF-8).
const ERROR_BODY_BYTES: usize = 4 * ERROR_BODY_CHARS;
/// A retry message that arrives this much before its time is attempted anyway (clocks of
/// workers differ a little); one that arrives earlier goes back to wait.
const EARLY_TOLERANCE: Duration = Duration::from_millis(100);

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event no longer exists (or never did), or its company has no webhook URL: nothing
    /// to deliver.
    NothingToDeliver,
    /// The delivery is already finished, or this attempt was already made.
    AlreadyHandled,
    /// A retry arrived before its time (it waited in RabbitMQ's longest retry queue, shorter
    /// than its delay): queued again for the time left.
    NotYetDue,
    /// An attempt was made; the delivery is now in this state.
    Attempted(NextStep),
}

/// Infrastructure failed before an attempt could be recorded; the message must come back.
#[derive(Debug, thiserror::Error)]
#[error("delivery could not be processed: {0}")]
pub struct Retryable(pub String);

/// How one attempt ended: every case a delivery tells apart, each with what the attempt log
/// records ([`AttemptOutcome::error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx: delivered.
    Delivered {
        /// The status.
        status: StatusCode,
    },
    /// 410 Gone: the receiver wants no more; never retried.
    Gone {
        /// The start of the response's body.
        body: String,
    },
    /// Any other status (redirects included: they are never followed); retried.
    Rejected {
        /// The status.
        status: StatusCode,
        /// Its `Retry-After`, as a delay from now.
        retry_after: Option<Duration>,
        /// The start of the response's body.
        body: String,
    },
    /// Not sent: the URL or SSRF rules refuse the target (literally, or after DNS); never
    /// retried.
    Refused(TargetRefused),
    /// Not sent: the company's webhook secret cannot sign; never retried.
    Unsignable(BadSecret),
    /// No response within `WEBHOOK_TIMEOUT`; retried.
    TimedOut,
    /// No connection; retried.
    ConnectFailed {
        /// The underlying cause (the innermost error, e.g. the operating system's).
        cause: String,
    },
    /// The request failed otherwise (TLS, a connection closed mid-request, …); retried.
    TransportFailed {
        /// The underlying cause.
        cause: String,
    },
}

impl AttemptOutcome {
    /// From the response's status, `Retry-After` and the start of its body.
    pub fn from_response(status: StatusCode, retry_after: Option<Duration>, body: String) -> Self {
        if status.is_success() {
            Self::Delivered { status }
        } else if status == StatusCode::GONE {
            Self::Gone { body }
        } else {
            Self::Rejected {
                status,
                retry_after,
                body,
            }
        }
    }

    /// From a failed request: a refusal of the guarded resolver (found by type in the error's
    /// causes), a timeout, a connection error or any other transport error, with the cause.
    pub fn from_request_error(e: &reqwest::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut innermost: &(dyn std::error::Error + 'static) = e;
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<TargetRefused>() {
                return Self::Refused(refused.clone());
            }
            innermost = s;
            source = s.source();
        }
        let cause = innermost.to_string();
        if e.is_timeout() {
            Self::TimedOut
        } else if e.is_connect() {
            Self::ConnectFailed { cause }
        } else {
            Self::TransportFailed { cause }
        }
    }

    /// The response's status, if one came.
    pub fn status_code(&self) -> Option<StatusCode> {
        match self {
            Self::Delivered { status } | Self::Rejected { status, .. } => Some(*status),
            Self::Gone { .. } => Some(StatusCode::GONE),
            _ => None,
        }
    }

    /// The response's `Retry-After`, if one came.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What the attempt log and the log line say went wrong (`None` when delivered).
    pub fn error(&self) -> Option<String> {
        let http = |status: StatusCode, body: &str| {
            format!(
                "HTTP {}: {}",
                status.as_u16(),
                body.chars().take(ERROR_BODY_CHARS).collect::<String>()
            )
        };
        Some(match self {
            Self::Delivered { .. } => return None,
            Self::Gone { body } => http(StatusCode::GONE, body),
            Self::Rejected { status, body, .. } => http(*status, body),
            Self::Refused(why) => format!("refused: {why}"),
            Self::Unsignable(why) => format!("refused: {why}"),
            Self::TimedOut => "timed out".to_owned(),
            Self::ConnectFailed { cause } => format!("connection failed: {cause}"),
            Self::TransportFailed { cause } => cause.clone(),
        })
    }

    /// What the delivery becomes: delivered, failed for good (410, a refused target or
    /// secret, or the schedule exhausted), or retried when [`retry::next_attempt`] says.
    pub fn next_step(
        &self,
        schedule: &[Duration],
        attempt_in_round: u32,
        now: DateTime<Utc>,
        jitter: &mut impl JitterSource,
    ) -> NextStep {
        match self {
            Self::Delivered { .. } => NextStep::Succeeded,
            Self::Gone { .. } | Self::Refused(_) | Self::Unsignable(_) => NextStep::Failed,
            Self::Rejected { .. }
            | Self::TimedOut
            | Self::ConnectFailed { .. }
            | Self::TransportFailed { .. } => {
                match retry::next_attempt(
                    schedule,
                    attempt_in_round,
                    self.retry_after(),
                    now,
                    jitter,
                ) {
                    Retry::At(at) => NextStep::RetryAt(at),
                    Retry::GiveUp => NextStep::Failed,
                }
            }
        }
    }
}

/// An event's delivery, opened: its row (created on first sight), the current webhook URL,
/// and the body to send.
#[derive(Debug, Clone)]
pub struct OpenDelivery {
    /// The event with its company's webhook settings.
    pub target: EventTarget,
    /// The URL to send to (the company's current one).
    pub url: String,
    /// The body, as signed and sent ([`super::body`]).
    pub body: String,
    /// The delivery's row.
    pub delivery: Delivery,
}

/// Opens the delivery of an event: loads the event with its company's settings and renders
/// its body, then reads its delivery, creating it on first sight. The one place delivery rows
/// are made (the deliverer, standalone's queue and the test webhook all come here); a
/// redelivered message finds the same row. `None` when there is nothing to deliver: no such
/// event (or its session is gone), or its company has no webhook URL.
pub async fn open(
    db: &impl ConnectionTrait,
    event_id: &str,
) -> Result<Option<OpenDelivery>, DbErr> {
    let Some(target) = deliveries::event_target(db, event_id).await? else {
        return Ok(None);
    };
    let (Some(url), Some(body)) = (
        target.webhook_url.clone(),
        target.body().map(|b| b.render()),
    ) else {
        return Ok(None);
    };
    let delivery =
        deliveries::get_or_create(db, &target.event_id, &target.company_id, &url).await?;
    Ok(Some(OpenDelivery {
        target,
        url,
        body,
        delivery,
    }))
}

/// Delivers webhooks for one worker (or standalone node).
#[derive(Clone)]
pub struct Deliverer {
    db: DatabaseConnection,
    queue: Queue,
    http: reqwest::Client,
    allow_private: bool,
    schedule: Arc<[Duration]>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer with its own HTTP client: `WEBHOOK_TIMEOUT` per attempt, no redirects, no
    /// proxy, and the SSRF-guarded resolver (`WEBHOOK_ALLOW_PRIVATE_NETWORKS`); retries after
    /// `WEBHOOK_RETRY_SCHEDULE`.
    pub fn new(
        config: &Config,
        db: DatabaseConnection,
        queue: Queue,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let allow_private = config.webhook_allow_private_networks;
        let timeout = config.webhook_timeout;
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
            schedule: config.webhook_retry_schedule.clone().into(),
            metrics,
        })
    }

    /// Handles one message.
    pub async fn handle(&self, msg: &DeliveryMessage) -> Result<Outcome, Retryable> {
        let early = msg
            .due_at
            .is_some_and(|due| due > Utc::now() + EARLY_TOLERANCE);
        if early && self.queue.holds_retries() {
            self.queue
                .publish_retry(msg)
                .await
                .map_err(|e| Retryable(e.to_string()))?;
            return Ok(Outcome::NotYetDue);
        }
        let db_err = |e: DbErr| Retryable(e.to_string());
        let Some(open) = open(&self.db, &msg.event_id).await.map_err(db_err)? else {
            return Ok(Outcome::NothingToDeliver);
        };
        let OpenDelivery {
            target,
            url,
            body,
            delivery,
        } = open;
        let attempt = i32::try_from(msg.attempt).unwrap_or(i32::MAX);
        if delivery.status != DeliveryStatus::Pending || delivery.attempts >= attempt {
            return Ok(Outcome::AlreadyHandled);
        }

        let started = Instant::now();
        let outcome = self
            .send(
                &url,
                &target.event_id,
                &body,
                &target.signing_secrets(Utc::now()),
            )
            .await;
        let elapsed = started.elapsed();
        let latency_ms = i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX);

        // 1 for the first attempt of a round (a redelivery starts a new round).
        let attempt_in_round = u32::try_from(attempt - delivery.round_start).unwrap_or(0);
        let next = outcome.next_step(
            &self.schedule,
            attempt_in_round,
            Utc::now(),
            &mut RandomJitter,
        );
        let record = AttemptRecord {
            attempt,
            url,
            status_code: outcome.status_code().map(|s| i32::from(s.as_u16())),
            latency_ms,
            error: outcome.error(),
            next,
        };
        deliveries::record_attempt(&self.db, delivery.id, &record)
            .await
            .map_err(db_err)?;
        let result = match next {
            NextStep::Succeeded => "succeeded",
            NextStep::Failed => "failed",
            NextStep::RetryAt(_) => "retry",
        };
        self.metrics.webhook_attempt(result, elapsed.as_secs_f64());

        if let NextStep::RetryAt(at) = next {
            let retry =
                DeliveryMessage::new(&target.event_id, msg.attempt.saturating_add(1)).retry_at(at);
            if let Err(e) = self.queue.publish_retry(&retry).await {
                // The attempt is recorded with its next_attempt_at; the overdue sweep
                // publishes the retry if this message is lost.
                tracing::warn!(event_id = %target.event_id, error = %e, "could not schedule retry");
            }
        }
        // The error says why an attempt failed without a status (a refused target, a
        // timeout, a connection error and its cause), so the log line alone explains it.
        tracing::info!(event_id = %target.event_id, company_id = %target.company_id,
            attempt, status = ?record.status_code, error = record.error.as_deref(), latency_ms,
            next = ?next, "webhook attempt");
        Ok(Outcome::Attempted(next))
    }

    /// One attempt, signed with every secret in `secrets` (the current one first; two during a
    /// rotation's overlap, space-separated in `webhook-signature` as Standard Webhooks allows).
    async fn send(
        &self,
        url: &str,
        event_id: &str,
        body: &str,
        secrets: &[&str],
    ) -> AttemptOutcome {
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return AttemptOutcome::Refused(TargetRefused::Invalid(e.to_string())),
        };
        if let Err(refused) = check_url(&parsed, self.allow_private) {
            return AttemptOutcome::Refused(refused);
        }
        let timestamp = Utc::now().timestamp();
        let mut signatures = Vec::with_capacity(secrets.len());
        for secret in secrets {
            match WebhookSigner::new(secret) {
                Ok(signer) => signatures.push(signer.sign(event_id, timestamp, body.as_bytes())),
                Err(bad) => return AttemptOutcome::Unsignable(bad),
            }
        }
        let result = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(body.to_owned())
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = retry_after(resp.headers());
                let body = if status.is_success() {
                    String::new()
                } else {
                    body_prefix(resp).await
                };
                AttemptOutcome::from_response(status, retry_after, body)
            }
            Err(e) => AttemptOutcome::from_request_error(&e),
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
    let secs = date.signed_duration_since(Utc::now()).num_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use chrono::SubsecRound;

    use super::*;
    use crate::webhooks::retry::FixedJitter;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let later = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert("retry-after", later.parse().unwrap());
        let d = retry_after(&h).unwrap().as_secs();
        assert!((85..=90).contains(&d), "{d}");
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn outcomes_are_classified_recorded_and_decided() {
        let now = Utc::now();
        let schedule = [Duration::from_secs(10)];
        let step =
            |o: &AttemptOutcome, n: u32| o.next_step(&schedule, n, now, &mut FixedJitter(1.0));
        let after =
            |secs: i64| NextStep::RetryAt((now + chrono::Duration::seconds(secs)).trunc_subsecs(3));
        let in_ten = after(10);

        let ok = AttemptOutcome::from_response(StatusCode::NO_CONTENT, None, String::new());
        assert_eq!(
            ok,
            AttemptOutcome::Delivered {
                status: StatusCode::NO_CONTENT
            }
        );
        assert_eq!(
            (ok.status_code(), ok.error()),
            (Some(StatusCode::NO_CONTENT), None)
        );
        assert_eq!(step(&ok, 1), NextStep::Succeeded);

        let gone = AttemptOutcome::from_response(StatusCode::GONE, None, "bye".into());
        assert_eq!(gone.error().as_deref(), Some("HTTP 410: bye"));
        assert_eq!(gone.status_code(), Some(StatusCode::GONE));
        assert_eq!(step(&gone, 1), NextStep::Failed, "410 is never retried");

        let busy = AttemptOutcome::from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(60)),
            "x".repeat(500),
        );
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(60)));
        assert_eq!(
            busy.error(),
            Some(format!("HTTP 503: {}", "x".repeat(200))),
            "the body is cut to 200 characters"
        );
        assert_eq!(step(&busy, 1), after(60), "its Retry-After is honoured");
        assert_eq!(
            step(&busy, 2),
            NextStep::Failed,
            "the schedule is exhausted"
        );

        let refused =
            AttemptOutcome::Refused(TargetRefused::Forbidden("10.0.0.1".parse().unwrap()));
        assert_eq!(
            step(&refused, 1),
            NextStep::Failed,
            "refused targets are not retried"
        );
        let error = refused.error().unwrap();
        assert!(
            error.starts_with("refused: ") && error.contains("non-public"),
            "{error}"
        );
        let unsignable = AttemptOutcome::Unsignable(BadSecret);
        assert_eq!(step(&unsignable, 1), NextStep::Failed);
        assert_eq!(
            unsignable.error().as_deref(),
            Some("refused: webhook secret is not whsec_<base64>")
        );

        for transient in [
            AttemptOutcome::TimedOut,
            AttemptOutcome::ConnectFailed {
                cause: "Connection refused (os error 111)".into(),
            },
            AttemptOutcome::TransportFailed {
                cause: "connection closed before message completed".into(),
            },
        ] {
            assert_eq!(transient.status_code(), None);
            assert_eq!(step(&transient, 1), in_ten, "{transient:?}");
        }
        assert_eq!(
            AttemptOutcome::TimedOut.error().as_deref(),
            Some("timed out")
        );
        assert_eq!(
            AttemptOutcome::ConnectFailed {
                cause: "Connection refused (os error 111)".into()
            }
            .error()
            .as_deref(),
            Some("connection failed: Connection refused (os error 111)")
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_operating_systems_cause() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let err = client
            .post(format!("http://127.0.0.1:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        let outcome = AttemptOutcome::from_request_error(&err);
        let AttemptOutcome::ConnectFailed { cause } = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(cause.contains("os error 111"), "{cause}");
        assert!(!cause.contains("error sending request"), "{cause}");
    }

    #[tokio::test]
    async fn a_name_the_guard_refuses_is_a_refused_target_found_by_type() {
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver {
                allow_private: false,
            })
            .build()
            .unwrap();
        let err = client
            .post("http://localhost:9/hook")
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            AttemptOutcome::from_request_error(&err),
            AttemptOutcome::Refused(TargetRefused::Forbidden(_))
        ));
    }
}
