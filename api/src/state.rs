//! What every handler shares: configuration, the database, the authenticator, the token keys,
//! the rate limiter and the event queue.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use truenumber_core::{
    companies::api_keys::ApiKeyAuthenticator,
    companies::app_tokens::AppTokenKeys,
    config::Config,
    limits::{InProcessLimiter, LimiterUnavailable, RateLimiter, SlidingWindowLimiter},
    observability::metrics::Metrics,
    queue::{InProcessQueue, Queue},
    storage::lanes::{ApiConnections, RequestDb},
    storage::write_watch::WriteWatch,
    webhooks::events::EventPublisher,
};

/// Shared state of an API node; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// The pool (authentication misses, the outbox, health).
    pub db: DatabaseConnection,
    /// Where the statements of requests run (initiate, submit, status).
    pub lanes: RequestDb,
    /// API-key authentication with its cache.
    pub auth: ApiKeyAuthenticator,
    /// App-token verification.
    pub app_tokens: AppTokenKeys,
    /// Rate limits: Redis (production) or in-process (standalone).
    pub limiter: RateLimiter,
    /// The event queue: RabbitMQ (production) or in-process (standalone).
    pub queue: Queue,
    /// Publishes committed events in the background.
    pub publisher: EventPublisher,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Standalone only: the watch on the SQLite file's write lock, which health reports.
    pub write_watch: Option<WriteWatch>,
}

impl AppState {
    /// Production state over a node's database connections (opened by
    /// [`ApiConnections::open`], which sizes the pool and the lanes together from
    /// `DATABASE_MAX_CONNECTIONS`). The lanes, Redis and RabbitMQ connect lazily (a node
    /// starts, and serves what it can, while they are down); only an unparseable `REDIS_URL`
    /// fails here.
    pub fn new(config: Config, connections: ApiConnections) -> Result<Self, LimiterUnavailable> {
        let queue = Queue::from_config(&config, &connections.pool);
        let limiter = RateLimiter::Redis(SlidingWindowLimiter::new(
            config.redis_url.expose(),
            &config.redis_key_prefix,
            config.redis_timeout,
        )?);
        Ok(Self::assemble(config, connections, limiter, queue))
    }

    /// Standalone state: one SQLite pool ([`ApiConnections::sqlite`]), the in-process limiter
    /// and the in-process queue (whose consumer the standalone loops take).
    pub fn standalone(config: Config, connections: ApiConnections) -> Self {
        let queue = Queue::from_config(&config, &connections.pool);
        let limiter = RateLimiter::InProcess(InProcessLimiter::new());
        Self::assemble(config, connections, limiter, queue)
    }

    fn assemble(
        config: Config,
        connections: ApiConnections,
        limiter: RateLimiter,
        queue: Queue,
    ) -> Self {
        let ApiConnections { pool: db, lanes } = connections;
        let metrics = Arc::new(Metrics::new());
        if let Some(jwks) = &config.app_tokens.jwks {
            tracing::info!(
                keys = ?jwks,
                issuer = config.app_tokens.issuer.as_deref(),
                audience = config.app_tokens.audience.as_deref(),
                "app tokens: HS256 with JWT_SECRET, and the keys of APP_TOKEN_JWKS_FILE by kid"
            );
        }
        if let Some(url) = &config.app_tokens.jwks_url {
            tracing::info!(
                url = url.as_str(),
                issuer = config.app_tokens.issuer.as_deref(),
                audience = config.app_tokens.audience.as_deref(),
                "app tokens: HS256 with JWT_SECRET, and the identity provider's keys of \
                 APP_TOKEN_JWKS_URL by kid (fetched in the background)"
            );
        }
        if !config.app_token_require_phone_number {
            tracing::warn!(
                "APP_TOKEN_REQUIRE_PHONE_NUMBER=false: app tokens without a verified \
                 phone_number may confirm any live session. Development only: such sessions \
                 are reported with numberBinding \"none\"; never run production like this"
            );
        }
        let app_tokens =
            AppTokenKeys::from_config_counted(&config, metrics.app_token_key_fetches());
        // Runs until the keys are dropped with the last clone of this state.
        let _refresher = app_tokens.start_refreshing();
        Self {
            publisher: EventPublisher::start(db.clone(), queue.clone()),
            queue,
            limiter,
            auth: ApiKeyAuthenticator::new(db.clone(), config.api_key_cache_ttl, metrics.auth()),
            lanes,
            app_tokens,
            config: Arc::new(config),
            metrics,
            db,
            write_watch: None,
        }
    }

    /// This state with standalone mode's watch on the database's write lock (health reports
    /// it).
    pub fn with_write_watch(mut self, watch: WriteWatch) -> Self {
        self.write_watch = Some(watch);
        self
    }

    /// The in-process queue of a standalone node.
    pub fn in_process_queue(&self) -> anyhow::Result<InProcessQueue> {
        match &self.queue {
            Queue::InProcess(q) => Ok(q.clone()),
            Queue::RabbitMq(_) => anyhow::bail!("a production node has no in-process queue"),
        }
    }
}
