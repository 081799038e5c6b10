//! `APP_TOKEN_JWKS_URL`: the public keys of the app's identity provider, fetched over HTTPS
//! and kept fresh (PRODUCT.md, "App identity and number binding").
//!
//! - Fetched at start by a background task; a failure is logged and retried with a backoff
//!   (1 s doubling to [`MIN_TOKEN_REFRESH_INTERVAL`]), never fatal. Until a set arrives every
//!   app token gets the generic 401 and `/health` reports the key source down.
//! - A set is kept for its response's `Cache-Control: max-age`, clamped to
//!   [`MIN_CACHE`]–[`MAX_CACHE`] ([`DEFAULT_CACHE`] without one), then fetched again.
//! - A token naming an unknown `kid` triggers one refresh, single-flight and at most once per
//!   [`MIN_TOKEN_REFRESH_INTERVAL`] whatever the traffic, so a key rotation at the provider
//!   is picked up within seconds and forged `kid`s cannot make TrueNumber hammer it.
//! - A failed refresh keeps the last good set (logged, counted in
//!   `truenumber_app_token_key_fetches_total{kind="failed"}`).
//! - Every fetch has a connect timeout, a total timeout and a size cap, follows no redirect,
//!   and goes to `https`, or `http` on loopback only (checked when the configuration is read).
//!
//! A provider's set may hold keys TrueNumber does not use (Keycloak publishes an RSA-OAEP
//! encryption key beside its signing keys): those are skipped, and named in the log. A set
//! with private key material, or two keys with one `kid`, is refused whole.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use prometheus_client::metrics::{counter::Counter, family::Family};

use super::{AppTokenJwks, AppTokenTrust, JwksError, Verifier, verifiers};
use crate::observability::metrics::KindLabel;

/// The shortest a fetched set is trusted before it is fetched again.
pub const MIN_CACHE: Duration = Duration::from_secs(5 * 60);
/// The longest a fetched set is trusted before it is fetched again.
pub const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// How long a set is trusted when the response says nothing (`Cache-Control` absent).
pub const DEFAULT_CACHE: Duration = Duration::from_secs(3600);
/// Tokens with unknown `kid`s cause at most one fetch per this interval.
pub const MIN_TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The most bytes of a key set read; providers' sets are a few kilobytes.
pub const MAX_BYTES: usize = 256 * 1024;
/// Connecting to the provider.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole fetch, body included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch gave no usable set (logged; the caller keeps the last good set).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed, or took too long.
    #[error("request failed: {0}")]
    Http(String),
    /// The provider answered with a non-2xx status.
    #[error("the provider answered {0}")]
    Status(u16),
    /// The body exceeded [`MAX_BYTES`].
    #[error("the key set is larger than {MAX_BYTES} bytes")]
    TooLarge,
    /// The body is not a usable key set.
    #[error("the key set was refused: {0}")]
    Refused(#[from] JwksError),
}

/// What the source holds now.
#[derive(Default)]
struct Held {
    /// The last good set, by `kid`.
    keys: Option<Arc<HashMap<String, Verifier>>>,
    /// When the held set should be fetched again.
    fresh_until: Option<Instant>,
    /// When the last token-triggered fetch started (the throttle of unknown `kid`s).
    last_token_refresh: Option<Instant>,
}

/// The provider's key set, fetched and cached.
pub struct RemoteKeySet {
    url: String,
    /// The HTTP client, or why it could not be built (every fetch then fails with it).
    client: Result<reqwest::Client, String>,
    /// The configured `iss`/`aud` checks each key's verifier gets.
    trust: AppTokenTrust,
    held: RwLock<Held>,
    /// Single flight: one fetch at a time, whoever asks.
    fetching: tokio::sync::Mutex<()>,
    fetches: Family<KindLabel, Counter>,
}

impl std::fmt::Debug for RemoteKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeySet")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How long a response's `Cache-Control` lets a set be trusted, clamped to
/// [`MIN_CACHE`]–[`MAX_CACHE`]; [`DEFAULT_CACHE`] without a `max-age` (or with `no-cache` /
/// `no-store`, which would otherwise mean fetching on every token: the floor applies).
pub fn cache_lifetime(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_CACHE;
    };
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return MIN_CACHE;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            max_age = seconds.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map_or(DEFAULT_CACHE, |s| {
        Duration::from_secs(s).clamp(MIN_CACHE, MAX_CACHE)
    })
}

fn lock_poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    // A panic while holding the lock cannot leave `Held` half-written (every write is one
    // assignment); the data stays usable.
    e.into_inner()
}

impl RemoteKeySet {
    /// A source for `url` (checked by the configuration), empty until the first fetch.
    pub(super) fn new(
        url: String,
        trust: AppTokenTrust,
        fetches: Family<KindLabel, Counter>,
    ) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("truenumber/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        Self {
            url,
            client,
            trust,
            held: RwLock::new(Held::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches,
        }
    }

    /// The configured URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The held set, if one has arrived.
    pub(super) fn keys(&self) -> Option<Arc<HashMap<String, Verifier>>> {
        self.held.read().unwrap_or_else(lock_poisoned).keys.clone()
    }

    /// Whether a key set is held (what `/health` reports).
    pub fn is_ready(&self) -> bool {
        self.keys().is_some()
    }

    /// How long until the held set is due to be fetched again (`None` before the first set).
    pub fn fresh_for(&self) -> Option<Duration> {
        let held = self.held.read().unwrap_or_else(lock_poisoned);
        held.fresh_until
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// A token named a `kid` the held set lacks (or no set is held): fetch once, unless a
    /// token-triggered fetch started within [`MIN_TOKEN_REFRESH_INTERVAL`]. Concurrent callers
    /// share one fetch. Returns the set held afterwards.
    pub(super) async fn refresh_for_unknown_kid(&self) -> Option<Arc<HashMap<String, Verifier>>> {
        {
            let mut held = self.held.write().unwrap_or_else(lock_poisoned);
            if held
                .last_token_refresh
                .is_some_and(|t| t.elapsed() < MIN_TOKEN_REFRESH_INTERVAL)
            {
                return held.keys.clone();
            }
            held.last_token_refresh = Some(Instant::now());
        }
        // Failures are logged and counted by `fetch_and_store`; the caller only needs the set.
        let _ = self.fetch_and_store().await;
        self.keys()
    }

    /// Fetches the set and, when usable, makes it the held one; a failure keeps the held set.
    /// One fetch runs at a time.
    pub async fn fetch_and_store(&self) -> Result<(), FetchError> {
        let _flight = self.fetching.lock().await;
        match self.fetch().await {
            Ok((set, lifetime)) => {
                let keys = Arc::new(verifiers(&set, &self.trust));
                let count = keys.len();
                let mut held = self.held.write().unwrap_or_else(lock_poisoned);
                held.keys = Some(keys);
                held.fresh_until = Some(Instant::now() + lifetime);
                drop(held);
                self.fetches.get_or_create(&kind("ok")).inc();
                tracing::info!(
                    url = %self.url,
                    keys = count,
                    cache_seconds = lifetime.as_secs(),
                    "app token keys fetched"
                );
                Ok(())
            }
            Err(e) => {
                self.fetches.get_or_create(&kind("failed")).inc();
                tracing::warn!(
                    url = %self.url,
                    error = %e,
                    keeping_last_good_set = self.is_ready(),
                    "fetching the app token keys failed"
                );
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(AppTokenJwks, Duration), FetchError> {
        let http = |e: reqwest::Error| FetchError::Http(e.to_string());
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::Http(e.clone()))?;
        let response = client.get(&self.url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let lifetime = cache_lifetime(
            response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(http)?;
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        let (set, skipped) = AppTokenJwks::parse_published(&text)?;
        for reason in skipped {
            tracing::info!(url = %self.url, reason = %reason, "app token key set: key skipped");
        }
        Ok((set, lifetime))
    }

    /// Keeps the set fresh until the source is dropped: fetches at once, then again when the
    /// held set is due; after a failure retries with a backoff from 1 s doubling up to
    /// [`MIN_TOKEN_REFRESH_INTERVAL`].
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let Some(source) = weak.upgrade() else { return };
                let wait = match source.fetch_and_store().await {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        source.fresh_for().unwrap_or(DEFAULT_CACHE)
                    }
                    Err(_) => {
                        let wait = backoff;
                        backoff = (backoff * 2).min(MIN_TOKEN_REFRESH_INTERVAL);
                        wait
                    }
                };
                drop(source);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

fn kind(k: &str) -> KindLabel {
    KindLabel { kind: k.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_honoured_within_the_clamp() {
        let secs = |v: Option<&str>| cache_lifetime(v).as_secs();
        assert_eq!(secs(None), 3600);
        assert_eq!(secs(Some("public, max-age=600")), 600);
        assert_eq!(secs(Some("max-age=19845, must-revalidate")), 19845);
        assert_eq!(secs(Some("max-age=1")), 300);
        assert_eq!(secs(Some("max-age=0")), 300);
        assert_eq!(secs(Some("MAX-AGE=100000")), 86400);
        assert_eq!(secs(Some("private")), 3600);
        assert_eq!(secs(Some("max-age=soon")), 3600);
        assert_eq!(secs(Some("no-store")), 300);
        assert_eq!(secs(Some("public, no-cache")), 300);
    }
}
