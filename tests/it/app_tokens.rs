//! App tokens through the HTTP API (submit), in both modes: tokens of the app's own token
//! service (EdDSA, ES256, RS256, chosen by `kid` from `APP_TOKEN_JWKS_FILE`) beside HS256 with
//! `JWT_SECRET`; forged, confused and mis-addressed tokens refused with one generic 401; the
//! configured `iss`/`aud` held to every token; a bad key file stopping start-up. The keys are
//! the test-only fixtures in `tests/fixtures/app-token-keys/`.

use base64::Engine as _;
use futures::StreamExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use truenumber_api::cli::{self, Command};
use truenumber_core::verification::SessionStatus;

use crate::helpers::{
    TEST_JWT_SECRET, TestApp, TestCompany, assert_error, base_env, session_row, unique,
};

const NUMBER: &str = "+447911123456";
const USER: &str = "app_user_jwks";
const ISSUER: &str = "https://tokens.example.com";
const AUDIENCE: &str = "truenumber-api";

/// The keys of `jwks.json`: algorithm, kid, private key file.
const KEYS: [(Algorithm, &str, &str); 3] = [
    (
        Algorithm::EdDSA,
        "test-ed25519",
        "test-only-ed25519-private.pem",
    ),
    (Algorithm::ES256, "test-p256", "test-only-p256-private.pem"),
    (
        Algorithm::RS256,
        "test-rsa2048",
        "test-only-rsa2048-private.pem",
    ),
];

fn fixture_path(name: &str) -> String {
    format!(
        "{}/fixtures/app-token-keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

fn private_key(alg: Algorithm, file: &str) -> EncodingKey {
    let pem = fixture(file);
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap()
}

/// A member of a fixture JWK, base64url-decoded (what an attacker has of a public key).
fn jwk_member(kid: &str, member: &str) -> Vec<u8> {
    let set: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let key = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key[member].as_str().unwrap())
        .unwrap()
}

/// Claims for `USER`, valid for ten minutes, plus `extra`.
fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({"sub": USER, "exp": now + 600, "iat": now, "phone_number": NUMBER});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    h
}

fn signed(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    signed(
        &header(Algorithm::HS256, kid),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

/// `token` with its header replaced by `header` (signature kept): a tampered header.
fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    format!("{encoded}.{rest}")
}

/// An app trusting the fixture key set, with `iss`/`aud` when given.
async fn app_trusting(issuer: Option<&str>, audience: Option<&str>) -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("APP_TOKEN_JWKS_FILE".into(), fixture_path("jwks.json"));
        if let Some(iss) = issuer {
            env.insert("APP_TOKEN_ISSUER".into(), iss.into());
        }
        if let Some(aud) = audience {
            env.insert("APP_TOKEN_AUDIENCE".into(), aud.into());
        }
        // Many submits on one session here; the limit has tests of its own.
        env.insert("RATE_LIMIT_SUBMIT_PER_MINUTE".into(), "1000".into());
    })
    .await
}

fn body(id: &str) -> Value {
    json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": USER})
}

/// Submits `token` for a fresh session: 200 and the session verified.
async fn assert_accepted(app: &TestApp, company: &TestCompany, token: &str, what: &str) {
    let id = app.new_session(company, NUMBER).await;
    let resp = app.submit(token, &body(&id)).await;
    assert_eq!(resp.status().as_u16(), 200, "{what} was refused");
    let row = session_row(app, &id).await;
    assert_eq!(row.status, SessionStatus::Verified, "{what}");
    assert_eq!(row.app_user_id.as_deref(), Some(USER), "{what}");
}

/// Submits `token` for session `id`: the one generic 401, whatever check failed.
async fn assert_refused(app: &TestApp, id: &str, token: &str, what: &str) {
    let resp = app.submit(token, &body(id)).await;
    assert_eq!(resp.status().as_u16(), 401, "{what} was not refused");
    let err = assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    assert_eq!(err["message"], "Invalid or expired app token", "{what}");
}

#[tokio::test]
async fn tokens_of_each_key_and_hs256_are_accepted() {
    let app = app_trusting(None, None).await;
    let company = app.create_company(&unique("jwks")).await;
    for (alg, kid, file) in KEYS {
        let token = signed(
            &header(alg, Some(kid)),
            &claims(json!({"phone_number": NUMBER})),
            &private_key(alg, file),
        );
        assert_accepted(&app, &company, &token, &format!("{alg:?}")).await;
    }
    // HS256 with JWT_SECRET, as minted by the harness and by hand (no kid).
    let minted = app.app_token(USER, Some(NUMBER));
    assert_accepted(&app, &company, &minted, "minted HS256").await;
    let by_hand = hs256(None, &claims(json!({})), TEST_JWT_SECRET.as_bytes());
    assert_accepted(&app, &company, &by_hand, "HS256").await;
    // A key's token binds its number as an HS256 one does: another number's session is not
    // found, and stays pending.
    let id = app.new_session(&company, NUMBER).await;
    let bound = signed(
        &header(Algorithm::EdDSA, Some("test-ed25519")),
        &claims(json!({"phone_number": "+447912345678"})),
        &private_key(Algorithm::EdDSA, KEYS[0].2),
    );
    let resp = app.submit(&bound, &body(&id)).await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    assert_eq!(session_row(&app, &id).await.status, SessionStatus::Pending);
    // And its `sub` must be the body's appUserId.
    let id = app.new_session(&company, NUMBER).await;
    let other_user = signed(
        &header(Algorithm::RS256, Some("test-rsa2048")),
        &claims(json!({"sub": "someone_else"})),
        &private_key(Algorithm::RS256, KEYS[2].2),
    );
    let resp = app.submit(&other_user, &body(&id)).await;
    assert_error(resp, 403, "FORBIDDEN", "error").await;
}

#[tokio::test]
async fn forged_and_confused_tokens_are_refused() {
    let app = app_trusting(None, None).await;
    let company = app.create_company(&unique("jwks")).await;
    let id = app.new_session(&company, NUMBER).await;
    let c = claims(json!({}));
    let ed = private_key(Algorithm::EdDSA, KEYS[0].2);
    let ec = private_key(Algorithm::ES256, KEYS[1].2);
    let rsa = private_key(Algorithm::RS256, KEYS[2].2);
    let good_ec = signed(&header(Algorithm::ES256, Some("test-p256")), &c, &ec);

    let mut refused: Vec<(String, String)> = vec![
        // A kid that names no key (with a real key's signature), and none at all.
        (
            "unknown kid".into(),
            signed(&header(Algorithm::EdDSA, Some("test-ed25519-old")), &c, &ed),
        ),
        (
            "EdDSA without kid".into(),
            signed(&header(Algorithm::EdDSA, None), &c, &ed),
        ),
        // The right kid and alg, a key outside the set.
        (
            "stranger key".into(),
            signed(
                &header(Algorithm::EdDSA, Some("test-ed25519")),
                &c,
                &private_key(Algorithm::EdDSA, "test-only-stranger-ed25519-private.pem"),
            ),
        ),
        // Another key's algorithm under a kid: an RS256 signature with the P-256 key's kid, an
        // ES256 one with the RSA key's.
        (
            "RS256 under the P-256 kid".into(),
            signed(&header(Algorithm::RS256, Some("test-p256")), &c, &rsa),
        ),
        (
            "ES256 under the RSA kid".into(),
            signed(&header(Algorithm::ES256, Some("test-rsa2048")), &c, &ec),
        ),
        // A good ES256 token whose header alg is changed afterwards.
        (
            "header alg changed to ES384".into(),
            with_header(&good_ec, &json!({"alg": "ES384", "kid": "test-p256"})),
        ),
        (
            "header alg changed to EdDSA".into(),
            with_header(&good_ec, &json!({"alg": "EdDSA", "kid": "test-p256"})),
        ),
        // alg none, with and without a kid, with and without a signature.
        (
            "alg none".into(),
            format!(
                "{}.",
                with_header(&good_ec, &json!({"alg": "none", "kid": "test-p256"}))
                    .rsplit_once('.')
                    .unwrap()
                    .0
            ),
        ),
        (
            "alg none, no kid, signature kept".into(),
            with_header(&good_ec, &json!({"alg": "none"})),
        ),
        // HS256 under a key's kid, even signed with JWT_SECRET.
        (
            "HS256 with JWT_SECRET under a kid".into(),
            hs256(Some("test-ed25519"), &c, TEST_JWT_SECRET.as_bytes()),
        ),
        // And a kid on HS256 that names nothing: with a key set, HS256 carries no kid.
        (
            "HS256 with JWT_SECRET under an unknown kid".into(),
            hs256(Some("v1"), &c, TEST_JWT_SECRET.as_bytes()),
        ),
        // An expired key-set token.
        (
            "expired EdDSA".into(),
            signed(
                &header(Algorithm::EdDSA, Some("test-ed25519")),
                &claims(json!({"exp": chrono::Utc::now().timestamp() - 60})),
                &ed,
            ),
        ),
        // No sub.
        (
            "EdDSA without sub".into(),
            signed(
                &header(Algorithm::EdDSA, Some("test-ed25519")),
                &json!({"exp": chrono::Utc::now().timestamp() + 600}),
                &ed,
            ),
        ),
    ];
    // The algorithm-confusion attack: HS256 "signed" with what is public of each key (its PEM
    // and its JWK bytes), with that key's kid and without one.
    let public = [
        ("test-ed25519", fixture("test-only-ed25519-public.pem")),
        ("test-ed25519", jwk_member("test-ed25519", "x")),
        ("test-p256", fixture("test-only-p256-public.pem")),
        ("test-p256", jwk_member("test-p256", "x")),
        ("test-rsa2048", fixture("test-only-rsa2048-public.pem")),
        ("test-rsa2048", jwk_member("test-rsa2048", "n")),
    ];
    for (i, (kid, bytes)) in public.iter().enumerate() {
        refused.push((
            format!("HS256 with public bytes #{i} under {kid}"),
            hs256(Some(kid), &c, bytes),
        ));
        refused.push((
            format!("HS256 with public bytes #{i}, no kid"),
            hs256(None, &c, bytes),
        ));
    }
    for (what, token) in &refused {
        assert_refused(&app, &id, token, what).await;
    }

    // None of that touched the session, which the genuine token then confirms.
    assert_eq!(session_row(&app, &id).await.status, SessionStatus::Pending);
    let resp = app.submit(&good_ec, &body(&id)).await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn issuer_and_audience_are_held_to_every_token() {
    let app = app_trusting(Some(ISSUER), Some(AUDIENCE)).await;
    let company = app.create_company(&unique("jwks")).await;
    let addressed = json!({"iss": ISSUER, "aud": AUDIENCE});

    for (alg, kid, file) in KEYS {
        let key = private_key(alg, file);
        let token = signed(&header(alg, Some(kid)), &claims(addressed.clone()), &key);
        assert_accepted(&app, &company, &token, &format!("{alg:?} with iss/aud")).await;
    }
    // An audience list that includes ours.
    let listed = signed(
        &header(Algorithm::ES256, Some("test-p256")),
        &claims(json!({"iss": ISSUER, "aud": ["another-api", AUDIENCE]})),
        &private_key(Algorithm::ES256, KEYS[1].2),
    );
    assert_accepted(&app, &company, &listed, "aud list").await;
    // HS256: by hand, from the harness and from the app-token command (which add iss/aud).
    let by_hand = hs256(None, &claims(addressed), TEST_JWT_SECRET.as_bytes());
    assert_accepted(&app, &company, &by_hand, "HS256 with iss/aud").await;
    assert_accepted(
        &app,
        &company,
        &app.app_token(USER, Some(NUMBER)),
        "minted HS256",
    )
    .await;
    let out = crate::helpers::cli_run(
        &app.config,
        &["app-token", "--app-user-id", USER, "--phone", NUMBER],
    )
    .await
    .unwrap();
    assert_accepted(&app, &company, out.trim(), "app-token command").await;

    let id = app.new_session(&company, NUMBER).await;
    for (what, extra) in [
        (
            "wrong iss",
            json!({"iss": "https://evil.example.com", "aud": AUDIENCE}),
        ),
        ("wrong aud", json!({"iss": ISSUER, "aud": "another-api"})),
        (
            "wrong aud list",
            json!({"iss": ISSUER, "aud": ["another-api"]}),
        ),
        ("no iss", json!({"aud": AUDIENCE})),
        ("no aud", json!({"iss": ISSUER})),
        ("neither", json!({})),
    ] {
        let c = claims(extra);
        for (alg, kid, file) in KEYS {
            let token = signed(&header(alg, Some(kid)), &c, &private_key(alg, file));
            assert_refused(&app, &id, &token, &format!("{alg:?}: {what}")).await;
        }
        let token = hs256(None, &c, TEST_JWT_SECRET.as_bytes());
        assert_refused(&app, &id, &token, &format!("HS256: {what}")).await;
    }
    assert_eq!(session_row(&app, &id).await.status, SessionStatus::Pending);
}

#[test]
fn a_bad_key_file_stops_start_up_in_both_modes() {
    let dir = std::env::temp_dir().join(unique("tn_test_jwks"));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("with-private.json");
    let mut set: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    set["keys"][1]["d"] = json!("c2VjcmV0LXNjYWxhcg");
    std::fs::write(&private, set.to_string()).unwrap();
    let env = base_env();
    for (command, path, says) in [
        (Command::Serve, &private, "holds private key material"),
        (Command::Standalone, &private, "holds private key material"),
        (Command::Serve, &dir.join("missing.json"), "cannot read"),
        (
            Command::Standalone,
            &dir.join("missing.json"),
            "cannot read",
        ),
    ] {
        let standalone = matches!(command, Command::Standalone);
        let path = path.display().to_string();
        let lookup = |name: &str| match name {
            "APP_TOKEN_JWKS_FILE" => Some(path.clone()),
            // Standalone takes its data from DATA_DIR only.
            "DATABASE_URL" if standalone => None,
            "DATA_DIR" if standalone => Some(dir.display().to_string()),
            _ => env.get(name).cloned(),
        };
        let e = cli::config_for(&command, lookup).unwrap_err().to_string();
        assert!(
            e.starts_with("configuration error: APP_TOKEN_JWKS_FILE: ") && e.contains(says),
            "{command:?}: {e}"
        );
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// APP_TOKEN_JWKS_URL: the identity provider's keys, fetched from a local key server (the edge
// of the world) that counts its hits.

/// What the key server answers now.
struct KeyServerState {
    /// The served JWK Set.
    body: std::sync::Mutex<String>,
    /// The status to answer with (200 serves `body`).
    status: std::sync::atomic::AtomicU16,
    /// The `Cache-Control` header, if any.
    cache_control: std::sync::Mutex<Option<String>>,
    /// Requests received.
    hits: std::sync::atomic::AtomicUsize,
}

/// An identity provider's JWKS endpoint on a free loopback port.
struct KeyServer {
    state: std::sync::Arc<KeyServerState>,
    url: String,
}

#[poem::handler]
fn serve_keys(state: poem::web::Data<&std::sync::Arc<KeyServerState>>) -> poem::Response {
    use std::sync::atomic::Ordering;
    state.hits.fetch_add(1, Ordering::SeqCst);
    let status = state.status.load(Ordering::SeqCst);
    let mut resp = poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json");
    if let Some(cc) = state.cache_control.lock().unwrap().clone() {
        resp = resp.header("cache-control", cc);
    }
    resp.body(state.body.lock().unwrap().clone())
}

impl KeyServer {
    async fn start(kids: &[&str]) -> Self {
        use poem::{
            EndpointExt,
            listener::{Acceptor, Listener},
        };
        let state = std::sync::Arc::new(KeyServerState {
            body: std::sync::Mutex::new(key_set(kids)),
            status: std::sync::atomic::AtomicU16::new(200),
            cache_control: std::sync::Mutex::new(None),
            hits: std::sync::atomic::AtomicUsize::new(0),
        });
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap();
        let app = poem::Route::new()
            .at("/jwks.json", poem::get(serve_keys))
            .data(state.clone());
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        Self {
            state,
            url: format!("http://127.0.0.1:{port}/jwks.json"),
        }
    }

    fn serve(&self, kids: &[&str]) {
        *self.state.body.lock().unwrap() = key_set(kids);
    }

    fn answer(&self, status: u16) {
        self.state
            .status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.state.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The fixture keys named by `kids`, as a provider publishes them, plus an encryption key a
/// provider may publish beside them (Keycloak does), which is skipped.
fn key_set(kids: &[&str]) -> String {
    let set: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let mut keys: Vec<Value> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    let mut encryption = keys
        .iter()
        .find(|k| k["kty"] == "RSA")
        .cloned()
        .unwrap_or_else(|| set["keys"][2].clone());
    encryption["kid"] = json!("enc-key");
    encryption["use"] = json!("enc");
    encryption["alg"] = json!("RSA-OAEP");
    keys.push(encryption);
    json!({ "keys": keys }).to_string()
}

/// A token signed by fixture key `kid` (its algorithm from [`KEYS`]), bound to [`NUMBER`].
fn by_key(kid: &str) -> String {
    let (alg, _, file) = KEYS.iter().find(|(_, k, _)| *k == kid).unwrap();
    signed(
        &header(*alg, Some(kid)),
        &claims(json!({})),
        &private_key(*alg, file),
    )
}

/// An app trusting the key server's set.
async fn app_fetching(server: &KeyServer) -> TestApp {
    let url = server.url.clone();
    TestApp::spawn_with(move |env| {
        env.insert("APP_TOKEN_JWKS_URL".into(), url);
        env.insert("RATE_LIMIT_SUBMIT_PER_MINUTE".into(), "1000".into());
    })
    .await
}

/// `/health`'s report of the key source: `(HTTP status, "up" | "down")`.
async fn key_source_health(app: &TestApp) -> (u16, String) {
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["checks"]["appTokenKeys"]["status"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

async fn wait_until_keys_are_up(app: &TestApp) {
    crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        (key_source_health(app).await.1 == "up").then_some(())
    })
    .await;
}

#[tokio::test]
async fn keys_from_the_providers_url_verify_and_unusable_keys_verify_nothing() {
    let server = KeyServer::start(&["test-ed25519"]).await;
    let app = app_fetching(&server).await;
    let company = app.create_company(&unique("jwks")).await;
    wait_until_keys_are_up(&app).await;
    assert_eq!(key_source_health(&app).await, (200, "up".into()));
    assert_eq!(server.hits(), 1, "fetched once at start");
    assert_accepted(&app, &company, &by_key("test-ed25519"), "EdDSA by URL").await;
    // The skipped encryption key verifies nothing.
    let id = app.new_session(&company, NUMBER).await;
    let enc = signed(
        &header(Algorithm::RS256, Some("enc-key")),
        &claims(json!({})),
        &private_key(Algorithm::RS256, KEYS[2].2),
    );
    assert_refused(&app, &id, &enc, "a token naming the encryption key").await;
    assert_eq!(server.hits(), 2, "the unknown kid fetched once");

    // The provider rotates: the old key goes, a new one comes. Within the 30 s throttle
    // window of the last token-triggered fetch, an unknown kid waits for the next window.
    server.serve(&["test-p256"]);
    let hits = server.hits();
    assert_refused(
        &app,
        &id,
        &by_key("test-p256"),
        "within the throttle window",
    )
    .await;
    assert_eq!(server.hits(), hits, "no second fetch within 30 s");
}

#[tokio::test]
async fn a_rotation_is_picked_up_at_the_first_token_naming_the_new_key() {
    let server = KeyServer::start(&["test-ed25519"]).await;
    let app = app_fetching(&server).await;
    let company = app.create_company(&unique("jwks")).await;
    wait_until_keys_are_up(&app).await;
    assert_accepted(
        &app,
        &company,
        &by_key("test-ed25519"),
        "before the rotation",
    )
    .await;
    server.serve(&["test-p256", "test-rsa2048"]);
    assert_accepted(&app, &company, &by_key("test-p256"), "the new key").await;
    assert_eq!(server.hits(), 2, "one fetch at start, one for the new kid");
    // The new set replaced the old one: its keys verify without another fetch, the old
    // key no longer does.
    assert_accepted(&app, &company, &by_key("test-rsa2048"), "the other new key").await;
    let id = app.new_session(&company, NUMBER).await;
    assert_refused(&app, &id, &by_key("test-ed25519"), "the rotated-out key").await;
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn forged_kids_cause_at_most_one_fetch_in_thirty_seconds() {
    let server = KeyServer::start(&["test-ed25519"]).await;
    let app = app_fetching(&server).await;
    let company = app.create_company(&unique("jwks")).await;
    wait_until_keys_are_up(&app).await;
    let id = app.new_session(&company, NUMBER).await;
    let ed = private_key(Algorithm::EdDSA, KEYS[0].2);
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            signed(
                &header(
                    Algorithm::EdDSA,
                    Some(&format!("forged-{i}-{}", unique("k"))),
                ),
                &claims(json!({})),
                &ed,
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(tokens)
        .map(|token| {
            let app = &app;
            let body = body(&id);
            async move { app.submit(&token, &body).await.status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        elapsed < std::time::Duration::from_secs(30),
        "the 200 tokens took {elapsed:?}: the bound below is about a 30 s window"
    );
    assert_eq!(
        server.hits(),
        2,
        "200 forged kids in {elapsed:?}: one fetch at start, at most one more"
    );
    // The genuine key still verifies, from the held set.
    assert_accepted(&app, &company, &by_key("test-ed25519"), "after the flood").await;
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_provider_down_after_the_first_fetch_leaves_the_last_good_set() {
    let server = KeyServer::start(&["test-ed25519"]).await;
    let app = app_fetching(&server).await;
    let company = app.create_company(&unique("jwks")).await;
    wait_until_keys_are_up(&app).await;
    server.answer(500);
    // An unknown kid makes it try, and fail.
    let id = app.new_session(&company, NUMBER).await;
    assert_refused(
        &app,
        &id,
        &by_key("test-p256"),
        "unknown kid, provider down",
    )
    .await;
    assert_eq!(server.hits(), 2);
    // The held set still verifies, health stays up, and the failure is counted.
    assert_accepted(&app, &company, &by_key("test-ed25519"), "last good set").await;
    assert_eq!(key_source_health(&app).await, (200, "up".into()));
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("truenumber_app_token_key_fetches_total{kind=\"failed\"} 1")
            && metrics.contains("truenumber_app_token_key_fetches_total{kind=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_provider_down_from_the_start_gives_401_and_health_says_so_until_it_recovers() {
    let server = KeyServer::start(&["test-ed25519"]).await;
    server.answer(503);
    let app = app_fetching(&server).await;
    let company = app.create_company(&unique("jwks")).await;
    // Started anyway; the key source is down.
    crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        (server.hits() >= 1).then_some(())
    })
    .await;
    let (status, keys) = key_source_health(&app).await;
    assert_eq!((status, keys.as_str()), (503, "down"));
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "the key source does not gate readiness"
    );
    let id = app.new_session(&company, NUMBER).await;
    assert_refused(&app, &id, &by_key("test-ed25519"), "no key set yet").await;
    // HS256 tokens of JWT_SECRET need no key set.
    assert_accepted(&app, &company, &app.app_token(USER, Some(NUMBER)), "HS256").await;

    // The provider recovers: the background retries (1 s, doubling) pick the set up, with
    // no restart.
    server.answer(200);
    wait_until_keys_are_up(&app).await;
    assert_eq!(key_source_health(&app).await, (200, "up".into()));
    assert_accepted(&app, &company, &by_key("test-ed25519"), "after recovery").await;
}

#[tokio::test]
async fn the_providers_max_age_is_honoured_within_the_clamp() {
    use truenumber_core::companies::app_tokens::{AppTokenKeys, AppTokenTrust, remote};
    let server = KeyServer::start(&["test-p256"]).await;
    let keys = AppTokenKeys::with_trust(
        &truenumber_core::config::Secret::new(TEST_JWT_SECRET),
        &AppTokenTrust {
            jwks_url: Some(server.url.clone()),
            ..AppTokenTrust::default()
        },
    );
    let source = keys.remote_source().unwrap();
    assert_eq!(source.fresh_for(), None);
    for (cache_control, expected) in [
        (Some("public, max-age=600"), 600),
        (Some("max-age=10"), remote::MIN_CACHE.as_secs()),
        (Some("max-age=9999999"), remote::MAX_CACHE.as_secs()),
        (None, remote::DEFAULT_CACHE.as_secs()),
    ] {
        *server.state.cache_control.lock().unwrap() = cache_control.map(str::to_owned);
        source.fetch_and_store().await.unwrap();
        let fresh = source.fresh_for().unwrap().as_secs();
        assert!(
            (expected - 5..=expected).contains(&fresh),
            "{cache_control:?}: fresh for {fresh} s, expected {expected}"
        );
    }
    assert!(source.is_ready());
    let token = by_key("test-p256");
    assert_eq!(keys.verify(&token).await.unwrap().sub, USER);
    // A body past the size cap, or not a key set, is refused and keeps the held set.
    *server.state.body.lock().unwrap() = "x".repeat(remote::MAX_BYTES + 1);
    assert!(matches!(
        source.fetch_and_store().await,
        Err(remote::FetchError::TooLarge)
    ));
    *server.state.body.lock().unwrap() = r#"{"keys": []}"#.to_owned();
    assert!(matches!(
        source.fetch_and_store().await,
        Err(remote::FetchError::Refused(_))
    ));
    assert_eq!(keys.verify(&token).await.unwrap().sub, USER);
}
