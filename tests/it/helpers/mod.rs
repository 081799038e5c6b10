//! The test harness: a fresh database, Redis key prefix and queue prefix per test, the API
//! served in-process on port 0 ([`app`]), a typed client with a call for every operation
//! ([`client`]), a webhook receiver at the edge of the world ([`receiver`]), an in-process
//! worker ([`worker`]), the binaries as processes and the CLI as the binary runs it
//! ([`process`]), and captured logs ([`logs`]). Test modules import from here only, never from
//! each other.

mod app;
mod browser;
mod client;
mod logs;
pub mod process;
mod receiver;
mod worker;

use std::{collections::HashMap, time::Duration};

use truenumber_core::config::Config;

pub use self::{
    app::{QueueCleanup, TestApp, TestCompany},
    browser::Browser,
    client::{Expect, NUMBER, assert_error, header},
    logs::Captured,
    process::{cli_json, cli_run, spawn_process},
    receiver::{Received, Reply, TestReceiver},
    worker::TestWorker,
};

/// The JWT secret every test app uses.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A unique, lowercase, SQL- and key-safe suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The harness parameter: `TN_TEST_MODE=standalone` runs the HTTP tests against a standalone
/// node (SQLite in a fresh `DATA_DIR`, the in-process limiter and queue, the worker's loops in
/// the same process); unset, against production mode (PostgreSQL, Redis, RabbitMQ).
pub fn standalone() -> bool {
    std::env::var("TN_TEST_MODE").is_ok_and(|m| m == "standalone")
}

/// The configuration of `env` in the mode under test.
pub fn config_from(env: &HashMap<String, String>) -> Config {
    if standalone() {
        Config::standalone_from_lookup(|name| env.get(name).cloned()).expect("test config")
    } else {
        Config::from_map(env).expect("test config")
    }
}

/// The environment of a test app before overrides (in the mode under test).
pub fn base_env() -> HashMap<String, String> {
    let mut env = production_env();
    if standalone() {
        env.remove("DATABASE_URL");
        let dir = std::env::temp_dir().join(unique("tn_test"));
        env.insert("DATA_DIR".to_owned(), dir.display().to_string());
    }
    env
}

/// The environment of a production-mode test app (a fresh database, key and queue prefixes).
pub fn production_env() -> HashMap<String, String> {
    let db_name = unique("tn_test");
    HashMap::from([
        (
            "DATABASE_URL".to_owned(),
            format!("postgresql://postgres@127.0.0.1:5432/{db_name}"),
        ),
        ("DATABASE_MAX_CONNECTIONS".to_owned(), "8".to_owned()),
        ("JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        (
            "REDIS_KEY_PREFIX".to_owned(),
            format!("{}:", unique("tntest")),
        ),
        ("AMQP_QUEUE_PREFIX".to_owned(), unique("tntest")),
        ("LOG_LEVEL".to_owned(), "warn".to_owned()),
        (
            "API_BASE_URL".to_owned(),
            "http://localhost:3000".to_owned(),
        ),
        // Test receivers listen on loopback; the SSRF tests turn this off again.
        (
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS".to_owned(),
            "true".to_owned(),
        ),
        ("WEBHOOK_RETRY_SCHEDULE".to_owned(), "1,1,1".to_owned()),
        ("WEBHOOK_TIMEOUT".to_owned(), "5".to_owned()),
        ("SWEEP_INTERVAL_SECONDS".to_owned(), "1".to_owned()),
        ("WORKER_PORT".to_owned(), "0".to_owned()),
        // Tests make many refused requests; the delay has a test of its own.
        ("AUTH_FAILURE_DELAY_MS".to_owned(), "0".to_owned()),
        // Tests make many sessions for one number, and deny and ask again; the abuse controls
        // have tests of their own (abuse.rs), which set these as they need.
        (
            "RATE_LIMIT_INITIATE_PER_NUMBER".to_owned(),
            "100000".to_owned(),
        ),
        ("DENY_COOLDOWN_SECONDS".to_owned(), "0".to_owned()),
    ])
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored row of a session.
pub async fn session_row(
    app: &TestApp,
    verification_id: &str,
) -> truenumber_entities::verification_session::Model {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    truenumber_entities::verification_session::Entity::find()
        .filter(
            truenumber_entities::verification_session::Column::VerificationId.eq(verification_id),
        )
        .one(&app.db)
        .await
        .expect("query")
        .expect("session row")
}

/// A node that delivers webhooks: the app, a webhook receiver, a worker (a no-op handle in
/// standalone mode, whose node runs the worker's loops itself), and a company whose webhook
/// URL is the receiver's; the node's environment changed by `tweak` first.
pub async fn delivering_with(
    tweak: impl FnOnce(&mut HashMap<String, String>),
) -> (TestApp, TestReceiver, TestWorker, TestCompany) {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn_with(tweak).await;
    let worker = TestWorker::spawn(&app.config).await;
    let company = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    (app, receiver, worker, company)
}

/// [`delivering_with`] the default test environment.
pub async fn delivering() -> (TestApp, TestReceiver, TestWorker, TestCompany) {
    delivering_with(|_| {}).await
}
