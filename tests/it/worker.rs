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
