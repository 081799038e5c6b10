//! Applying the rate limits to requests: headers on every limited response, 429 with
//! `Retry-After` over the limit, and the behaviour when the limiter (Redis) is unreachable.

use std::time::Duration;

use truenumber_core::{
    companies::api_keys::AuthenticatedCompany, config::Config, error_code::ErrorCode,
};

use crate::{error::ApiError, request_context, state::AppState};

/// What to do when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Refuse with 503 (initiate: sessions cost money and must stay bounded).
    FailClosed,
    /// Let the request through, log and count it (status, submit: a Redis blip must not stop
    /// companies reading results or users confirming; a wrong submit ends its session anyway).
    FailOpen,
}

/// One limit: a name for the headers, the subject it counts, its size, and what to do when
/// the limiter cannot be asked. Every limit the API applies is made by one of the constructors
/// below, from the policy in force ([`Overrides::in_force`]).
#[derive(Debug, Clone)]
pub struct Limit {
    /// `initiate`, `status` or `submit` (the header's policy name).
    pub name: &'static str,
    /// Whose budget it is (a company and mode, or a verification id).
    pub subject: String,
    /// Admissions per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// When Redis is unreachable.
    pub when_unavailable: WhenUnavailable,
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

impl Limit {
    /// Initiations per company and mode per hour; fails closed (sessions must stay bounded).
    pub fn initiate(config: &Config, company: &AuthenticatedCompany) -> Self {
        Self {
            name: "initiate",
            subject: company.limit_subject().into_owned(),
            limit: company.overrides.in_force(config).initiate_per_hour,
            window: HOUR,
            when_unavailable: WhenUnavailable::FailClosed,
        }
    }

    /// Reads (status, listing, summary) per company and mode per hour; fails open.
    pub fn status(config: &Config, company: &AuthenticatedCompany) -> Self {
        Self {
            name: "status",
            subject: company.limit_subject().into_owned(),
            limit: company.overrides.in_force(config).status_per_hour,
            window: HOUR,
            when_unavailable: WhenUnavailable::FailOpen,
        }
    }

    /// Submits, denies and test completions per session per minute; fails open.
    pub fn session(config: &Config, verification_id: &str) -> Self {
        Self {
            name: "submit",
            subject: verification_id.to_owned(),
            limit: config.rate_limit_submit_per_minute,
            window: MINUTE,
            when_unavailable: WhenUnavailable::FailOpen,
        }
    }
}

/// Counts one request against `limit`;
/// [`Overrides::in_force`]: truenumber_core::companies::policy::Overrides::in_force
/// sets `RateLimit-Policy` and `RateLimit` on the response.
pub async fn enforce(state: &AppState, limit: Limit) -> Result<(), ApiError> {
    if !state.config.rate_limits_enabled {
        return Ok(());
    }
    let subject = format!("{}:{}", limit.name, limit.subject);
    match state
        .limiter
        .check(&subject, limit.limit, limit.window)
        .await
    {
        Ok(decision) => {
            request_context::add_header("RateLimit-Policy", decision.policy_header(limit.name));
            request_context::add_header("RateLimit", decision.ratelimit_header(limit.name));
            if decision.allowed {
                return Ok(());
            }
            let per = match limit.window.as_secs() {
                60 => "minute".to_owned(),
                3600 => "hour".to_owned(),
                s => format!("{s} seconds"),
            };
            state.metrics.rate_limited(limit.name);
            let retry = decision.retry_after_secs();
            let mut err = ApiError::new(
                ErrorCode::RateLimitExceeded,
                format!(
                    "Rate limit exceeded: {} {} requests per {per}; retry in {retry} s",
                    limit.limit, limit.name
                ),
            );
            err.retry_after = Some(retry);
            Err(err)
        }
        Err(e) => match limit.when_unavailable {
            WhenUnavailable::FailClosed => Err(ApiError::unavailable("Rate limiting", e)),
            WhenUnavailable::FailOpen => {
                state.limiter.record_fail_open();
                state.metrics.rate_limit_fail_open(limit.name);
                tracing::warn!(limit = limit.name, error = %e, "rate limiter unavailable; request let through");
                Ok(())
            }
        },
    }
}
