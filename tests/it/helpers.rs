//! The test harness: a fresh database, Redis key prefix and queue prefix per test, the API
//! served in-process on port 0, and typed helpers per endpoint.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use reqwest::StatusCode;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use truenumber_api::state::AppState;
use truenumber_core::{app_token::AppTokenKeys, companies, config::Config, db};

/// The JWT secret every test app uses.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A unique, lowercase, SQL- and key-safe suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The environment of a test app before overrides.
pub fn base_env() -> HashMap<String, String> {
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
    ])
}

/// A company made for a test.
#[derive(Debug, Clone)]
pub struct TestCompany {
    /// Public id.
    pub id: String,
    /// Its API key.
    pub api_key: String,
}

/// An API node served in-process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    /// A pool onto its database (for assertions).
    pub db: DatabaseConnection,
    /// A client with no redirects and a timeout.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
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
        let config = Config::from_map(&env).expect("test config");
        Self::spawn_config(config).await
    }

    /// An app on a given configuration (a second node shares the first one's database).
    pub async fn spawn_config(config: Config) -> Self {
        truenumber_core::telemetry::install_crypto_provider();
        // `TEST_LOG=debug cargo nextest run … --no-capture` shows the servers' logs.
        if let Ok(level) = std::env::var("TEST_LOG") {
            let mut logged = config.clone();
            logged.log_level = level;
            truenumber_core::telemetry::init(&logged, true);
        }
        db::migrate(&config).await.expect("migrate");
        let db = db::connect(&config).await.expect("connect");
        let bound = truenumber_api::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = bound.local_addr;
        let (tx, rx) = oneshot::channel::<()>();
        let state = AppState::new(config.clone(), db.clone()).expect("state");
        let server = tokio::spawn(bound.serve(state, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            base: format!("http://{addr}"),
            config,
            db,
            client,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn stop(mut self) {
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
        let created = companies::create_company(&self.db, id, &format!("{id} Ltd"), None)
            .await
            .expect("create company");
        TestCompany {
            id: created.company.company_id,
            api_key: created.api_key.expose().to_owned(),
        }
    }

    /// An app token for `user`, optionally bound to a number.
    pub fn app_token(&self, user: &str, phone: Option<&str>) -> String {
        AppTokenKeys::new(&self.config.jwt_secret)
            .mint(user, phone, 600)
            .expect("mint")
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
