//! Logs and metrics: request ids in log lines, no secret ever logged, metrics that move.

use std::time::Duration;

use serde_json::{Value, json};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::helpers::{Captured, TestApp, TestReceiver, TestWorker, base_env, cli_json, unique};

#[tokio::test]
async fn request_ids_are_logged_and_secrets_never_are() {
    let captured = Captured::default();
    let mut env = base_env();
    env.insert("LOG_LEVEL".into(), "debug".into());
    let config = crate::helpers::config_from(&env);
    let sink = captured.clone();
    truenumber_core::observability::telemetry::init_with_writer(
        &config,
        BoxMakeWriter::new(move || sink.clone()),
    );

    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn_config(config.clone()).await;
    let worker = TestWorker::spawn(&config).await;
    let created = cli_json(
        &config,
        &[
            "company",
            "create",
            "--company-id",
            &unique("logs"),
            "--name",
            "Logs",
            "--webhook-url",
            &receiver.url,
        ],
    )
    .await;
    let (company, key, secret) = (
        created["companyId"].as_str().unwrap().to_owned(),
        created["apiKey"].as_str().unwrap().to_owned(),
        created["webhookSecret"].as_str().unwrap().to_owned(),
    );
    let resp = app
        .initiate(
            &key,
            &json!({"mobileNumber": "+447911123456", "companyId": company, "requestId": "r1"}),
        )
        .await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let started: Value = resp.json().await.unwrap();
    let vid = started["verificationId"].as_str().unwrap();
    let token = app.app_token("log_user", Some("+447911123456"));
    let ok = app
        .submit(&token, &json!({"verificationId": vid, "userConfirmedNumber": "+447911123456", "appUserId": "log_user"}))
        .await;
    assert_eq!(ok.status(), 200);
    // Failed authentications carry credentials too.
    let _ = app.status(&format!("{key}x"), vid).await;
    let _ = app.submit(&format!("{token}x"), &json!({})).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    worker.stop().await;

    let logs = captured.text();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["request_id"] == request_id.as_str() && l["message"] == "request")
        .unwrap_or_else(|| panic!("no log line for {request_id}"));
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/api/v1/verification/initiate");
    assert_eq!(line["status"], 200);
    assert_eq!(line["company_id"], company.as_str());
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["level"], "INFO");

    let jwt_secret = config.jwt_secret.expose().to_owned();
    // The secret is the key's last 43 characters (base64url, which may itself contain `_`).
    let key_secret_part = key[key.len() - 43..].to_owned();
    let webhook_key = secret.trim_start_matches("whsec_").to_owned();
    for (what, needle) in [
        ("API key", key.as_str()),
        ("API key secret", key_secret_part.as_str()),
        ("webhook secret", webhook_key.as_str()),
        ("app token", token.as_str()),
        ("JWT secret", jwt_secret.as_str()),
    ] {
        assert!(!logs.contains(needle), "{what} appears in the logs");
    }
    assert!(logs.lines().count() > 20, "logs were captured");
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_when_requests_are_made() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMIT_STATUS_PER_HOUR".into(), "1".into());
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("m"), Some(&receiver.url))
        .await;
    let api = app.url("/metrics");
    let before = scrape(&app.client, &api).await;
    let initiated = "truenumber_verifications_total{kind=\"initiated\"}";
    let verified = "truenumber_verifications_total{kind=\"verified\"}";
    let initiate_ok = "truenumber_http_requests_total{method=\"POST\",route=\"/api/v1/verification/initiate\",status=\"200\"}";
    let limited = "truenumber_rate_limited_total{kind=\"status\"}";
    assert_eq!(value(&before, initiated), 0.0);

    let vid = app.new_session(&c, "+447911123456").await;
    let token = app.app_token("m_user", Some("+447911123456"));
    app.submit(&token, &json!({"verificationId": vid, "userConfirmedNumber": "+447911123456", "appUserId": "m_user"}))
        .await;
    assert_eq!(app.status(&c.api_key, &vid).await.status(), 200);
    assert_eq!(app.status(&c.api_key, &vid).await.status(), 429);

    let after = scrape(&app.client, &api).await;
    assert_eq!(value(&after, initiated), 1.0);
    assert_eq!(value(&after, verified), 1.0);
    assert_eq!(value(&after, initiate_ok), 1.0);
    assert_eq!(value(&after, limited), 1.0);
    assert!(after.contains("truenumber_http_request_duration_seconds_bucket{"));
    assert_eq!(
        value(&after, "truenumber_dependency_up{kind=\"database\"}"),
        1.0
    );
    // Standalone names its in-process limiter and queue, and serves the worker's metrics on
    // the API's own /metrics (one process).
    let (limiter_kind, queue_kind) = if crate::helpers::standalone() {
        ("rateLimiter", "queue")
    } else {
        ("redis", "rabbitmq")
    };
    assert_eq!(
        value(
            &after,
            &format!("truenumber_dependency_up{{kind=\"{limiter_kind}\"}}")
        ),
        1.0
    );
    assert!(after.contains("truenumber_outbox_backlog "));

    receiver.wait_for(1, Duration::from_secs(20)).await;
    let worker_metrics = if crate::helpers::standalone() {
        api.clone()
    } else {
        format!("http://127.0.0.1:{}/metrics", worker.addr.port())
    };
    let w = crate::helpers::eventually(Duration::from_secs(10), || {
        let (client, url) = (app.client.clone(), worker_metrics.clone());
        async move {
            let m = scrape(&client, &url).await;
            (value(&m, "truenumber_webhook_attempts_total{kind=\"succeeded\"}") == 1.0).then_some(m)
        }
    })
    .await;
    assert!(value(&w, "truenumber_sweeps_total") >= 1.0);
    assert_eq!(
        value(
            &w,
            &format!("truenumber_dependency_up{{kind=\"{queue_kind}\"}}")
        ),
        1.0
    );
    worker.stop().await;
}

#[tokio::test]
async fn lines_logged_inside_a_request_carry_its_request_id() {
    let captured = Captured::default();
    let mut env = base_env();
    env.insert("LOG_LEVEL".into(), "info".into());
    // Redis is down: the status limit fails open and warns, inside the request.
    env.insert("REDIS_URL".into(), "redis://127.0.0.1:1".into());
    env.insert("REDIS_TIMEOUT_MS".into(), "200".into());
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let sink = captured.clone();
    truenumber_core::observability::telemetry::init_with_writer(
        &config,
        BoxMakeWriter::new(move || sink.clone()),
    );
    let app = TestApp::spawn_config(config).await;
    let company = app.create_company(&unique("span")).await;
    let resp = app.status(&company.api_key, "ver_nothing").await;
    assert_eq!(resp.status(), 404);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();

    let lines: Vec<Value> = captured
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warning = lines
        .iter()
        .find(|l| l["message"] == "rate limiter unavailable; request let through")
        .expect("the fail-open warning");
    assert_eq!(
        warning["span"]["request_id"],
        request_id.as_str(),
        "{warning}"
    );
    // The access log is still one line per request, with the id as its own field.
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["request_id"] == request_id.as_str())
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
}
