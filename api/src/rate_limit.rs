//! Applying the rate limits to requests: headers on every limited response, 429 with
//! `Retry-After` over the limit, and the behaviour when the limiter (Redis) is unreachable.

use std::time::Duration;

use truenumber_core::{
    abuse,
    companies::api_keys::AuthenticatedCompany,
    config::Config,
    error_code::ErrorCode,
    limits::{Check, Decision},
    phone::MobileNumber,
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
    /// The code of a refusal.
    pub code: ErrorCode,
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
            code: ErrorCode::RateLimitExceeded,
        }
    }

    /// Initiations per company, mode and number in the per-number window; fails closed. The
    /// subject names a digest of the number, never the number. `None` when the limit in force
    /// is 0 (off).
    pub fn initiate_per_number(
        config: &Config,
        company: &AuthenticatedCompany,
        number: &MobileNumber,
    ) -> Option<Self> {
        let policy = company.overrides.in_force(config);
        if policy.initiate_per_number == 0 {
            return None;
        }
        Some(Self {
            name: "initiate_number",
            subject: abuse::number_subject(&company.limit_subject(), number),
            limit: policy.initiate_per_number,
            window: policy.initiate_per_number_window,
            when_unavailable: WhenUnavailable::FailClosed,
            code: ErrorCode::NumberRateLimited,
        })
    }

    /// Reads (status, listing, summary) per company and mode per hour; fails open.
    pub fn status(config: &Config, company: &AuthenticatedCompany) -> Self {
        Self {
            name: "status",
            subject: company.limit_subject().into_owned(),
            limit: company.overrides.in_force(config).status_per_hour,
            window: HOUR,
            when_unavailable: WhenUnavailable::FailOpen,
            code: ErrorCode::RateLimitExceeded,
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
            code: ErrorCode::RateLimitExceeded,
        }
    }
}

/// Counts one request against `limit`;
/// [`Overrides::in_force`]: truenumber_core::companies::policy::Overrides::in_force
/// sets `RateLimit-Policy` and `RateLimit` on the response.
pub async fn enforce(state: &AppState, limit: Limit) -> Result<(), ApiError> {
    admit(state, limit).await.map(|_| ())
}

/// An admission that may be given back ([`release`]).
#[derive(Debug, Clone)]
pub struct Admission {
    subject: String,
    ticket: u64,
}

/// Gives an admission back: the request it admitted did not count after all (an idempotent
/// replay, a refusal further on). A failure is logged: the slot then frees itself when it
/// leaves the window.
pub async fn release(state: &AppState, admission: Admission) {
    if let Err(e) = state
        .limiter
        .release(&admission.subject, admission.ticket)
        .await
    {
        tracing::warn!(error = %e, "could not give a rate-limit admission back");
    }
}

/// [`enforce`], returning the admission (`None` when limits are off, or the limiter failed
/// open).
pub async fn admit(state: &AppState, limit: Limit) -> Result<Option<Admission>, ApiError> {
    let mut admissions = admit_chain(state, std::slice::from_ref(&limit)).await?;
    Ok(admissions.pop().flatten())
}

/// Counts one request against a chain of limits in one limiter call (one Redis round trip):
/// in order, each is checked and counted; the first refusal answers, and the limits after it
/// are not counted. Headers are set for every limit decided. Returns one admission per limit
/// (`None` each when limits are off, or the limiter failed open). When the limiter cannot be
/// asked, the chain fails closed if any of its limits does.
pub async fn admit_chain(
    state: &AppState,
    limits: &[Limit],
) -> Result<Vec<Option<Admission>>, ApiError> {
    if !state.config.rate_limits_enabled {
        return Ok(vec![None; limits.len()]);
    }
    let subjects: Vec<String> = limits
        .iter()
        .map(|l| format!("{}:{}", l.name, l.subject))
        .collect();
    let checks: Vec<Check<'_>> = limits
        .iter()
        .zip(&subjects)
        .map(|(l, subject)| Check {
            subject,
            limit: l.limit,
            window: l.window,
        })
        .collect();
    let decisions = match state.limiter.check_chain(&checks).await {
        Ok(decisions) => decisions,
        Err(e)
            if limits
                .iter()
                .any(|l| l.when_unavailable == WhenUnavailable::FailClosed) =>
        {
            return Err(ApiError::unavailable("Rate limiting", e));
        }
        Err(e) => {
            let names: Vec<&str> = limits.iter().map(|l| l.name).collect();
            state.limiter.record_fail_open();
            for name in &names {
                state.metrics.rate_limit_fail_open(name);
            }
            tracing::warn!(limits = ?names, error = %e, "rate limiter unavailable; request let through");
            return Ok(vec![None; limits.len()]);
        }
    };
    let mut admissions = Vec::with_capacity(limits.len());
    for ((limit, subject), decision) in limits.iter().zip(subjects).zip(decisions) {
        request_context::add_header("RateLimit-Policy", decision.policy_header(limit.name));
        request_context::add_header("RateLimit", decision.ratelimit_header(limit.name));
        if !decision.allowed {
            return Err(refusal(state, limit, &decision));
        }
        admissions.push(decision.ticket.map(|ticket| Admission { subject, ticket }));
    }
    Ok(admissions)
}

/// The 429 of a refused `limit`, counted in the metrics.
fn refusal(state: &AppState, limit: &Limit, decision: &Decision) -> ApiError {
    let per = match limit.window.as_secs() {
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        s => format!("{s} seconds"),
    };
    state.metrics.rate_limited(limit.name);
    let retry = decision.retry_after_secs();
    let message = match limit.code {
        ErrorCode::NumberRateLimited => format!(
            "Too many verifications of this number: at most {} per {per} for your company; \
             retry in {retry} s",
            limit.limit
        ),
        _ => format!(
            "Rate limit exceeded: {} {} requests per {per}; retry in {retry} s",
            limit.limit, limit.name
        ),
    };
    let mut err = ApiError::new(limit.code, message);
    err.retry_after = Some(retry);
    err
}
