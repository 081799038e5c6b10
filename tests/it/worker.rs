//! The worker daemon: connects, answers its probes, stops on request.

use serde_json::Value;

use crate::helpers::{TestApp, TestWorker};

#[tokio::test]
async fn worker_reports_health_and_stops_cleanly() {
    let app = TestApp::spawn().await;
    let worker = TestWorker::spawn(&app.config).await;
    let port = worker.addr.port();
    let live: Value = app
        .client
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["status"], "ok");
    let ready = app
        .client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "up");
    assert_eq!(ready["checks"]["rabbitmq"], "up");
    worker.stop().await;
    assert!(
        app.client
            .get(format!("http://127.0.0.1:{port}/health/live"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn worker_without_rabbitmq_is_not_ready_but_alive() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "AMQP_URL".into(),
            "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        );
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    let port = worker.addr.port();
    let ready = app
        .client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["rabbitmq"], "down");
    worker.stop().await;
}

#[tokio::test]
async fn worker_answers_health_with_json() {
    let app = TestApp::spawn().await;
    let worker = TestWorker::spawn(&app.config).await;
    let resp = app
        .client
        .get(format!("http://127.0.0.1:{}/health", worker.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    for dep in ["database", "rabbitmq"] {
        assert_eq!(body["checks"][dep]["status"], "up", "{body}");
        assert!(
            body["checks"][dep]["latencyMs"].as_f64().is_some(),
            "{body}"
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn a_worker_needs_no_jwt_secret_and_port_zero_picks_a_free_one() {
    let app = TestApp::spawn().await;
    let mut env = crate::helpers::base_env();
    env.remove("JWT_SECRET");
    env.insert("WORKER_PORT".into(), "0".into());
    env.insert(
        "DATABASE_URL".into(),
        app.config.database_url.expose().to_owned(),
    );
    assert!(truenumber_core::config::Config::from_map(&env).is_err());
    let config =
        truenumber_core::config::Config::worker_from_lookup(|n| env.get(n).cloned()).unwrap();
    let first = TestWorker::spawn(&config).await;
    let second = TestWorker::spawn(&config).await;
    assert_ne!(first.addr.port(), 0);
    assert_ne!(first.addr.port(), second.addr.port());
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_taken_worker_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = crate::helpers::TestApp::spawn().await.config.clone();
    config.worker_port = port;
    let err = truenumber_worker::run(config, std::future::pending::<()>(), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot listen on WORKER_PORT 0.0.0.0:{port}: ")),
        "{err}"
    );
    assert!(err.contains("WORKER_PORT") && !err.contains('\n'), "{err}");
}
