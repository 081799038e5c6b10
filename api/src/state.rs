//! What every handler shares: configuration, the pool, the authenticator, the token keys.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use truenumber_core::{
    app_token::AppTokenKeys,
    auth::ApiKeyAuthenticator,
    config::Config,
    db_lanes::{ApiConnections, ConnectionLanes},
    events::{Broker, EventPublisher, Topology},
    metrics::Metrics,
    rate_limit::{LimiterUnavailable, SlidingWindowLimiter},
};

/// Shared state of an API node; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// PostgreSQL pool (authentication misses, the outbox, health).
    pub db: DatabaseConnection,
    /// Dedicated connections for the statements of requests (initiate, submit, status).
    pub lanes: ConnectionLanes,
    /// API-key authentication with its cache.
    pub auth: ApiKeyAuthenticator,
    /// App-token verification.
    pub app_tokens: AppTokenKeys,
    /// Redis rate limits.
    pub limiter: SlidingWindowLimiter,
    /// RabbitMQ (health checks).
    pub broker: Arc<Broker>,
    /// Publishes committed events in the background.
    pub publisher: EventPublisher,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// State over a node's database connections (opened by [`ApiConnections::open`], which
    /// sizes the pool and the lanes together from `DATABASE_MAX_CONNECTIONS`). The lanes,
    /// Redis and RabbitMQ connect lazily (a node starts, and serves what it can, while they are
    /// down); only an unparseable `REDIS_URL` fails here.
    pub fn new(config: Config, connections: ApiConnections) -> Result<Self, LimiterUnavailable> {
        let ApiConnections { pool: db, lanes } = connections;
        let topology = Topology::new(&config.amqp_queue_prefix, &config.webhook_retry_schedule);
        let broker = Arc::new(Broker::new(
            config.amqp_url.expose(),
            topology,
            std::time::Duration::from_secs(5),
        ));
        let metrics = Arc::new(Metrics::new());
        Ok(Self {
            publisher: EventPublisher::start(db.clone(), broker.clone()),
            broker,
            limiter: SlidingWindowLimiter::new(
                config.redis_url.expose(),
                &config.redis_key_prefix,
                config.redis_timeout,
            )?,
            auth: ApiKeyAuthenticator::new(
                db.clone(),
                config.api_key_cache_ttl,
                metrics.api_key_hashes(),
            ),
            lanes,
            app_tokens: AppTokenKeys::new(&config.jwt_secret),
            config: Arc::new(config),
            metrics,
            db,
        })
    }
}
