//! What an attacker without a key can make a node do: hold connections by sending slowly,
//! guess secrets for a known key id, present odd tokens and text; and the edges a client meets
//! when the server closes a connection.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use truenumber_core::{
    companies, companies::app_tokens::LEEWAY_SECONDS, verification::SessionStatus,
};

use crate::helpers::{TEST_JWT_SECRET, TestApp, assert_error, unique};

/// Reads whatever the server sends until it closes the connection (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

/// A connection that sent the headers of a submit with `Content-Length: 100` and no body.
async fn slow_body(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/verification/submit HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"verif",
    )
    .await
    .unwrap();
    s
}

/// A connection that sent half a request line and stops.
async fn slow_header(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/v1/verification/status/ver_x HTTP/1.1\r\nHo")
        .await
        .unwrap();
    s
}

fn host_port(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn four_hundred_slow_clients_do_not_stall_authenticated_requests() {
    // 8 connections' budget admits 32 requests at once: the old admission (taken before the
    // body) was stalled by 40 slow bodies.
    let app = TestApp::spawn_with(|env| {
        env.insert("HTTP_HEADER_TIMEOUT_SECONDS".into(), "6".into());
        env.insert("HTTP_BODY_TIMEOUT_SECONDS".into(), "6".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let session = app.initiate_ok(&c, "+447911123456").await;
    let id = session["verificationId"].as_str().unwrap().to_owned();
    let addr = host_port(&app);

    let mut bodies = Vec::new();
    let mut headers = Vec::new();
    for _ in 0..200 {
        bodies.push(slow_body(&addr).await);
        headers.push(slow_header(&addr).await);
    }
    // While all 400 are held open, authenticated calls keep being answered promptly.
    for _ in 0..20 {
        let resp = tokio::time::timeout(Duration::from_secs(3), app.status(&c.api_key, &id))
            .await
            .expect("status answered while slow clients hold connections");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // And the slow ones are cut: a body that never came gets a JSON 408 that closes the
    // connection; headers that never came get the connection closed.
    let cut_within = Duration::from_secs(20);
    for mut s in bodies {
        let answer = read_until_closed(&mut s, cut_within)
            .await
            .expect("slow body cut by the body timeout");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"));
        assert!(answer.contains("\"code\":\"REQUEST_TIMEOUT\""), "{answer}");
    }
    for mut s in headers {
        read_until_closed(&mut s, cut_within)
            .await
            .expect("slow header cut by the header timeout");
    }
}

#[tokio::test]
async fn headers_trickled_a_byte_at_a_time_and_idle_connections_are_cut() {
    let app = TestApp::spawn_with(|env| {
        env.insert("HTTP_HEADER_TIMEOUT_SECONDS".into(), "1".into());
    })
    .await;
    let addr = host_port(&app);

    // One byte every 200 ms never completes the headers within the timeout.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    let request = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for b in request {
        if trickle.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), trickle.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a byte-a-second header was never cut");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A connection that sends nothing is closed too, and so is a kept-alive one gone quiet.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("silent connection closed");
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut kept, Duration::from_secs(10))
        .await
        .expect("idle kept-alive connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn refused_credentials_are_answered_late_outside_admission() {
    let app = TestApp::spawn_with(|env| {
        env.insert("AUTH_FAILURE_DELAY_MS".into(), "400".into());
        // One admission slot: if a delayed refusal held it, the good request would wait.
        env.insert("MAX_CONCURRENT_REQUESTS".into(), "1".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, "+447911123456").await;
    let wrong = same_id_other_secret(&c.api_key);
    let started = tokio::time::Instant::now();
    let (refused, good) = tokio::join!(app.status(&wrong, &id), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = app.status(&c.api_key, &id).await;
        (resp.status(), started.elapsed())
    });
    let refused_after = started.elapsed();
    assert_error(refused, 401, "UNAUTHORIZED", "error").await;
    assert!(
        refused_after >= Duration::from_millis(400),
        "{refused_after:?}"
    );
    assert_eq!(good.0, StatusCode::OK);
    assert!(
        good.1 < refused_after,
        "the good request waited behind the refusal"
    );
}

fn api_key_hashes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("truenumber_api_key_hashes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("api_key_hashes counter")
}

async fn hashes(app: &TestApp) -> u64 {
    api_key_hashes(&app.get_text("/metrics").await)
}

/// `tn_live_<key id of `key`>_<a random 43-character secret>`.
fn same_id_other_secret(key: &str) -> String {
    let id = truenumber_core::companies::secrets::api_key_parts(key)
        .map(|p| p.lookup_id)
        .unwrap();
    let secret =
        truenumber_core::companies::secrets::new_verification_id().unwrap()[4..].to_owned();
    format!(
        "tn_live_{id}_{}",
        format!("{secret}{secret}")[..43].to_owned()
    )
}

#[tokio::test]
async fn a_known_key_id_with_wrong_secrets_never_runs_argon2() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, "+447911123456").await;
    let after_good_key = hashes(&app).await;
    assert_eq!(
        after_good_key, 1,
        "the good key is hashed once, then cached"
    );

    for _ in 0..50 {
        let resp = app.status(&same_id_other_secret(&c.api_key), &id).await;
        assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    }
    assert_eq!(
        hashes(&app).await,
        after_good_key,
        "no argon2 for wrong secrets"
    );

    // A key made before check values existed is hashed as before until its next good use,
    // which records its check value; from then on wrong secrets cost no hash either.
    let key_id = truenumber_core::companies::secrets::api_key_parts(&c.api_key)
        .map(|p| p.lookup_id)
        .unwrap()
        .to_owned();
    let legacy = app.create_company(&unique("legacy")).await;
    let legacy_id = truenumber_core::companies::secrets::api_key_parts(&legacy.api_key)
        .map(|p| p.lookup_id)
        .unwrap()
        .to_owned();
    use sea_orm::ConnectionTrait;
    app.db
        .execute_unprepared(&format!(
            "UPDATE api_keys SET secret_check = NULL WHERE lookup_id = '{legacy_id}'"
        ))
        .await
        .unwrap();
    let before = hashes(&app).await;
    let resp = app
        .status(&same_id_other_secret(&legacy.api_key), &id)
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    assert_eq!(hashes(&app).await, before + 1);
    let resp = app.status(&legacy.api_key, &id).await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await; // authenticated: not its session
    assert_eq!(hashes(&app).await, before + 2);
    let resp = app
        .status(&same_id_other_secret(&legacy.api_key), &id)
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    assert_eq!(
        hashes(&app).await,
        before + 2,
        "the check value was written"
    );
    assert_ne!(key_id, legacy_id);
}

/// An HS256 token with the test secret, built by hand so the test does not share the code
/// under test.
fn token(claims: &Value) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(TEST_JWT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

#[tokio::test]
async fn app_tokens_honour_nbf_iat_and_a_small_leeway() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let leeway = LEEWAY_SECONDS as i64;
    // Claims are made from the clock just before the submit that carries them.
    let submit = |claims: fn(i64, i64) -> Value| {
        let app = &app;
        let c = c.clone();
        async move {
            let id = app.new_session(&c, "+447911123456").await;
            let body = json!({"verificationId": id, "userConfirmedNumber": "+447911123456", "appUserId": "u"});
            let now = chrono::Utc::now().timestamp();
            app.submit(&token(&claims(now, leeway)), &body).await
        }
    };
    let refused: [fn(i64, i64) -> Value; 3] = [
        |now, _| json!({"sub": "u", "exp": now + 600, "nbf": now + 315_360_000}),
        |now, leeway| json!({"sub": "u", "exp": now + 600, "iat": now + leeway + 60}),
        |now, leeway| json!({"sub": "u", "exp": now - leeway - 10}),
    ];
    for claims in refused {
        assert_error(submit(claims).await, 401, "UNAUTHORIZED", "error").await;
    }
    let accepted: [fn(i64, i64) -> Value; 2] = [
        |now, _| json!({"sub": "u", "exp": now + 600, "nbf": now - 1, "iat": now, "phone_number": "+447911123456"}),
        |now, _| json!({"sub": "u", "exp": now - 1, "phone_number": "+447911123456"}), // within the leeway
    ];
    for claims in accepted {
        assert_eq!(submit(claims).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn identifiers_need_a_visible_character() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    for (request_id, why) in [
        ("\u{202E}\u{200B}", "invisible format or bidirectional"),
        ("ok\u{2067}", "invisible format or bidirectional"),
        ("\u{3000} ", "must contain a visible character"),
    ] {
        let resp = app
            .initiate(
                &c.api_key,
                &json!({"mobileNumber": "+447911123456", "companyId": c.id, "requestId": request_id}),
            )
            .await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("requestId") && message.contains(why),
            "{message}"
        );
    }
    let id = app.new_session(&c, "+447911123456").await;
    let user = "\u{200B}";
    let resp = app
        .submit(
            &app.app_token(user, Some("+447911123456")),
            &json!({"verificationId": id, "userConfirmedNumber": "+447911123456", "appUserId": user}),
        )
        .await;
    let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert!(err["message"].as_str().unwrap().contains("appUserId"));
    let row = crate::helpers::session_row(&app, &id).await;
    assert_eq!(row.status, SessionStatus::Pending);
    assert_eq!(row.app_user_id, None);
}

#[tokio::test]
async fn health_reports_state_and_latency_but_no_error_text() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
        env.insert(
            "AMQP_URL".into(),
            "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        );
    })
    .await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    for dep in ["redis", "rabbitmq"] {
        let check = body["checks"][dep].as_object().unwrap();
        assert_eq!(check["status"], "down");
        assert!(check["latencyMs"].is_number());
        let mut keys: Vec<_> = check.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["latencyMs", "status"], "{text}");
    }
    assert_eq!(body["checks"]["database"]["status"], "up");
    for leak in ["refused", "os error", "unavailable:", "127.0.0.1"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn a_deactivated_companys_sessions_cannot_be_submitted() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, "+447911123456").await;
    companies::set_active(&app.db, &c.id, false).await.unwrap();
    let body =
        json!({"verificationId": id, "userConfirmedNumber": "+447911123456", "appUserId": "u"});
    let resp = app
        .submit(&app.app_token("u", Some("+447911123456")), &body)
        .await;
    assert_error(resp, 403, "COMPANY_INACTIVE", "error").await;
    let row = crate::helpers::session_row(&app, &id).await;
    assert_eq!(row.status, SessionStatus::Pending);
    assert_eq!(row.app_user_id, None);

    companies::set_active(&app.db, &c.id, true).await.unwrap();
    let resp = app
        .submit(&app.app_token("u", Some("+447911123456")), &body)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_pooled_client_survives_a_413_on_its_connection() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, "+447911123456").await;
    // One pooled connection, reused whenever the server allows it.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let oversized = vec![b' '; app.config.max_body_bytes + 1];
    for round in 0..50 {
        let resp = client
            .post(app.url("/api/v1/verification/initiate"))
            .bearer_auth(&c.api_key)
            .header("content-type", "application/json")
            .body(oversized.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: 413 request: {e}"));
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            resp.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        assert_error(resp, 413, "PAYLOAD_TOO_LARGE", "error").await;
        let next = client
            .get(app.url(&format!("/api/v1/verification/status/{id}")))
            .bearer_auth(&c.api_key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: the request after a 413 failed: {e}"));
        assert_eq!(next.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn oversized_request_lines_and_headers_are_refused_and_closed() {
    // hyper answers these before a request exists, so no JSON body or X-Request-Id can be
    // attached (documented in docs/LIMITS.md); what matters is a prompt refusal and a closed
    // connection.
    let app = TestApp::spawn().await;
    let addr = host_port(&app);
    let long_uri = format!(
        "GET /api/v1/verification/status/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    // hyper refuses a header block once its read buffer (about 400 KiB) is full without the
    // block's end; a block that lands in one large read can pass up to about twice that (under
    // load, 500 kB once did). 2 MB is over any buffer hyper keeps.
    let big_header = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2_000_000)
    );
    let two_lengths = "POST /api/v1/verification/initiate HTTP/1.1\r\nHost: x\r\n\
                       Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
        .to_owned();
    for (request, status) in [(long_uri, "414"), (big_header, "431"), (two_lengths, "400")] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(request.as_bytes()).await;
        let answer = read_until_closed(&mut s, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{status}: not answered and closed"));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {}",
            &answer[..answer.len().min(200)]
        );
    }
}

#[tokio::test]
async fn a_flood_of_company_requests_waits_for_admission_like_initiate() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    // One admission slot, held by a request stuck in its handler: the company's row is locked
    // from outside, so setting the webhook URL waits on it inside the slot.
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_CONCURRENT_REQUESTS".into(), "1".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    // Warm the key cache, so the requests below need no database before admission.
    assert_eq!(
        app.call(reqwest::Method::GET, "/company", &c.api_key, None)
            .await
            .status(),
        StatusCode::OK
    );
    let lock = app.db.begin().await.unwrap();
    lock.execute_unprepared(&format!(
        "SELECT 1 FROM companies WHERE company_id = '{}' FOR UPDATE",
        c.id
    ))
    .await
    .unwrap();
    let stuck = {
        let app_base = app.base.clone();
        let client = app.client.clone();
        let key = c.api_key.clone();
        tokio::spawn(async move {
            client
                .put(format!("{app_base}/api/v1/company/webhook"))
                .bearer_auth(key)
                .json(&serde_json::json!({"url": "https://93.184.216.34/hook"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Let the stuck request take the slot.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A flood of company reads, and an initiate: each waits for the slot, bounded like a wait
    // for a database connection, then 503 with Retry-After, exactly alike.
    let started = tokio::time::Instant::now();
    let reads = futures::future::join_all(
        (0..8).map(|_| app.call(reqwest::Method::GET, "/company", &c.api_key, None)),
    );
    let body = json!({"mobileNumber": "+447911123456", "companyId": c.id, "requestId": "r1"});
    let initiate = app.initiate(&c.api_key, &body);
    let (reads, initiate) = tokio::join!(reads, initiate);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(4), "{waited:?}");
    for resp in reads.into_iter().chain([initiate]) {
        assert_eq!(resp.headers()["retry-after"], "1");
        let body = assert_error(resp, 503, "SERVICE_UNAVAILABLE", "error").await;
        assert_eq!(body["message"], "The service is busy; retry shortly");
    }
    // Probes and metrics never wait.
    let live = tokio::time::timeout(
        Duration::from_secs(2),
        app.client.get(app.url("/health/live")).send(),
    )
    .await
    .expect("probes skip admission")
    .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    // The lock goes, the stuck request finishes, and the slot serves the next one.
    lock.rollback().await.unwrap();
    assert_eq!(stuck.await.unwrap(), StatusCode::OK);
    assert_eq!(
        app.call(reqwest::Method::GET, "/company", &c.api_key, None)
            .await
            .status(),
        StatusCode::OK
    );
}
