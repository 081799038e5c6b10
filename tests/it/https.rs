//! HTTPS: the API's own TLS listener with a certificate made here, HSTS, and REQUIRE_HTTPS.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, unique};

/// A self-signed certificate for 127.0.0.1/localhost, written to a fresh directory.
fn self_signed() -> (std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(unique("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test]
async fn the_whole_flow_works_over_the_apis_own_tls() {
    let (cert, key) = self_signed();
    let app = TestApp::spawn_with(|env| {
        env.insert("TLS_CERT_FILE".into(), cert.display().to_string());
        env.insert("TLS_KEY_FILE".into(), key.display().to_string());
        env.insert("REQUIRE_HTTPS".into(), "true".into());
    })
    .await;
    assert!(app.base.starts_with("https://"));
    let c = app.create_company(&unique("tls")).await;
    let resp = app
        .initiate(
            &c.api_key,
            &json!({"mobileNumber": "+447911123456", "companyId": c.id, "requestId": "r"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let started: Value = resp.json().await.unwrap();
    let vid = started["verificationId"].as_str().unwrap();
    let token = app.app_token("tls_user", Some("+447911123456"));
    let resp = app
        .submit(&token, &json!({"verificationId": vid, "userConfirmedNumber": "+447911123456", "appUserId": "tls_user"}))
        .await;
    assert_eq!(resp.status(), 200);
    let status: Value = app.status(&c.api_key, vid).await.json().await.unwrap();
    assert_eq!(status["status"], "verified");

    // Plain HTTP to the TLS port is not served.
    let plain = app.base.replacen("https://", "http://", 1);
    assert!(
        app.client
            .get(format!("{plain}/health/live"))
            .send()
            .await
            .is_err()
    );

    // The health-check subcommand probes the TLS listener.
    let out = crate::helpers::cli_run(
        &app.config,
        &["health-check", "--url", &app.url("/health/live")],
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "ok");
}

#[tokio::test]
async fn plain_http_is_refused_when_https_is_required() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REQUIRE_HTTPS".into(), "true".into());
    })
    .await;
    let c = app.create_company(&unique("plain")).await;
    let resp = app.status(&c.api_key, "ver_x").await;
    assert!(!resp.headers().contains_key("strict-transport-security"));
    let body = assert_error(resp, 403, "HTTPS_REQUIRED", "error").await;
    assert!(body["message"].as_str().unwrap().contains("HTTPS"));
    // A client's own X-Forwarded-Proto is not believed from an untrusted address.
    let resp = app
        .client
        .get(app.url("/api/v1/verification/status/ver_x"))
        .bearer_auth(&c.api_key)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "HTTPS_REQUIRED", "error").await;
    // Probes stay reachable for load balancers.
    assert_eq!(
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_trusted_proxy_may_vouch_for_https() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REQUIRE_HTTPS".into(), "true".into());
        env.insert("TRUSTED_PROXIES".into(), "127.0.0.0/8, ::1".into());
    })
    .await;
    let c = app.create_company(&unique("proxy")).await;
    let resp = app
        .client
        .get(app.url("/api/v1/verification/status/ver_x"))
        .bearer_auth(&c.api_key)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    // Without the header the same proxy's request is plain HTTP.
    let resp = app.status(&c.api_key, "ver_x").await;
    assert_error(resp, 403, "HTTPS_REQUIRED", "error").await;
    // The health-check subcommand fails against a port where nothing listens.
    assert!(
        crate::helpers::cli_run(
            &app.config,
            &["health-check", "--url", "http://127.0.0.1:1/health/live"]
        )
        .await
        .is_err()
    );
}
