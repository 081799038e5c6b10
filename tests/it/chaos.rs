//! Chaos: a worker is SIGKILLed mid-flight and replaced, and an API node loses RabbitMQ for a
//! while, all while hundreds of verifications complete; every event still reaches the
//! receiver at least once.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use tokio::{net::TcpListener, sync::Mutex, task::JoinHandle};

use crate::helpers::{Reply, TestApp, TestReceiver, base_env, eventually, unique};

/// A TCP proxy between an API node and RabbitMQ that can be cut (every connection dropped,
/// new ones refused) and restored: "RabbitMQ is unreachable" without stopping the shared
/// broker other tests use.
struct FaultyProxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FaultyProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().await.push(task);
            }
        });
        Self { port, up, conns }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn spawn_worker_process(env: &HashMap<String, String>) -> Child {
    crate::helpers::spawn_process("shutdown::worker_process", env)
}

async fn complete_verifications(app: &TestApp, key: &str, company: &str, n: usize) {
    let token = app.app_token("chaos_user", Some("+447911123456"));
    let one = |i: usize| {
        let token = token.clone();
        async move {
            let body = json!({"mobileNumber": "+447911123456", "companyId": company, "requestId": unique("chaos")});
            let started: serde_json::Value = app.initiate(key, &body).await.json().await.unwrap();
            let id = started["verificationId"].as_str().unwrap().to_owned();
            // Every third one fails, so both kinds of event are in the mix.
            let number = if i.is_multiple_of(3) {
                "+447912345678"
            } else {
                "+447911123456"
            };
            let resp = app
                .submit(
                    &token,
                    &json!({"verificationId": id, "userConfirmedNumber": number, "appUserId": "chaos_user"}),
                )
                .await;
            assert!(matches!(resp.status().as_u16(), 200 | 400));
        }
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        futures::future::join_all(chunk.iter().map(|i| one(*i))).await;
    }
}

#[tokio::test]
async fn every_event_survives_chaos() {
    let receiver = TestReceiver::start().await;
    // Slow-ish answers keep deliveries in flight when the worker dies.
    receiver.script(&[Reply::Hang(Duration::from_millis(200)); 150]);

    let proxy = FaultyProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let mut env = base_env();
    env.insert("RATE_LIMIT_INITIATE_PER_HOUR".into(), "100000".into());
    env.insert("RATE_LIMIT_SUBMIT_PER_MINUTE".into(), "1000".into());
    let mut api_env = env.clone();
    api_env.insert(
        "AMQP_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port),
    );
    let app =
        TestApp::spawn_config(truenumber_core::config::Config::from_map(&api_env).unwrap()).await;
    let company = unique("chaos");
    let c = app
        .create_company_with_webhook(&company, Some(&receiver.url))
        .await;

    let mut worker = spawn_worker_process(&env);
    complete_verifications(&app, &c.api_key, &c.id, 100).await;
    // Let deliveries get going, then kill the worker with SIGKILL and start another.
    receiver.wait_for(20, Duration::from_secs(30)).await;
    worker.kill().unwrap();
    let at_kill = receiver.received().len();
    assert!(
        at_kill < 100,
        "the worker died with deliveries outstanding ({at_kill} done)"
    );
    worker.wait().unwrap();
    let mut replacement = spawn_worker_process(&env);

    // The API loses RabbitMQ: its events wait in the outbox for the relay.
    proxy.cut().await;
    complete_verifications(&app, &c.api_key, &c.id, 100).await;
    // The newest of those are younger than the relay's minimum age, so they must still be in
    // the outbox: the API really could not publish them.
    let (backlog, _) = truenumber_core::webhooks::events::outbox_backlog(&app.db)
        .await
        .unwrap();
    assert!(
        backlog >= 1,
        "events written while RabbitMQ was cut are waiting"
    );
    proxy.restore();
    complete_verifications(&app, &c.api_key, &c.id, 100).await;

    use sea_orm::{ConnectionTrait, Statement};
    let events: HashSet<String> = app
        .db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT id FROM verification_events",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "id").unwrap())
        .collect();
    assert_eq!(events.len(), 300);

    let delivered = eventually(Duration::from_secs(90), || {
        let got: HashSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect();
        let events = &events;
        async move { events.is_subset(&got).then_some(got) }
    })
    .await;
    assert_eq!(delivered.len(), 300, "only our events, each at least once");
    replacement.kill().unwrap();
    replacement.wait().unwrap();
}
