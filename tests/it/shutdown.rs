//! Graceful shutdown on SIGTERM, of real processes: the API finishes the requests it started
//! and exits 0; a worker finishes (or returns) its in-flight deliveries and exits 0.
//!
//! The processes are this test binary re-executed on an ignored entry point, running the same
//! code as `truenumber-api serve` and `truenumber-worker`, signal handling included.

use std::{
    collections::HashMap,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use truenumber_core::{
    config::Config,
    webhooks::deliveries::{self, DeliveryStatus},
};

use crate::helpers::{
    Reply, TestApp, TestReceiver, base_env, eventually, process::PROCESS_ENV, spawn_process, unique,
};

fn process_config() -> Config {
    let env: HashMap<String, String> =
        serde_json::from_str(&std::env::var(PROCESS_ENV).expect("started by a test")).unwrap();
    Config::from_map(&env).unwrap()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (bounded) for a child to exit and returns its exit code.
async fn exit_code(mut child: Child, limit: Duration) -> Option<i32> {
    eventually(limit, || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
    .code()
}

#[tokio::test]
#[ignore = "entry point of API processes started by shutdown tests"]
async fn api_process() {
    truenumber_api::cli::serve(process_config(), truenumber_api::cli::shutdown_signal())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "entry point of worker processes started by shutdown and chaos tests"]
async fn worker_process() {
    let term = async {
        let mut s =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        s.recv().await;
    };
    truenumber_worker::run(process_config(), term, |_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_lets_started_requests_finish_and_exits_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = base_env();
    env.insert("PORT".into(), port.to_string());
    env.insert("RATE_LIMIT_INITIATE_PER_HOUR".into(), "1000000".into());
    let config = Config::from_map(&env).unwrap();
    // A node in this process makes the company; the child serves the same database.
    let helper = TestApp::spawn_config(config.clone()).await;
    let c = helper.create_company(&unique("term")).await;
    let child = spawn_process("shutdown::api_process", &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), || {
        let (client, url) = (client.clone(), format!("{base}/health/ready"));
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;

    let terminated = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let refused_after_term = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, key, company) =
                (client.clone(), base.clone(), c.api_key.clone(), c.id.clone());
            let (terminated, ok, refused) = (terminated.clone(), ok.clone(), refused_after_term.clone());
            tokio::spawn(async move {
                loop {
                    let body = json!({"mobileNumber": "+447911123456", "companyId": company, "requestId": unique("t")});
                    match client
                        .post(format!("{base}/api/v1/verification/initiate"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await
                    {
                        // Every response that arrives, before or during shutdown, is a success.
                        Ok(resp) => {
                            assert_eq!(resp.status(), 200, "a started request must complete");
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(terminated.load(Ordering::SeqCst), "failed before SIGTERM: {e}");
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // Let the hammering run, then ask the server to stop while requests are in flight.
    eventually(Duration::from_secs(30), || {
        let n = ok.load(Ordering::SeqCst);
        async move { (n >= 40).then_some(()) }
    })
    .await;
    terminated.store(true, Ordering::SeqCst);
    sigterm(&child);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(exit_code(child, Duration::from_secs(40)).await, Some(0));
    assert_eq!(
        refused_after_term.load(Ordering::SeqCst),
        8,
        "every client saw the server go"
    );
    // Everything the clients were told succeeded is stored.
    use sea_orm::{EntityTrait, PaginatorTrait};
    let stored = truenumber_entities::verification_session::Entity::find()
        .count(&helper.db)
        .await
        .unwrap();
    assert!(stored >= ok.load(Ordering::SeqCst) as u64);
}

#[tokio::test]
async fn sigterm_lets_a_worker_finish_its_delivery() {
    let receiver = TestReceiver::start().await;
    receiver.script(&[Reply::Hang(Duration::from_secs(2))]);
    let app = TestApp::spawn().await;
    let c = app
        .create_company_with_webhook(&unique("wterm"), Some(&receiver.url))
        .await;
    let mut env = base_env();
    for key in ["DATABASE_URL", "AMQP_QUEUE_PREFIX", "REDIS_KEY_PREFIX"] {
        let value = match key {
            "DATABASE_URL" => app.config.database_url.expose().to_owned(),
            "AMQP_QUEUE_PREFIX" => app.config.amqp_queue_prefix.clone(),
            _ => app.config.redis_key_prefix.clone(),
        };
        env.insert(key.into(), value);
    }
    let child = spawn_process("shutdown::worker_process", &env);

    let vid = app.new_session(&c, "+447911123456").await;
    let token = app.app_token("w_user", Some("+447911123456"));
    let resp = app
        .submit(&token, &json!({"verificationId": vid, "userConfirmedNumber": "+447911123456", "appUserId": "w_user"}))
        .await;
    assert_eq!(resp.status(), 200);
    // The delivery exists and has no attempt recorded: the worker is waiting on the receiver.
    eventually(Duration::from_secs(20), || async {
        deliveries::list(&app.db, &c.id, Some(DeliveryStatus::Pending), 10)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.attempts == 0)
    })
    .await;
    sigterm(&child);
    assert_eq!(exit_code(child, Duration::from_secs(30)).await, Some(0));
    // It finished the attempt before exiting.
    assert_eq!(receiver.received().len(), 1);
    let done = deliveries::list(&app.db, &c.id, None, 10).await.unwrap();
    assert_eq!(
        (done[0].status, done[0].attempts),
        (DeliveryStatus::Succeeded, 1)
    );
}
