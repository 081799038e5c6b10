//! The worker daemon: connects, answers its probes, stops on request.

use serde_json::Value;

use crate::helpers::base_env;

#[tokio::test]
async fn worker_reports_health_and_stops_cleanly() {
    let mut env = base_env();
    env.insert("WORKER_PORT".into(), "0".into());
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let worker = tokio::spawn(truenumber_worker::run(
        config,
        async move {
            let _ = rx.await;
        },
        move |addr| {
            let _ = addr_tx.send(addr);
        },
    ));
    let addr = addr_rx.await.unwrap();
    let port = addr.port();
    let client = reqwest::Client::new();
    let live: Value = client
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["status"], "ok");
    let ready = client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "up");
    tx.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
