//! A TrueNumber API node served in-process on port 0 (production mode, or a standalone node
//! with `TN_TEST_MODE=standalone`), with its companies and app tokens.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;
use truenumber_api::state::AppState;
use truenumber_core::{
    companies,
    companies::app_tokens::AppTokenKeys,
    config::{Config, Mode},
    storage::db,
    storage::lanes::ApiConnections,
};

use super::{base_env, config_from};

/// A company made for a test.
#[derive(Debug, Clone)]
pub struct TestCompany {
    /// Public id.
    pub id: String,
    /// Its live API key.
    pub api_key: String,
    /// Its test-mode API key.
    pub test_api_key: String,
    /// Its webhook secret.
    pub webhook_secret: String,
}

/// An API node served in-process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    /// The app's own pool onto its database (for assertions; part of the app's connection
    /// budget, `DATABASE_MAX_CONNECTIONS`).
    pub db: DatabaseConnection,
    /// A client with no redirects and a timeout.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    standalone: Option<truenumber_api::standalone::Running>,
    _queues: QueueCleanup,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The data of a standalone app lives as long as the test (files still open by its
        // tasks are unlinked, which Unix allows).
        if self.config.mode == Mode::Standalone {
            let _ = std::fs::remove_dir_all(&self.config.data_dir);
        }
    }
}

impl TestApp {
    /// An app with the default test environment.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// An app whose environment `tweak` may change first.
    pub async fn spawn_with(tweak: impl FnOnce(&mut HashMap<String, String>)) -> Self {
        let mut env = base_env();
        tweak(&mut env);
        Self::spawn_config(config_from(&env)).await
    }

    /// An app on a given configuration (a second node shares the first one's database).
    pub async fn spawn_config(config: Config) -> Self {
        truenumber_core::observability::telemetry::install_crypto_provider();
        // `TEST_LOG=debug cargo nextest run … --no-capture` shows the servers' logs.
        if let Ok(level) = std::env::var("TEST_LOG") {
            let mut logged = config.clone();
            logged.log_level = level;
            truenumber_core::observability::telemetry::init(&logged, true);
        }
        if config.mode == Mode::Standalone {
            return Self::spawn_standalone(config).await;
        }
        db::migrate(&config).await.expect("migrate");
        // The app's own connections, within its budget; assertions share its pool.
        let connections = ApiConnections::open(&config).await.expect("connect");
        let db = connections.pool.clone();
        let bound = truenumber_api::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config)
            .await
            .expect("bind");
        let addr = bound.local_addr;
        let (tx, rx) = oneshot::channel::<()>();
        let state = AppState::new(config.clone(), connections).expect("state");
        let server = tokio::spawn(bound.serve(state, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            // Tests that serve TLS use a self-signed certificate made on the spot.
            .danger_accept_invalid_certs(config.tls_cert_file.is_some())
            .build()
            .expect("client");
        let scheme = if config.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        Self {
            base: format!("{scheme}://{addr}"),
            _queues: QueueCleanup::for_config(&config),
            config,
            db,
            client,
            shutdown: Some(tx),
            server: Some(server),
            standalone: None,
        }
    }

    async fn spawn_standalone(config: Config) -> Self {
        let running = truenumber_api::standalone::start(
            config.clone(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .expect("standalone start");
        let scheme = if config.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(config.tls_cert_file.is_some())
            .build()
            .expect("client");
        Self {
            base: format!("{scheme}://{}", running.addr),
            _queues: QueueCleanup::none(),
            db: running.db.clone(),
            config,
            client,
            shutdown: None,
            server: None,
            standalone: Some(running),
        }
    }

    /// Standalone only: stops the node and starts a new one on the same `DATA_DIR` (a fresh
    /// process state: empty caches, same data).
    pub async fn restart(&mut self) {
        let running = self.standalone.take().expect("a standalone app");
        running.stop().await.expect("standalone stop");
        let again = Self::spawn_standalone(self.config.clone()).await;
        self.base = again.base.clone();
        self.db = again.db.clone();
        self.standalone = again.standalone_handover();
    }

    fn standalone_handover(mut self) -> Option<truenumber_api::standalone::Running> {
        // The data dir stays: it is the restarted app's.
        self.config.mode = Mode::Production;
        self.standalone.take()
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(running) = self.standalone.take() {
            running.stop().await.expect("standalone stop");
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    /// `base` + path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a company (through the same code as `company create`).
    pub async fn create_company(&self, id: &str) -> TestCompany {
        self.create_company_with_webhook(id, None).await
    }

    /// Creates a company with a webhook URL.
    pub async fn create_company_with_webhook(
        &self,
        id: &str,
        webhook: Option<&str>,
    ) -> TestCompany {
        let created = companies::create_company(&self.db, id, &format!("{id} Ltd"), webhook)
            .await
            .expect("create company");
        TestCompany {
            id: created.company.company_id,
            api_key: created.api_key.expose().to_owned(),
            test_api_key: created.test_api_key.expose().to_owned(),
            webhook_secret: created.company.webhook_secret,
        }
    }

    /// An app token for `user`, bound to a number as the app's identity provider would issue
    /// it (HS256 with `JWT_SECRET`, with the configured `iss`/`aud`); `None` mints an unbound
    /// one, which live sessions refuse unless `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`.
    pub fn app_token(&self, user: &str, phone: Option<&str>) -> String {
        AppTokenKeys::from_config(&self.config)
            .mint(user, phone, 600)
            .expect("mint")
    }

    /// An app token for `user` bound to no number (the attack of issue 22, and the
    /// development switch).
    pub fn unbound_token(&self, user: &str) -> String {
        self.app_token(user, None)
    }
}

/// Deletes a test's RabbitMQ queues when dropped (even when the test panics), so runs do not
/// accumulate queues on the shared broker.
pub struct QueueCleanup {
    amqp_url: String,
    queues: Vec<String>,
}

impl QueueCleanup {
    /// Nothing to delete (standalone mode has no broker).
    pub fn none() -> Self {
        Self {
            amqp_url: String::new(),
            queues: Vec::new(),
        }
    }

    /// The queues a configuration's prefix makes.
    pub fn for_config(config: &Config) -> Self {
        if config.mode == Mode::Standalone {
            return Self::none();
        }
        let topology = truenumber_core::queue::Topology::new(
            &config.amqp_queue_prefix,
            &config.webhook_retry_schedule,
        );
        Self {
            amqp_url: config.amqp_url.expose().to_owned(),
            queues: topology.all_queues(),
        }
    }
}

impl Drop for QueueCleanup {
    fn drop(&mut self) {
        if self.queues.is_empty() {
            return;
        }
        let url = self.amqp_url.clone();
        let queues = std::mem::take(&mut self.queues);
        // Drop cannot await; a short-lived thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(Ok(conn)) = tokio::time::timeout(
                    Duration::from_secs(3),
                    lapin::Connection::connect(&url, lapin::ConnectionProperties::default()),
                )
                .await
                else {
                    return;
                };
                if let Ok(ch) = conn.create_channel().await {
                    for q in queues {
                        let _ = ch
                            .queue_delete(
                                q.as_str().into(),
                                lapin::options::QueueDeleteOptions::default(),
                            )
                            .await;
                    }
                }
                let _ = conn.close(200, "test done".into()).await;
            });
        })
        .join();
    }
}
