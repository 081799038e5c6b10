//! Configuration, read from the environment once at start and validated.
//!
//! Every variable is documented on its field and in docs/CONFIGURATION.md. A bad value stops start-up with
//! one line that names the variable ([`ConfigError`]). Tests build a [`Config`] with
//! [`Config::from_lookup`] and a map, so they never touch the process environment.

use std::{collections::HashMap, fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use crate::companies::app_tokens::{AppTokenJwks, AppTokenTrust};

/// A secret value whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default; for log shippers).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// A trusted proxy: one address or a CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies inside this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length outside 0..={max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// How the process runs (PRODUCT.md, "Processes and modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `serve` and `truenumber-worker` on PostgreSQL, Redis and RabbitMQ.
    Production,
    /// `standalone`: one process on SQLite in `DATA_DIR`, in-process limiter and queue.
    Standalone,
}

/// The file standalone mode keeps its database in, inside `DATA_DIR`.
pub const STANDALONE_DB_FILE: &str = "truenumber.db";

/// The whole configuration of an API node or worker.
#[derive(Clone, Debug)]
pub struct Config {
    /// Production or standalone.
    pub mode: Mode,
    /// `DATA_DIR` (default `./truenumber-data`): standalone mode's database and generated
    /// secret.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`: PostgreSQL connection string (production); in standalone mode the
    /// SQLite file in `DATA_DIR`.
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`: pool size (default: four per core, at least 10).
    pub database_max_connections: u32,
    /// `MAX_CONCURRENT_REQUESTS`: API requests handled at once per node; more wait their turn in
    /// arrival order (default: four per database connection).
    pub max_concurrent_requests: usize,
    /// `REDIS_URL`: Redis for rate limits.
    pub redis_url: Secret,
    /// `REDIS_TIMEOUT_MS`: the most one Redis call may take (connect or reply) before the
    /// limiter treats Redis as unavailable (default 1000).
    pub redis_timeout: Duration,
    /// `REDIS_KEY_PREFIX`: prefix of every Redis key (default `tn:`), so environments can share a Redis.
    pub redis_key_prefix: String,
    /// `AMQP_URL`: RabbitMQ.
    pub amqp_url: Secret,
    /// `AMQP_QUEUE_PREFIX`: prefix of every exchange and queue name (default `truenumber`).
    pub amqp_queue_prefix: String,
    /// `PORT`: HTTP port.
    pub port: u16,
    /// `WORKER_PORT`: the worker's health/metrics port (default 3001; 0 picks a free one).
    pub worker_port: u16,
    /// `JWT_SECRET`: HS256 key of mobile-app tokens (required by the API, at least 32 bytes;
    /// see [`Config::worker_from_env`]).
    pub jwt_secret: Secret,
    /// `APP_TOKEN_JWKS_FILE` (the app's token service's public keys, read and checked here),
    /// `APP_TOKEN_ISSUER` and `APP_TOKEN_AUDIENCE` (each unset by default): which app tokens
    /// are trusted besides HS256 with `JWT_SECRET`. The worker ignores them.
    pub app_tokens: AppTokenTrust,
    /// `APP_TOKEN_REQUIRE_PHONE_NUMBER` (default true): live sessions are confirmed, denied
    /// and seen only with an app token bound to their number. `false` is for development
    /// only: start-up warns, and sessions completed by an unbound token say
    /// `numberBinding: "none"`.
    pub app_token_require_phone_number: bool,
    /// `API_BASE_URL`: public base URL (OpenAPI `servers`); default `http://localhost:$PORT`.
    pub api_base_url: String,
    /// `WEBHOOK_TIMEOUT`: seconds per webhook delivery attempt.
    pub webhook_timeout: Duration,
    /// `WEBHOOK_SECRET_OVERLAP_SECONDS`: how long a rotated-out webhook secret still signs.
    pub webhook_secret_overlap: Duration,
    /// `DATA_RETENTION_DAYS`: completed sessions older than this are deleted (a company row
    /// may override it).
    pub data_retention_days: u32,
    /// `LOG_LEVEL`: tracing filter (`info`, `debug`, `truenumber_api=debug,info`, …).
    pub log_level: String,
    /// `LOG_FORMAT`: `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// `VERIFICATION_TTL_SECONDS`: session lifetime.
    pub verification_ttl: Duration,
    /// `RATE_LIMIT_INITIATE_PER_HOUR`: initiate calls per company per hour.
    pub rate_limit_initiate_per_hour: u32,
    /// `RATE_LIMIT_STATUS_PER_HOUR`: status calls per company per hour.
    pub rate_limit_status_per_hour: u32,
    /// `RATE_LIMITS_ENABLED`: `false` turns every limit off (benchmarks, emergencies; logged
    /// loudly at start). Default true.
    pub rate_limits_enabled: bool,
    /// `RATE_LIMIT_INITIATE_PER_NUMBER` (default 5): initiations per company, mode and number
    /// in [`Config::rate_limit_initiate_per_number_window`] (a company row may override). 0:
    /// no per-number limit unless a company has its own (the operator's choice, e.g. to
    /// measure the limit's cost).
    pub rate_limit_initiate_per_number: u32,
    /// `RATE_LIMIT_INITIATE_PER_NUMBER_WINDOW_SECONDS` (default 600): that limit's sliding
    /// window.
    pub rate_limit_initiate_per_number_window: Duration,
    /// `DENY_COOLDOWN_SECONDS` (default 86400): after a deny, how long the company may not
    /// initiate for that number (`RECENTLY_DENIED`; a company row may override; 0: none).
    pub deny_cooldown: Duration,
    /// `RATE_LIMIT_SUBMIT_PER_MINUTE`: submit calls per verification session per minute.
    pub rate_limit_submit_per_minute: u32,
    /// `DEEP_LINK_BASE`: deep-link prefix (custom scheme or https universal link).
    pub deep_link_base: String,
    /// `WEBHOOK_RETRY_SCHEDULE`: seconds between attempts; its length is the number of retries.
    pub webhook_retry_schedule: Vec<Duration>,
    /// `WEBHOOK_ALLOW_PRIVATE_NETWORKS`: allow webhook targets on loopback/private addresses.
    pub webhook_allow_private_networks: bool,
    /// `WORKER_CONCURRENCY`: webhook deliveries one worker makes at once (default 32).
    pub worker_concurrency: u16,
    /// `SWEEP_INTERVAL_SECONDS`: how often workers look for expired sessions.
    pub sweep_interval: Duration,
    /// `MAX_BODY_BYTES`: request body cap.
    pub max_body_bytes: usize,
    /// `TLS_CERT_FILE`: PEM certificate chain; with `TLS_KEY_FILE` the API serves HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// `TLS_KEY_FILE`: PEM private key.
    pub tls_key_file: Option<PathBuf>,
    /// `REQUIRE_HTTPS`: refuse requests that did not arrive over TLS.
    pub require_https: bool,
    /// `TRUSTED_PROXIES`: comma-separated addresses/CIDRs whose `X-Forwarded-*` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `MIGRATE_ON_START`: `serve` applies pending migrations first (default true).
    pub migrate_on_start: bool,
    /// `API_KEY_CACHE_TTL_SECONDS`: how long a verified API key is trusted without the database
    /// (default 30); revocation and deactivation take effect within this time.
    pub api_key_cache_ttl: Duration,
    /// `HTTP_HEADER_TIMEOUT_SECONDS` (default 10): a connection must deliver a request's whole
    /// headers within this time of being ready for one (accepted, or after the previous
    /// response); this also closes idle kept-alive connections.
    pub http_header_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_SECONDS` (default 10): a request's whole body must arrive within this
    /// time after its headers, else 408 `REQUEST_TIMEOUT` and the connection is closed.
    pub http_body_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_SECONDS` (default 60): a connection on which no byte moved either way
    /// for this long is closed.
    pub http_idle_timeout: Duration,
    /// `AUTH_FAILURE_DELAY_MS` (default 250): every 401 is held this long before it is sent
    /// (after the request has left its admission slot), so a connection guessing credentials
    /// makes a few attempts a second at most.
    pub auth_failure_delay: Duration,
    /// Standalone only: `SQLITE_BUSY_UNHEALTHY_SECONDS` (default 10, 1–3600) and
    /// `SQLITE_UNWRITABLE_EXIT_SECONDS` (default 60, 2–86400, more than the first): how long
    /// the SQLite file may refuse its write lock before health answers 503, and before the
    /// process exits for a supervisor to restart it ([`crate::storage::write_watch`]).
    pub sqlite_write_bounds: crate::storage::write_watch::WriteBounds,
}

/// A configuration value that stops start-up; its `Display` is the one line printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// Why its value was refused.
    pub reason: String,
}

fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Reads variables through a lookup function, so the environment and a test map share one path.
struct Reader<F: Fn(&str) -> Option<String>>(F);

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn raw(&self, var: &'static str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, var: &'static str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    fn parse<T>(&self, var: &'static str, default: T, range: (T, T)) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.raw(var) else {
            return Ok(default);
        };
        let value: T = raw
            .parse()
            .map_err(|_| err(var, format!("`{raw}` is not a number")))?;
        if value < range.0 || value > range.1 {
            return Err(err(
                var,
                format!(
                    "{value} is outside the allowed range {}..={}",
                    range.0, range.1
                ),
            ));
        }
        Ok(value)
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(err(var, format!("`{v}` is not a boolean (true/false)"))),
        }
    }

    fn url(
        &self,
        var: &'static str,
        default: &str,
        schemes: &[&str],
    ) -> Result<String, ConfigError> {
        let value = self.string(var, default);
        let scheme = value.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme {
            Some(s) if schemes.contains(&s.as_str()) => Ok(value),
            _ => Err(err(
                var,
                format!("must be a URL with scheme {}", schemes.join(" or ")),
            )),
        }
    }
}

/// `APP_TOKEN_JWKS_URL` checked: an absolute `https` URL, or `http` to a loopback host (a
/// provider's keys travel over TLS; a local key server in development and tests may not).
fn jwks_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url.into()),
        "http" if loopback => Ok(url.into()),
        "http" => Err("must be https (http only to a loopback address)".into()),
        other => Err(format!("must be https, not {other}")),
    }
}

/// The default pool size: four connections per core, at least ten.
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores * 4).unwrap_or(u32::MAX).max(10)
}

/// The default `WEBHOOK_RETRY_SCHEDULE` (seconds): 5 s up to a day, 11 retries over ~2 days.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5,30,120,600,1800,3600,7200,14400,28800,43200,86400";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the process environment for a worker, which never signs or verifies app tokens:
    /// `JWT_SECRET` may be unset (a worker's `jwt_secret` is then a random value nothing uses),
    /// and `APP_TOKEN_JWKS_FILE` / `APP_TOKEN_JWKS_URL` are not read (the worker's host need
    /// not have the file, nor reach the identity provider).
    pub fn worker_from_env() -> Result<Self, ConfigError> {
        Self::worker_from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::worker_from_env`] through any lookup function.
    pub fn worker_from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let unused = format!("unused-by-the-worker-{}", uuid::Uuid::new_v4().simple());
        Self::from_lookup(|name| match name {
            "APP_TOKEN_JWKS_FILE" | "APP_TOKEN_JWKS_URL" => None,
            "JWT_SECRET" => lookup(name).or_else(|| Some(unused.clone())),
            _ => lookup(name),
        })
    }

    /// Reads a map (tests, tools).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| map.get(name).cloned())
    }

    /// Reads through any lookup function; the one code path behind the production
    /// constructors.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(Mode::Production, lookup)
    }

    /// Standalone mode's configuration: the database is `DATA_DIR/truenumber.db` and
    /// `DATABASE_URL` must be unset. `JWT_SECRET` must be in `lookup` (the standalone command
    /// puts the generated one there when the environment has none).
    pub fn standalone_from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::read(Mode::Standalone, lookup)
    }

    /// The SQLite file of standalone mode.
    pub fn standalone_db_path(&self) -> PathBuf {
        self.data_dir.join(STANDALONE_DB_FILE)
    }

    fn read(mode: Mode, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let r = Reader(lookup);
        let data_dir = PathBuf::from(r.string("DATA_DIR", "./truenumber-data"));
        let database_url = match (mode, r.raw("DATABASE_URL")) {
            (Mode::Production, Some(url)) if url.to_ascii_lowercase().starts_with("sqlite:") => {
                return Err(err(
                    "DATABASE_URL",
                    "SQLite serves standalone mode only (`truenumber-api standalone`, data in \
                     DATA_DIR); serve and the worker need PostgreSQL",
                ));
            }
            (Mode::Production, _) => r.url(
                "DATABASE_URL",
                "postgresql://postgres@localhost:5432/truenumber",
                &["postgres", "postgresql"],
            )?,
            (Mode::Standalone, Some(_)) => {
                return Err(err(
                    "DATABASE_URL",
                    "standalone mode keeps its data in DATA_DIR (SQLite) and takes no \
                     DATABASE_URL; unset it, or run `serve` for PostgreSQL",
                ));
            }
            (Mode::Standalone, None) => {
                format!("sqlite://{}", data_dir.join(STANDALONE_DB_FILE).display())
            }
        };

        let jwt_secret = r
            .raw("JWT_SECRET")
            .ok_or_else(|| err("JWT_SECRET", "is required (at least 32 bytes)"))?;
        if jwt_secret.len() < 32 {
            return Err(err(
                "JWT_SECRET",
                format!("must be at least 32 bytes, got {}", jwt_secret.len()),
            ));
        }

        let jwks_url = r
            .raw("APP_TOKEN_JWKS_URL")
            .map(|url| jwks_url(&url).map_err(|why| err("APP_TOKEN_JWKS_URL", why)))
            .transpose()?;
        if jwks_url.is_some() && r.raw("APP_TOKEN_JWKS_FILE").is_some() {
            return Err(err(
                "APP_TOKEN_JWKS_URL",
                "set APP_TOKEN_JWKS_URL or APP_TOKEN_JWKS_FILE, not both",
            ));
        }
        let app_tokens = AppTokenTrust {
            jwks: r
                .raw("APP_TOKEN_JWKS_FILE")
                .map(|path| AppTokenJwks::from_file(std::path::Path::new(&path)))
                .transpose()
                .map_err(|e| err("APP_TOKEN_JWKS_FILE", e.to_string()))?,
            jwks_url,
            issuer: r.raw("APP_TOKEN_ISSUER"),
            audience: r.raw("APP_TOKEN_AUDIENCE"),
        };

        let deep_link_base = r.string("DEEP_LINK_BASE", "truenumberapp://verify");
        if !deep_link_base.contains("://") || deep_link_base.contains(['?', '#', ' ']) {
            return Err(err(
                "DEEP_LINK_BASE",
                "must be a scheme://path prefix without query or fragment",
            ));
        }

        let schedule_raw = r.string("WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE);
        let webhook_retry_schedule = schedule_raw
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=7 * 86_400).contains(n))
                    .map(Duration::from_secs)
                    .ok_or_else(|| {
                        err(
                            "WEBHOOK_RETRY_SCHEDULE",
                            format!("`{s}` is not a whole number of seconds in 1..=604800"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if webhook_retry_schedule.len() > 50 {
            return Err(err("WEBHOOK_RETRY_SCHEDULE", "at most 50 retries"));
        }

        let log_format = match r.string("LOG_FORMAT", "json").to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "pretty" | "text" => LogFormat::Pretty,
            other => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("`{other}` is not json or pretty"),
                ));
            }
        };

        let trusted_proxies = r
            .string("TRUSTED_PROXIES", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<IpNet>().map_err(|e| err("TRUSTED_PROXIES", e)))
            .collect::<Result<Vec<_>, _>>()?;

        let tls_cert_file = r.raw("TLS_CERT_FILE").map(PathBuf::from);
        let tls_key_file = r.raw("TLS_KEY_FILE").map(PathBuf::from);
        match (&tls_cert_file, &tls_key_file) {
            (Some(_), None) => {
                return Err(err("TLS_KEY_FILE", "is required when TLS_CERT_FILE is set"));
            }
            (None, Some(_)) => {
                return Err(err("TLS_CERT_FILE", "is required when TLS_KEY_FILE is set"));
            }
            _ => {}
        }

        let redis_key_prefix = r.string("REDIS_KEY_PREFIX", "tn:");
        let amqp_queue_prefix = r.string("AMQP_QUEUE_PREFIX", "truenumber");
        if !amqp_queue_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(
                "AMQP_QUEUE_PREFIX",
                "only letters, digits, `-`, `_` and `.`",
            ));
        }

        let database_max_connections =
            r.parse("DATABASE_MAX_CONNECTIONS", default_pool_size(), (1, 1000))?;
        let sqlite_write_bounds = crate::storage::write_watch::WriteBounds {
            unhealthy_after: Duration::from_secs(r.parse(
                "SQLITE_BUSY_UNHEALTHY_SECONDS",
                10,
                (1, 3600),
            )?),
            exit_after: Duration::from_secs(r.parse(
                "SQLITE_UNWRITABLE_EXIT_SECONDS",
                60,
                (2, 86_400),
            )?),
        };
        if sqlite_write_bounds.exit_after <= sqlite_write_bounds.unhealthy_after {
            return Err(err(
                "SQLITE_UNWRITABLE_EXIT_SECONDS",
                format!(
                    "must be more than SQLITE_BUSY_UNHEALTHY_SECONDS ({}), so health says so \
                     before the process exits",
                    sqlite_write_bounds.unhealthy_after.as_secs()
                ),
            ));
        }
        let port = r.parse("PORT", 3000, (0, u16::MAX))?;
        Ok(Self {
            max_concurrent_requests: r.parse(
                "MAX_CONCURRENT_REQUESTS",
                database_max_connections as usize * 4,
                (1, 1_000_000),
            )?,
            mode,
            data_dir,
            database_url: Secret::new(database_url),
            database_max_connections,
            redis_url: Secret::new(r.url(
                "REDIS_URL",
                "redis://127.0.0.1:6379",
                &["redis", "rediss"],
            )?),
            redis_key_prefix,
            redis_timeout: Duration::from_millis(r.parse(
                "REDIS_TIMEOUT_MS",
                1000,
                (10, 60_000),
            )?),
            amqp_url: Secret::new(r.url(
                "AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                &["amqp", "amqps"],
            )?),
            amqp_queue_prefix,
            port,
            worker_port: r.parse("WORKER_PORT", 3001, (0, u16::MAX))?,
            jwt_secret: Secret::new(jwt_secret),
            app_tokens,
            app_token_require_phone_number: r.bool("APP_TOKEN_REQUIRE_PHONE_NUMBER", true)?,
            api_base_url: r
                .url(
                    "API_BASE_URL",
                    &format!("http://localhost:{port}"),
                    &["http", "https"],
                )?
                .trim_end_matches('/')
                .to_owned(),
            webhook_timeout: Duration::from_secs(r.parse("WEBHOOK_TIMEOUT", 30, (1, 300))?),
            webhook_secret_overlap: Duration::from_secs(r.parse(
                "WEBHOOK_SECRET_OVERLAP_SECONDS",
                86_400,
                (0, 2_592_000),
            )?),
            data_retention_days: r.parse("DATA_RETENTION_DAYS", 30, (1, 3650))?,
            log_level: r.string("LOG_LEVEL", "info"),
            log_format,
            verification_ttl: Duration::from_secs(r.parse(
                "VERIFICATION_TTL_SECONDS",
                600,
                (1, 86_400),
            )?),
            rate_limit_initiate_per_hour: r.parse(
                "RATE_LIMIT_INITIATE_PER_HOUR",
                100,
                (1, 100_000_000),
            )?,
            rate_limit_status_per_hour: r.parse(
                "RATE_LIMIT_STATUS_PER_HOUR",
                1000,
                (1, 100_000_000),
            )?,
            rate_limit_initiate_per_number: r.parse(
                "RATE_LIMIT_INITIATE_PER_NUMBER",
                5,
                (0, 1_000_000),
            )?,
            rate_limit_initiate_per_number_window: Duration::from_secs(r.parse(
                "RATE_LIMIT_INITIATE_PER_NUMBER_WINDOW_SECONDS",
                600,
                (1, 604_800),
            )?),
            deny_cooldown: Duration::from_secs(r.parse(
                "DENY_COOLDOWN_SECONDS",
                86_400,
                (0, 31_536_000),
            )?),
            rate_limit_submit_per_minute: r.parse(
                "RATE_LIMIT_SUBMIT_PER_MINUTE",
                10,
                (1, 1_000_000),
            )?,
            rate_limits_enabled: r.bool("RATE_LIMITS_ENABLED", true)?,
            deep_link_base,
            webhook_retry_schedule,
            webhook_allow_private_networks: r.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
            worker_concurrency: r.parse("WORKER_CONCURRENCY", 32, (1, 1000))?,
            sweep_interval: Duration::from_secs(r.parse("SWEEP_INTERVAL_SECONDS", 5, (1, 3600))?),
            max_body_bytes: r.parse("MAX_BODY_BYTES", 16_384, (256, 10 * 1024 * 1024))?,
            tls_cert_file,
            tls_key_file,
            require_https: r.bool("REQUIRE_HTTPS", false)?,
            trusted_proxies,
            migrate_on_start: r.bool("MIGRATE_ON_START", true)?,
            api_key_cache_ttl: Duration::from_secs(r.parse(
                "API_KEY_CACHE_TTL_SECONDS",
                30,
                (0, 3600),
            )?),
            http_header_timeout: Duration::from_secs(r.parse(
                "HTTP_HEADER_TIMEOUT_SECONDS",
                10,
                (1, 600),
            )?),
            http_body_timeout: Duration::from_secs(r.parse(
                "HTTP_BODY_TIMEOUT_SECONDS",
                10,
                (1, 600),
            )?),
            http_idle_timeout: Duration::from_secs(r.parse(
                "HTTP_IDLE_TIMEOUT_SECONDS",
                60,
                (1, 3600),
            )?),
            auth_failure_delay: Duration::from_millis(r.parse(
                "AUTH_FAILURE_DELAY_MS",
                250,
                (0, 5000),
            )?),
            sqlite_write_bounds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.entry("JWT_SECRET".into())
            .or_insert_with(|| "x".repeat(32));
        Config::from_map(&map)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = with(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.worker_port, 3001);
        assert_eq!(c.verification_ttl, Duration::from_secs(600));
        assert_eq!(c.rate_limit_initiate_per_hour, 100);
        assert_eq!(c.rate_limit_status_per_hour, 1000);
        assert_eq!(c.rate_limit_submit_per_minute, 10);
        assert_eq!(c.webhook_timeout, Duration::from_secs(30));
        assert_eq!(c.webhook_secret_overlap, Duration::from_secs(86_400));
        assert_eq!(c.data_retention_days, 30);
        assert_eq!(c.max_body_bytes, 16_384);
        assert_eq!(c.webhook_retry_schedule.len(), 11);
        assert_eq!(c.deep_link_base, "truenumberapp://verify");
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.migrate_on_start && !c.require_https && !c.webhook_allow_private_networks);
        assert!(c.database_max_connections >= 10);
        assert_eq!(
            c.sqlite_write_bounds,
            crate::storage::write_watch::WriteBounds {
                unhealthy_after: Duration::from_secs(10),
                exit_after: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn the_exit_bound_comes_after_the_unhealthy_one() {
        let c = with(&[
            ("SQLITE_BUSY_UNHEALTHY_SECONDS", "2"),
            ("SQLITE_UNWRITABLE_EXIT_SECONDS", "3"),
        ])
        .unwrap();
        assert_eq!(c.sqlite_write_bounds.exit_after, Duration::from_secs(3));
        for (unhealthy, exit) in [("5", "5"), ("10", "4")] {
            let e = with(&[
                ("SQLITE_BUSY_UNHEALTHY_SECONDS", unhealthy),
                ("SQLITE_UNWRITABLE_EXIT_SECONDS", exit),
            ])
            .unwrap_err();
            assert_eq!(e.var, "SQLITE_UNWRITABLE_EXIT_SECONDS", "{e}");
        }
        let e = with(&[("SQLITE_BUSY_UNHEALTHY_SECONDS", "0")]).unwrap_err();
        assert_eq!(e.var, "SQLITE_BUSY_UNHEALTHY_SECONDS");
    }

    #[test]
    fn jwt_secret_is_required_and_long() {
        let missing = Config::from_map(&HashMap::new()).unwrap_err();
        assert_eq!(missing.var, "JWT_SECRET");
        let short = with(&[("JWT_SECRET", "short")]).unwrap_err();
        assert_eq!(short.var, "JWT_SECRET");
        assert_eq!(
            short.to_string(),
            "configuration error: JWT_SECRET: must be at least 32 bytes, got 5"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("WEBHOOK_TIMEOUT", "0"),
            ("VERIFICATION_TTL_SECONDS", "-5"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("AMQP_URL", "nope"),
            ("WEBHOOK_RETRY_SCHEDULE", "5,x"),
            ("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("TLS_CERT_FILE", "/tmp/cert.pem"),
            ("DEEP_LINK_BASE", "noscheme"),
            ("MAX_BODY_BYTES", "1"),
            ("AMQP_QUEUE_PREFIX", "a b"),
        ] {
            let e = with(&[(var, value)]).unwrap_err();
            let expected = if var == "TLS_CERT_FILE" {
                "TLS_KEY_FILE"
            } else {
                var
            };
            assert_eq!(e.var, expected, "{var}={value} gave {e}");
        }
    }

    #[test]
    fn api_base_url_follows_port() {
        assert_eq!(with(&[]).unwrap().api_base_url, "http://localhost:3000");
        assert_eq!(
            with(&[("PORT", "3005")]).unwrap().api_base_url,
            "http://localhost:3005"
        );
        let set = with(&[
            ("PORT", "3005"),
            ("API_BASE_URL", "https://api.example.com/"),
        ]);
        assert_eq!(set.unwrap().api_base_url, "https://api.example.com");
    }

    #[test]
    fn the_worker_needs_no_jwt_secret() {
        let c = Config::worker_from_lookup(|_| None).unwrap();
        assert!(c.jwt_secret.expose().len() >= 32);
        let short = Config::worker_from_lookup(|n| (n == "JWT_SECRET").then(|| "short".into()));
        assert_eq!(short.unwrap_err().var, "JWT_SECRET");
    }

    fn jwks_fixture() -> String {
        format!(
            "{}/../tests/fixtures/app-token-keys/jwks.json",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn app_token_trust_is_unset_by_default_and_read_when_set() {
        let c = with(&[("APP_TOKEN_ISSUER", "  "), ("APP_TOKEN_AUDIENCE", "")]).unwrap();
        assert!(c.app_tokens.jwks.is_none());
        assert_eq!(c.app_tokens.issuer, None);
        assert_eq!(c.app_tokens.audience, None);
        let fixture = jwks_fixture();
        let c = with(&[
            ("APP_TOKEN_JWKS_FILE", fixture.as_str()),
            ("APP_TOKEN_ISSUER", "https://tokens.example"),
            ("APP_TOKEN_AUDIENCE", "truenumber"),
        ])
        .unwrap();
        assert_eq!(c.app_tokens.jwks.map(|j| j.keys().count()), Some(3));
        assert_eq!(
            c.app_tokens.issuer.as_deref(),
            Some("https://tokens.example")
        );
        assert_eq!(c.app_tokens.audience.as_deref(), Some("truenumber"));
    }

    #[test]
    fn the_jwks_url_must_be_https_or_loopback_http_and_not_beside_a_file() {
        for ok in [
            "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com",
            "http://127.0.0.1:8080/jwks.json",
            "http://localhost/certs",
            "http://[::1]:9000/keys",
        ] {
            let c = with(&[("APP_TOKEN_JWKS_URL", ok)]).unwrap();
            assert_eq!(c.app_tokens.jwks_url.as_deref(), Some(ok));
            assert!(c.app_tokens.jwks.is_none());
        }
        for (bad, says) in [
            (
                "http://keys.example/jwks.json",
                "must be https (http only to a loopback",
            ),
            (
                "http://10.0.0.1/jwks.json",
                "must be https (http only to a loopback",
            ),
            ("ftp://keys.example/jwks.json", "must be https, not ftp"),
            ("keys.example/jwks.json", "is not a URL"),
        ] {
            let e = with(&[("APP_TOKEN_JWKS_URL", bad)]).unwrap_err();
            assert_eq!(e.var, "APP_TOKEN_JWKS_URL");
            assert!(e.reason.contains(says), "{bad}: {}", e.reason);
        }
        let fixture = jwks_fixture();
        let both = with(&[
            ("APP_TOKEN_JWKS_URL", "https://keys.example/jwks.json"),
            ("APP_TOKEN_JWKS_FILE", fixture.as_str()),
        ])
        .unwrap_err();
        assert_eq!(
            both.reason,
            "set APP_TOKEN_JWKS_URL or APP_TOKEN_JWKS_FILE, not both"
        );
        // The worker never fetches keys.
        let worker = Config::worker_from_lookup(|n| {
            (n == "APP_TOKEN_JWKS_URL").then(|| "http://keys.example/x".to_owned())
        });
        assert!(worker.unwrap().app_tokens.jwks_url.is_none());
    }

    #[test]
    fn number_binding_is_required_unless_switched_off() {
        assert!(with(&[]).unwrap().app_token_require_phone_number);
        let off = with(&[("APP_TOKEN_REQUIRE_PHONE_NUMBER", "false")]).unwrap();
        assert!(!off.app_token_require_phone_number);
        let e = with(&[("APP_TOKEN_REQUIRE_PHONE_NUMBER", "maybe")]).unwrap_err();
        assert_eq!(e.var, "APP_TOKEN_REQUIRE_PHONE_NUMBER");
    }

    #[test]
    fn a_bad_jwks_file_stops_start_up_naming_the_variable() {
        let dir = std::env::temp_dir().join(format!("tn_cfg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("private.json");
        std::fs::write(
            &private,
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "AA", "y": "AA", "d": "AA"}]}"#,
        )
        .unwrap();
        let not_json = dir.join("not.json");
        std::fs::write(&not_json, "-----BEGIN PUBLIC KEY-----").unwrap();
        let missing = dir.join("missing.json");
        for (path, says) in [
            (&private, "key `k1` holds private key material (`d`)"),
            (&not_json, "is not JSON"),
            (&missing, "cannot read"),
        ] {
            let e = with(&[("APP_TOKEN_JWKS_FILE", &path.display().to_string())]).unwrap_err();
            assert_eq!(e.var, "APP_TOKEN_JWKS_FILE");
            let line = e.to_string();
            assert!(
                line.starts_with("configuration error: APP_TOKEN_JWKS_FILE: ")
                    && line.contains(says),
                "{line}"
            );
            // The private value itself is never repeated.
            assert!(!line.contains("\"d\": \"AA\""));
        }
        // The worker does not read the file at all; standalone reads it like serve.
        let bad = private.display().to_string();
        let worker =
            Config::worker_from_lookup(|n| (n == "APP_TOKEN_JWKS_FILE").then(|| bad.clone()));
        assert!(worker.unwrap().app_tokens.jwks.is_none());
        let standalone = Config::standalone_from_lookup(|n| match n {
            "APP_TOKEN_JWKS_FILE" => Some(bad.clone()),
            "JWT_SECRET" => Some("x".repeat(32)),
            _ => None,
        });
        assert_eq!(standalone.unwrap_err().var, "APP_TOKEN_JWKS_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = with(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"));
        assert!(!debug.contains(&"x".repeat(32)));
    }

    #[test]
    fn trusted_proxies_parse_and_match() {
        let c = with(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")]).unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
        assert!(!c.trusted_proxies[0].contains("11.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies[1].contains("127.0.0.1".parse().unwrap()));
        assert!(c.trusted_proxies[2].contains("::1".parse().unwrap()));
        assert!(c.trusted_proxies[1].contains("::ffff:127.0.0.1".parse().unwrap()));
    }
}
