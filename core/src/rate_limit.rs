//! Sliding-window rate limits on Redis, shared by every API node.
//!
//! **Why a sliding-window log, not a counter.** A sliding-window *counter* keeps two integers
//! per key and estimates the current window from the previous one, so near a window edge it
//! can admit or refuse a few requests wrongly. The *log* keeps one sorted-set member per
//! admitted request and is exact: at most `limit` admissions in any `window`, whatever the
//! timing, which is what a company's budget needs. Its memory is bounded by the limit (we only
//! add admitted requests; expired members are trimmed on every decision), i.e. at most 1000
//! small members per company for the default status limit — cheap for Redis.
//!
//! Each decision is one Lua script (atomic; loaded once and called by its SHA through
//! `EVALSHA`). Time comes from Redis (`TIME`), so nodes with skewed clocks still agree.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::RngExt;
use redis::{Client, Script, aio::ConnectionManager};

const SLIDING_WINDOW_LOG: &str = r"
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', key, window)
  count = count + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset = window
if oldest[2] then
  reset = tonumber(oldest[2]) + window - now
end
return {allowed, limit - count, reset}
";

/// The outcome of one rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether this request is admitted.
    pub allowed: bool,
    /// The limit that applied.
    pub limit: u32,
    /// Admissions left in the current window after this one.
    pub remaining: u32,
    /// Milliseconds until the oldest admission leaves the window (when one more is allowed).
    pub reset_ms: u64,
    /// The window.
    pub window: Duration,
}

impl Decision {
    /// Whole seconds until a refused caller may succeed (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.reset_ms.div_ceil(1000).max(1)
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): `"name";q=limit;w=seconds`.
    pub fn policy_header(&self, name: &str) -> String {
        format!("\"{name}\";q={};w={}", self.limit, self.window.as_secs())
    }

    /// `RateLimit`: `"name";r=remaining;t=seconds-until-reset`.
    pub fn ratelimit_header(&self, name: &str) -> String {
        format!(
            "\"{name}\";r={};t={}",
            self.remaining,
            self.reset_ms.div_ceil(1000)
        )
    }
}

/// Redis did not answer (in time).
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimiterUnavailable(pub String);

/// A sliding-window-log limiter over one Redis, with a key prefix.
#[derive(Clone)]
pub struct SlidingWindowLimiter {
    conn: ConnectionManager,
    script: Arc<Script>,
    prefix: String,
    call_timeout: Duration,
    fail_open_total: Arc<AtomicU64>,
}

impl std::fmt::Debug for SlidingWindowLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindowLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SlidingWindowLimiter {
    /// A limiter whose connection is made lazily and remade by itself after failures, so an
    /// API node starts (and serves what it can) while Redis is down. Each call is bounded by
    /// `call_timeout`.
    pub fn new(
        url: &str,
        prefix: &str,
        call_timeout: Duration,
    ) -> Result<Self, LimiterUnavailable> {
        let client = Client::open(url).map_err(|e| LimiterUnavailable(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(call_timeout))
            .set_response_timeout(Some(call_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| LimiterUnavailable(e.to_string()))?;
        Ok(Self {
            conn,
            script: Arc::new(Script::new(SLIDING_WINDOW_LOG)),
            prefix: prefix.to_owned(),
            call_timeout,
            fail_open_total: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Decides one request of `subject` (e.g. `initiate:comp_abc`) against `limit` per `window`.
    pub async fn check(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Decision, LimiterUnavailable> {
        let key = format!("{}rl:{subject}", self.prefix);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let nonce: u64 = rand::rng().random();
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(&key);
        invocation.arg(window_ms).arg(limit).arg(nonce);
        let reply: (i64, i64, i64) =
            tokio::time::timeout(self.call_timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| LimiterUnavailable("timed out".into()))?
                .map_err(|e| LimiterUnavailable(e.to_string()))?;
        let (allowed, remaining, reset) = reply;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            reset_ms: u64::try_from(reset.max(0)).unwrap_or(0),
            window,
        })
    }

    /// Round-trips `PING`; used by health checks.
    pub async fn ping(&self) -> Result<(), LimiterUnavailable> {
        let mut conn = self.conn.clone();
        let pong: String =
            tokio::time::timeout(self.call_timeout, redis::cmd("PING").query_async(&mut conn))
                .await
                .map_err(|_| LimiterUnavailable("timed out".into()))?
                .map_err(|e| LimiterUnavailable(e.to_string()))?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(LimiterUnavailable(format!("unexpected reply {pong}")))
        }
    }

    /// Counts one request let through because Redis was unavailable.
    pub fn record_fail_open(&self) {
        self.fail_open_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests let through unlimited since start, because Redis was unavailable.
    pub fn fail_open_total(&self) -> u64 {
        self.fail_open_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(remaining: u32, reset_ms: u64) -> Decision {
        Decision {
            allowed: remaining > 0,
            limit: 100,
            remaining,
            reset_ms,
            window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(decision(0, 1).retry_after_secs(), 1);
        assert_eq!(decision(0, 1000).retry_after_secs(), 1);
        assert_eq!(decision(0, 1001).retry_after_secs(), 2);
        assert_eq!(decision(0, 0).retry_after_secs(), 1);
        assert_eq!(decision(0, 3_599_999).retry_after_secs(), 3600);
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let d = decision(42, 29_001);
        assert_eq!(d.policy_header("initiate"), "\"initiate\";q=100;w=3600");
        assert_eq!(d.ratelimit_header("initiate"), "\"initiate\";r=42;t=30");
    }
}
