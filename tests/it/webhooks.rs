//! Events and webhooks against the real RabbitMQ and PostgreSQL, with a recording receiver.

use std::{collections::HashSet, time::Duration};

use sea_orm::{ActiveEnum, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use truenumber_core::{
    queue::{self, Broker, Queue, Topology},
    verification::expiry,
    webhooks::deliveries::{self, DeliveryStatus},
    webhooks::events,
};
use truenumber_entities::{
    verification_event::{self, EventStatus},
    webhook_attempt, webhook_delivery,
};

use crate::helpers::{
    Received, Reply, TestApp, TestCompany, TestReceiver, TestWorker, delivering, eventually, unique,
};

const NUMBER: &str = "+447911123456";
const OTHER: &str = "+447912345678";

async fn submit(app: &TestApp, id: &str, number: &str) -> u16 {
    let token = app.app_token("app_user_1", Some(NUMBER));
    app.submit(
        &token,
        &json!({"verificationId": id, "userConfirmedNumber": number, "appUserId": "app_user_1"}),
    )
    .await
    .status()
    .as_u16()
}

async fn start(app: &TestApp, company: &TestCompany) -> String {
    app.new_session(company, NUMBER).await
}

fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).unwrap().to_str().unwrap()
}

/// The delivery of an event, once its state is final.
async fn final_delivery(app: &TestApp, company: &str, event_id: &str) -> deliveries::Delivery {
    eventually(Duration::from_secs(20), || async {
        deliveries::list(&app.db, company, None, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.event_id == event_id && d.status != DeliveryStatus::Pending)
    })
    .await
}

#[tokio::test]
async fn verified_failed_and_expired_webhooks_arrive_signed() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("VERIFICATION_TTL_SECONDS".into(), "2".into());
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;

    let verified = start(&app, &c).await;
    let failed = start(&app, &c).await;
    let expired = start(&app, &c).await;
    assert_eq!(submit(&app, &verified, NUMBER).await, 200);
    assert_eq!(submit(&app, &failed, OTHER).await, 400);

    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3);
    let verifier = standardwebhooks::Webhook::new(&c.webhook_secret).unwrap();
    let mut seen = HashSet::new();
    for r in &got {
        // An independent Standard Webhooks implementation accepts the signature.
        verifier.verify(r.body.as_bytes(), &r.headers).unwrap();
        assert_eq!(header(r, "content-type"), "application/json");
        let ts: i64 = header(r, "webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        let id = header(r, "webhook-id");
        assert!(id.starts_with("evt_"));

        let b = body(r);
        assert_eq!(b["livemode"], true);
        let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "companyId",
                "event",
                "livemode",
                "mobileNumber",
                "numberBinding",
                "phoneVerifiedAt",
                "requestId",
                "status",
                "verificationId",
                "verifiedAt"
            ]
        );
        assert_eq!(b["event"], "verification.completed");
        assert_eq!(b["companyId"], c.id.as_str());
        assert_eq!(b["mobileNumber"], NUMBER);
        let vid = b["verificationId"].as_str().unwrap().to_owned();
        let expected = if vid == verified {
            EventStatus::Verified
        } else if vid == failed {
            EventStatus::Failed
        } else {
            assert_eq!(vid, expired);
            EventStatus::Expired
        };
        assert_eq!(b["status"], expected.to_value());
        assert_eq!(
            b["verifiedAt"].is_string(),
            expected == EventStatus::Verified
        );
        let status: Value = app.status(&c.api_key, &vid).await.json().await.unwrap();
        assert_eq!(b["requestId"], status["requestId"]);
        if expected == EventStatus::Verified {
            assert_eq!(b["verifiedAt"], status["verifiedAt"]);
        }
        seen.insert(expected);

        // The outbox row, read through its entity: the typed status. The body is not stored
        // with it: the bytes received are the one builder's rendering of the event.
        let event = verification_event::Entity::find_by_id(id)
            .one(&app.db)
            .await
            .unwrap()
            .expect("event row");
        assert_eq!(
            (event.status, event.verification_id.as_deref()),
            (Some(expected), Some(vid.as_str()))
        );
        assert_eq!(event.payload, None);
        let target = deliveries::event_target(&app.db, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(target.body().unwrap().render(), r.body);

        let d = final_delivery(&app, &c.id, id).await;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 1));
        // The delivery and its attempt, read through their entities.
        let row = webhook_delivery::Entity::find_by_id(d.id)
            .one(&app.db)
            .await
            .unwrap()
            .expect("delivery row");
        assert_eq!(
            (
                row.status,
                row.attempts,
                row.last_status_code,
                &row.event_id
            ),
            (DeliveryStatus::Succeeded, 1, Some(200), &event.id)
        );
        assert!(row.completed_at.is_some() && row.next_attempt_at.is_none());
        let attempts = webhook_attempt::Entity::find()
            .filter(webhook_attempt::Column::DeliveryId.eq(d.id))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].attempt, attempts[0].status_code),
            (1, Some(200))
        );
    }
    assert_eq!(seen.len(), 3);
    // A tampered body does not verify.
    let mut tampered = got[0].body.clone();
    tampered.push(' ');
    assert!(
        verifier
            .verify(tampered.as_bytes(), &got[0].headers)
            .is_err()
    );
    worker.stop().await;
}

#[tokio::test]
async fn failures_are_retried_with_one_webhook_id_until_success() {
    let (app, receiver, worker, c) = delivering().await;
    receiver.script(&[Reply::Status(500), Reply::StatusRetryAfter(503, 1)]);
    let vid = start(&app, &c).await;
    assert_eq!(submit(&app, &vid, NUMBER).await, 200);

    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let ids: HashSet<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(ids.len(), 1, "one webhook-id across retries");
    let event_id = ids.into_iter().next().unwrap().to_owned();
    let d = final_delivery(&app, &c.id, &event_id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 3));
    let log = deliveries::attempts(&app.db, d.id).await.unwrap();
    let codes: Vec<Option<i32>> = log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(503), Some(200)]);
    assert!(log[0].error.as_deref().unwrap().starts_with("HTTP 500"));
    assert!(log[2].error.is_none());
    assert!(
        log.windows(2)
            .all(|w| w[0].attempted_at < w[1].attempted_at)
    );
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 3);
    worker.stop().await;
}

#[tokio::test]
async fn gone_stops_and_a_hanging_receiver_times_out() {
    let gone = TestReceiver::start().await;
    gone.script(&[Reply::Status(410)]);
    let slow = TestReceiver::start().await;
    slow.script(&[Reply::Hang(Duration::from_secs(4))]);
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_TIMEOUT".into(), "1".into());
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    let a = app
        .create_company_with_webhook(&unique("a"), Some(&gone.url))
        .await;
    let b = app
        .create_company_with_webhook(&unique("b"), Some(&slow.url))
        .await;
    let va = start(&app, &a).await;
    let vb = start(&app, &b).await;
    assert_eq!(submit(&app, &va, NUMBER).await, 200);
    assert_eq!(submit(&app, &vb, NUMBER).await, 200);

    // 410: one attempt, then failed for good.
    let got = gone.wait_for(1, Duration::from_secs(20)).await;
    let d = final_delivery(&app, &a.id, header(&got[0], "webhook-id")).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status_code),
        (DeliveryStatus::Failed, 1, Some(410))
    );

    // The hang is cut at WEBHOOK_TIMEOUT and retried; the retry succeeds.
    let event_id = eventually(Duration::from_secs(20), || async {
        deliveries::list(&app.db, &b.id, Some(DeliveryStatus::Succeeded), 10)
            .await
            .unwrap()
            .first()
            .map(|d| d.event_id.clone())
    })
    .await;
    let d = final_delivery(&app, &b.id, &event_id).await;
    assert_eq!(d.attempts, 2);
    let log = deliveries::attempts(&app.db, d.id).await.unwrap();
    assert_eq!(log[0].error.as_deref(), Some("timed out"));
    assert!(
        log[0].latency_ms >= 900 && log[0].latency_ms < 3000,
        "{}",
        log[0].latency_ms
    );
    assert_eq!(log[1].status_code, Some(200));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gone.received().len(), 1, "410 is never retried");
    worker.stop().await;
}

#[tokio::test]
async fn an_endless_error_body_is_cut_short() {
    let (app, receiver, worker, c) = delivering().await;
    receiver.script(&[Reply::Endless(500)]);
    let id = start(&app, &c).await;
    assert_eq!(submit(&app, &id, NUMBER).await, 200);
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let d = final_delivery(&app, &c.id, header(&got[0], "webhook-id")).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 2));
    // The worker kept the body's first 200 characters and dropped the rest with the
    // connection, instead of reading an endless body until its timeout.
    let log = deliveries::attempts(&app.db, d.id).await.unwrap();
    assert_eq!(
        log[0].error.as_deref(),
        Some(format!("HTTP 500: {}", "x".repeat(200)).as_str())
    );
    assert_eq!(log[0].status_code, Some(500));
    worker.stop().await;
}

#[tokio::test]
async fn exhausted_deliveries_fail_and_can_be_redelivered() {
    let receiver = TestReceiver::start().await;
    // A redirect is a failure like any other: it is never followed.
    receiver.script(&[Reply::Status(500), Reply::Redirect]);
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_RETRY_SCHEDULE".into(), "1".into());
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let vid = start(&app, &c).await;
    assert_eq!(submit(&app, &vid, NUMBER).await, 200);
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let event_id = header(&got[0], "webhook-id").to_owned();
    let d = final_delivery(&app, &c.id, &event_id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 2));
    let codes: Vec<Option<i32>> = deliveries::attempts(&app.db, d.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.status_code)
        .collect();
    assert_eq!(codes, [Some(500), Some(307)]);
    assert_eq!(
        receiver.received().len(),
        2,
        "the redirect was not followed"
    );

    // The operator lists and redelivers.
    let listed = crate::helpers::cli_json(
        &app.config,
        &[
            "deliveries",
            "list",
            "--company-id",
            &c.id,
            "--status",
            "failed",
        ],
    )
    .await;
    assert_eq!(listed[0]["eventId"], event_id.as_str());
    assert_eq!(listed[0]["attemptLog"].as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["livemode"], true, "the operator sees which mode");
    let redelivered = crate::helpers::cli_json(
        &app.config,
        &[
            "deliveries",
            "redeliver",
            "--company-id",
            &c.id,
            "--all-failed",
        ],
    )
    .await;
    assert_eq!(redelivered["redelivered"], 1);
    assert_eq!(redelivered["published"], 1);
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(header(&got[2], "webhook-id"), event_id);
    let d = final_delivery(&app, &c.id, &event_id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 3));
    // Nothing left to redeliver.
    assert!(
        crate::helpers::cli_run(
            &app.config,
            &[
                "deliveries",
                "redeliver",
                "--company-id",
                &c.id,
                "--delivery-id",
                &d.id.to_string()
            ],
        )
        .await
        .is_err()
    );
    worker.stop().await;
}

#[tokio::test]
async fn private_targets_are_refused_by_default() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_ALLOW_PRIVATE_NETWORKS".into(), "false".into());
    })
    .await;
    let worker = TestWorker::spawn(&app.config).await;
    // A literal loopback address and a hostname that resolves to loopback.
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let url = format!("http://{host}:{}/hook", receiver.port);
        let c = app
            .create_company_with_webhook(&unique("c"), Some(&url))
            .await;
        let vid = start(&app, &c).await;
        assert_eq!(submit(&app, &vid, NUMBER).await, 200);
        let d = eventually(Duration::from_secs(20), || async {
            deliveries::list(&app.db, &c.id, Some(DeliveryStatus::Failed), 10)
                .await
                .unwrap()
                .into_iter()
                .next()
        })
        .await;
        assert_eq!(d.attempts, 1, "{host}: refused targets are not retried");
        let err = d.last_error.unwrap();
        assert!(
            err.starts_with("refused:") && err.contains("non-public"),
            "{host}: {err}"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private address"
    );

    // The metadata address and a private-range address are refused before any connection.
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[fd00::1]/hook",
    ] {
        let parsed = reqwest::Url::parse(url).unwrap();
        assert!(
            matches!(
                truenumber_core::webhooks::target::check_url(&parsed, false),
                Err(truenumber_core::webhooks::target::TargetRefused::Forbidden(
                    _
                ))
            ),
            "{url}"
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn two_sweepers_expire_each_session_exactly_once() {
    let app = TestApp::spawn_with(|env| {
        env.insert("VERIFICATION_TTL_SECONDS".into(), "1".into());
        env.insert("RATE_LIMIT_INITIATE_PER_HOUR".into(), "1000".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let mut ids = HashSet::new();
    for _ in 0..60 {
        ids.insert(start(&app, &c).await);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Two workers: each sweeps through its own pool.
    let (pool_a, pool_b) = (
        truenumber_core::storage::db::connect(&app.config)
            .await
            .unwrap(),
        truenumber_core::storage::db::connect(&app.config)
            .await
            .unwrap(),
    );
    let sweep = |db: sea_orm::DatabaseConnection| async move {
        let mut mine = Vec::new();
        loop {
            let batch = expiry::expire_due_sessions(&db, 7).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch);
        }
    };
    let (a, b) = tokio::join!(sweep(pool_a), sweep(pool_b));
    let all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    let unique_events: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(unique_events.len(), 60);
    assert!(!a.is_empty() && !b.is_empty(), "both sweepers took a share");

    use sea_orm::{ConnectionTrait, Statement};
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*)::int AS n, count(DISTINCT verification_id)::int AS s \
             FROM verification_events WHERE status = 'expired'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i32>("", "n").unwrap(), 60);
    assert_eq!(row.try_get::<i32>("", "s").unwrap(), 60);
    for id in &ids {
        let s: Value = app.status(&c.api_key, id).await.json().await.unwrap();
        assert_eq!(s["status"], "expired");
    }
}

#[tokio::test]
async fn redelivered_messages_make_no_second_delivery_and_poison_is_dead_lettered() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let vid = start(&app, &c).await;
    assert_eq!(submit(&app, &vid, NUMBER).await, 200);
    let worker = TestWorker::spawn(&app.config).await;
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    let event_id = header(&first[0], "webhook-id").to_owned();
    final_delivery(&app, &c.id, &event_id).await;

    // The same message again (as after a worker crash before its ack), twice.
    let topology = queue::Topology::new(
        &app.config.amqp_queue_prefix,
        &app.config.webhook_retry_schedule,
    );
    let broker = queue::Broker::new(
        app.config.amqp_url.expose(),
        topology.clone(),
        Duration::from_secs(5),
    );
    for _ in 0..2 {
        broker
            .publish(
                &queue::DeliveryMessage::first(&event_id),
                queue::Route::Deliver,
            )
            .await
            .unwrap();
    }
    // A message no queue takes is returned by the broker, and that is a failure.
    let unroutable = broker
        .publish(
            &queue::DeliveryMessage::first(&event_id),
            queue::Route::Retry {
                delay: Duration::from_secs(12_345),
                expiration: Duration::from_secs(1),
            },
        )
        .await;
    assert!(
        matches!(unroutable, Err(queue::BrokerError::Unroutable)),
        "{unroutable:?}"
    );
    // A poison message.
    let (conn, ch) = broker.open_channel().await.unwrap();
    ch.basic_publish(
        topology.exchange().as_str().into(),
        "webhook".into(),
        lapin::options::BasicPublishOptions::default(),
        b"not json",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let dead = eventually(Duration::from_secs(10), || async {
        let q = ch
            .queue_declare(
                topology.dead_queue().as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        (q.message_count() >= 1).then_some(q.message_count())
    })
    .await;
    assert_eq!(dead, 1);
    let _ = conn.close(200, "done".into()).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "duplicates made no second webhook"
    );
    let all = deliveries::list(&app.db, &c.id, None, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].attempts, 1);
    worker.stop().await;
}

#[tokio::test]
async fn events_written_while_rabbitmq_is_unreachable_are_relayed() {
    let receiver = TestReceiver::start().await;
    // The API cannot reach RabbitMQ at all; the worker can.
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "AMQP_URL".into(),
            "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        );
    })
    .await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let vid = start(&app, &c).await;
    assert_eq!(submit(&app, &vid, NUMBER).await, 200);
    let health: Value = app.get_json("/health").await;
    assert_eq!(health["checks"]["rabbitmq"]["status"], "down");
    let (backlog, _) = events::outbox_backlog(&app.db).await.unwrap();
    assert_eq!(backlog, 1);
    // A relay that cannot reach RabbitMQ publishes nothing and gives its claim back, so the
    // next relay (the worker's, below) need not wait out the claim.
    let unreachable = Queue::RabbitMq(std::sync::Arc::new(Broker::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        Topology::new(
            &app.config.amqp_queue_prefix,
            &app.config.webhook_retry_schedule,
        ),
        Duration::from_secs(2),
    )));
    let relayed = events::relay_unpublished(&app.db, &unreachable, Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(relayed, 0);
    let event = verification_event::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.relay_claimed_until, None);
    assert_eq!(event.published_at, None);

    let mut worker_config = app.config.clone();
    worker_config.amqp_url = crate::helpers::base_env().get("AMQP_URL").map_or_else(
        || truenumber_core::config::Secret::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
        |u| truenumber_core::config::Secret::new(u.clone()),
    );
    let worker = TestWorker::spawn(&worker_config).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(body(&got[0])["verificationId"], vid.as_str());
    let (backlog, _) = events::outbox_backlog(&app.db).await.unwrap();
    assert_eq!(backlog, 0);
    worker.stop().await;
}
