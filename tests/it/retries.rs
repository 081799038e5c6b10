//! Retries, in both modes: one jittered instant per retry, written to the delivery's row and
//! held by the queue until then; the attempt log names a connection error's cause; the body's
//! bytes are those PostgreSQL's `jsonb` printed when it was stored.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;
use truenumber_core::{
    queue::{Broker, DeliveryMessage},
    webhooks::deliveries::{self, DeliveryStatus},
};
use uuid::Uuid;

use crate::helpers::{Reply, TestApp, TestWorker, delivering, delivering_with, eventually, unique};

const NUMBER: &str = "+447911123456";
/// The one step of the schedule these tests run with (jittered to 2.4–3 s).
const STEP_MS: i64 = 3_000;

/// An app whose webhooks are retried once, after [`STEP_MS`].
fn one_retry(env: &mut std::collections::HashMap<String, String>) {
    env.insert("WEBHOOK_RETRY_SCHEDULE".into(), "3".into());
}

async fn app_with_one_retry() -> TestApp {
    TestApp::spawn_with(one_retry).await
}

/// Each pending delivery of `company` with one attempt made, and the `next_attempt_at` it was
/// first seen with (the retry's instant, before a dispatcher's claim can move it), once `n`
/// are known.
async fn first_retry_instants(
    app: &TestApp,
    company: &str,
    n: usize,
) -> HashMap<Uuid, DateTime<Utc>> {
    let mut due = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while due.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n}",
            due.len()
        );
        for d in deliveries::list(&app.db, company, None, 100).await.unwrap() {
            if d.attempts == 1 && d.status == DeliveryStatus::Pending {
                let at = d
                    .next_attempt_at
                    .expect("a pending delivery is due some time");
                due.entry(d.id).or_insert(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    due
}

/// The attempts' times of a delivery once it has `n` attempts.
async fn attempt_times(app: &TestApp, delivery: Uuid, n: usize) -> Vec<DateTime<Utc>> {
    eventually(Duration::from_secs(20), || async {
        let log = deliveries::attempts(&app.db, delivery).await.unwrap();
        (log.len() >= n).then(|| log.iter().map(|a| a.attempted_at).collect())
    })
    .await
}

#[tokio::test]
async fn retries_are_jittered_and_made_when_the_row_says() {
    const DELIVERIES: usize = 8;
    let (app, receiver, worker, c) = delivering_with(one_retry).await;
    receiver.script(&[Reply::Status(500); DELIVERIES]);
    for _ in 0..DELIVERIES {
        app.verified_session(&c, NUMBER).await;
    }

    let due = first_retry_instants(&app, &c.id, DELIVERIES).await;
    let mut delays = Vec::new();
    for (id, at) in &due {
        let times = attempt_times(&app, *id, 2).await;
        // Decided once after the first attempt: 80–100% of the step (less the few
        // milliseconds between the decision and the attempt's record).
        let delay = (*at - times[0]).num_milliseconds();
        assert!(
            (STEP_MS * 8 / 10 - 100..=STEP_MS).contains(&delay),
            "{delay} ms"
        );
        delays.push(delay);
        // The queue held the retry until exactly that instant: never before it, and after
        // it only by the queue's own lag (RabbitMQ expires at a queue's head; the in-process
        // dispatcher looks every 250 ms).
        let late = (times[1] - *at).num_milliseconds();
        assert!((0..1_500).contains(&late), "{late} ms after its time");
    }
    // Jittered: deliveries that failed together come back spread out, not together.
    let spread = delays.iter().max().unwrap() - delays.iter().min().unwrap();
    assert!(spread > 100, "{delays:?}");

    for id in due.keys() {
        let d = eventually(Duration::from_secs(20), || async {
            deliveries::list(&app.db, &c.id, None, 100)
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.id == *id && d.status == DeliveryStatus::Succeeded)
        })
        .await;
        assert_eq!((d.attempts, d.next_attempt_at), (2, None));
    }
    assert_eq!(receiver.received().len(), 2 * DELIVERIES);
    worker.stop().await;
}

#[tokio::test]
async fn the_retry_message_carries_the_rows_instant_and_an_early_one_waits_again() {
    let (app, receiver, worker, c) = delivering_with(one_retry).await;
    receiver.script(&[Reply::Status(500)]);
    app.verified_session(&c, NUMBER).await;
    let (id, at) = first_retry_instants(&app, &c.id, 1)
        .await
        .into_iter()
        .next()
        .unwrap();
    let event_id = deliveries::list(&app.db, &c.id, None, 1).await.unwrap()[0]
        .event_id
        .clone();

    // The retry waits in the queue of its step, for exactly the time left until the row's
    // instant, and says which instant that is.
    let broker = Broker::from_config(&app.config);
    let (conn, ch) = broker.open_channel().await.unwrap();
    let retry_queue = broker.topology().retry_queue(Duration::from_secs(3));
    let held = eventually(Duration::from_secs(5), || async {
        ch.basic_get(
            retry_queue.as_str().into(),
            lapin::options::BasicGetOptions::default(),
        )
        .await
        .unwrap()
    })
    .await;
    let taken_at = Utc::now();
    let msg: DeliveryMessage = serde_json::from_slice(&held.delivery.data).unwrap();
    assert_eq!(
        msg,
        DeliveryMessage::new(&event_id, 2).retry_at(at),
        "attempt 2, due when the row says"
    );
    let expiration: i64 = held
        .delivery
        .properties
        .expiration()
        .as_ref()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    assert!(
        expiration <= STEP_MS && expiration >= (at - taken_at).num_milliseconds(),
        "{expiration} ms"
    );

    // Out early (rejected, so dead-lettered to the webhook queue at once, as a message would
    // leave the longest retry queue before a day's Retry-After): it waits again for the rest,
    // and the retry is still made at the row's instant.
    held.delivery
        .acker
        .reject(lapin::options::BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    let times = attempt_times(&app, id, 2).await;
    let late = (times[1] - at).num_milliseconds();
    assert!((0..1_500).contains(&late), "{late} ms after its time");
    assert_eq!(receiver.received().len(), 2);
    worker.stop().await;
}

#[tokio::test]
async fn the_attempt_log_of_a_refused_connection_names_the_cause() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = app_with_one_retry().await;
    let worker = TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&format!("http://127.0.0.1:{port}/hook")))
        .await;
    app.verified_session(&c, NUMBER).await;
    let d = eventually(Duration::from_secs(20), || async {
        deliveries::list(&app.db, &c.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.attempts >= 1)
    })
    .await;

    // As the company sees it.
    let detail: Value = app
        .client
        .get(app.url(&format!("/api/v1/company/deliveries/{}", d.id)))
        .bearer_auth(&c.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let error = detail["attemptLog"][0]["error"].as_str().unwrap();
    assert_eq!(
        error, "connection failed: Connection refused (os error 111)",
        "{detail}"
    );
    assert!(
        detail["attemptLog"][0].get("statusCode").is_none(),
        "{detail}"
    );
    assert_eq!(d.last_error.as_deref(), Some(error));
    worker.stop().await;
}

#[tokio::test]
async fn webhook_bodies_are_the_bytes_postgresql_jsonb_printed() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let (app, receiver, worker, c) = delivering().await;
    let vid = app.verified_session(&c, NUMBER).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    // What the stored body of earlier releases was: the session's fields through
    // `jsonb_build_object`, printed by `jsonb::text`.
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT jsonb_build_object( \
               'event', 'verification.completed', \
               'verificationId', s.verification_id, \
               'status', s.status, \
               'livemode', s.livemode, \
               'mobileNumber', s.mobile_number, \
               'verifiedAt', to_char(s.verified_at AT TIME ZONE 'UTC', \
                                     'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
               'companyId', s.company_id, \
               'requestId', s.request_id, \
               'numberBinding', s.number_binding, \
               'phoneVerifiedAt', to_char(s.phone_verified_at AT TIME ZONE 'UTC', \
                                          'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))::text AS body \
             FROM verification_sessions s WHERE s.verification_id = $1",
            [vid.as_str().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let stored: String = row.try_get("", "body").unwrap();
    assert_eq!(got[0].body, stored);
    worker.stop().await;
}
