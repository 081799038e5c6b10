//! The test harness: a fresh database, Redis key prefix and queue prefix per test, the API
//! served in-process on port 0, and typed helpers per endpoint.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use reqwest::StatusCode;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use truenumber_api::state::AppState;
use truenumber_core::{
    companies,
    companies::app_tokens::AppTokenKeys,
    config::{Config, Mode},
    storage::db,
    storage::lanes::ApiConnections,
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
    ])
}

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

    /// A new session of `company` for `number`, confirmed by the app (so its webhook goes
    /// out); returns its id.
    pub async fn verified_session(&self, company: &TestCompany, number: &str) -> String {
        let id = self.new_session(company, number).await;
        let token = self.app_token("app_user_1", Some(number));
        let resp = self
            .submit(
                &token,
                &json!({"verificationId": id, "userConfirmedNumber": number, "appUserId": "app_user_1"}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        id
    }

    /// `POST /api/v1/verification/initiate` with a key and a JSON body.
    pub async fn initiate(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/verification/initiate"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("initiate")
    }

    /// Initiates for `company` with a fresh request id; asserts 200 and returns the body.
    pub async fn initiate_ok(&self, company: &TestCompany, number: &str) -> Value {
        let resp = self
            .initiate(
                &company.api_key,
                &json!({"mobileNumber": number, "companyId": company.id, "requestId": unique("req")}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("json")
    }

    /// Initiates for `company` and returns the new session's id.
    pub async fn new_session(&self, company: &TestCompany, number: &str) -> String {
        self.initiate_ok(company, number).await["verificationId"]
            .as_str()
            .expect("verificationId")
            .to_owned()
    }

    /// `GET` of an unauthenticated path (probes, metrics, documents); its body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    /// `GET` of an unauthenticated path that answers JSON; its body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// `POST /api/v1/verification/submit` with an app token.
    pub async fn submit(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/verification/submit"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("submit")
    }

    /// `GET /api/v1/verification/status/{id}`.
    pub async fn status(&self, key: &str, verification_id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/v1/verification/status/{verification_id}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("status")
    }
}

/// Asserts an error response: status, the exact key set of the error body, its code and
/// `status` field, and that `requestId` equals the `X-Request-Id` header. Returns the body.
pub async fn assert_error(
    resp: reqwest::Response,
    status: u16,
    code: &str,
    body_status: &str,
) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status of {code}");
    let header_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Request-Id header");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = resp.json().await.expect("JSON error body");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "message", "requestId", "status", "timestamp"],
        "{body}"
    );
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], body_status, "{body}");
    assert_eq!(body["requestId"], header_id.as_str());
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().expect("timestamp"))
            .is_ok()
    );
    assert!(!body["message"].as_str().expect("message").is_empty());
    body
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

/// A worker daemon run in-process.
pub struct TestWorker {
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Its health port.
    pub addr: SocketAddr,
    _queues: QueueCleanup,
}

impl TestWorker {
    /// Starts a worker on `config` (its database must be migrated). In standalone mode the
    /// app already runs the worker's loops: this is a handle that does nothing.
    pub async fn spawn(config: &Config) -> Self {
        if config.mode == Mode::Standalone {
            return Self {
                shutdown: None,
                handle: None,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                _queues: QueueCleanup::none(),
            };
        }
        let (tx, rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel();
        let handle = tokio::spawn(truenumber_worker::run(
            config.clone(),
            async move {
                let _ = rx.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let Ok(addr) = addr_rx.await else {
            panic!("worker did not start: {:?}", handle.await);
        };
        Self {
            shutdown: Some(tx),
            handle: Some(handle),
            addr,
            _queues: QueueCleanup::for_config(config),
        }
    }

    /// Asks it to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("worker task").expect("worker result");
        }
    }
}

/// How the test receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// This status.
    Status(u16),
    /// This status with `Retry-After: secs`.
    StatusRetryAfter(u16, u64),
    /// Wait this long, then 200.
    Hang(Duration),
    /// 307 to this same endpoint (a client that followed it would be answered 200).
    Redirect,
    /// This status with a body of `x` that never ends.
    Endless(u16),
}

/// One webhook the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its body.
    pub body: String,
}

#[derive(Default)]
struct ReceiverState {
    received: std::sync::Mutex<Vec<Received>>,
    script: std::sync::Mutex<std::collections::VecDeque<Reply>>,
}

/// A company's webhook endpoint, at the edge of the world: records every request and answers
/// from a script (200 once the script is used up).
#[derive(Clone)]
pub struct TestReceiver {
    state: std::sync::Arc<ReceiverState>,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    /// The port.
    pub port: u16,
}

#[poem::handler]
async fn receive(
    req: &poem::Request,
    body: poem::Body,
    state: poem::web::Data<&std::sync::Arc<ReceiverState>>,
) -> poem::Response {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in req.headers() {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.insert(name, value);
        }
    }
    let body = body.into_string().await.unwrap_or_default();
    let reply = state.script.lock().expect("lock").pop_front();
    if let Some(Reply::Hang(d)) = reply {
        tokio::time::sleep(d).await;
    }
    state
        .received
        .lock()
        .expect("lock")
        .push(Received { headers, body });
    match reply {
        Some(Reply::Status(s)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .body("scripted"),
        Some(Reply::StatusRetryAfter(s, secs)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .header("retry-after", secs.to_string())
            .body("scripted"),
        Some(Reply::Endless(s)) => poem::Response::builder()
            .status(poem::http::StatusCode::from_u16(s).expect("status"))
            .body(poem::Body::from_bytes_stream(futures::stream::repeat_with(
                || Ok::<_, std::io::Error>(vec![b'x'; 8192]),
            ))),
        Some(Reply::Redirect) => poem::Response::builder()
            .status(poem::http::StatusCode::TEMPORARY_REDIRECT)
            .header("location", "/hook")
            .body("moved"),
        _ => poem::Response::builder().body("ok"),
    }
}

impl TestReceiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        use poem::{
            EndpointExt,
            listener::{Acceptor, Listener},
        };
        let state = std::sync::Arc::new(ReceiverState::default());
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind receiver");
        let port = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().map(|s| s.port()))
            .expect("port");
        let app = poem::Route::new()
            .at("/hook", poem::post(receive))
            .data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Self {
            state,
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
        }
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .expect("lock")
            .extend(replies.iter().copied());
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived (bounded by `limit`), and returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        eventually(limit, || {
            let got = self.received();
            async move { (got.len() >= n).then_some(got) }
        })
        .await
    }
}
