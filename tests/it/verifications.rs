//! A company's verifications: listed with filters and a cursor that neither skips nor
//! repeats while sessions arrive, summarised on a known mix, and erased with their events and
//! deliveries. Run in both modes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestCompany, assert_error, eventually, unique};

const NUMBER: &str = "+447911123456";

async fn get(app: &TestApp, key: &str, path_and_query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1{path_and_query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn get_ok(app: &TestApp, key: &str, path_and_query: &str) -> Value {
    let resp = get(app, key, path_and_query).await;
    assert_eq!(resp.status().as_u16(), 200, "{path_and_query}");
    resp.json().await.unwrap()
}

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

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verificationId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_list_pages_newest_first_without_skips_or_repeats_while_sessions_arrive() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(app.new_session(&c, NUMBER).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = cursor
            .as_ref()
            .map_or("/verifications?limit=3".to_owned(), |c| {
                format!("/verifications?limit=3&cursor={c}")
            });
        let page = get_ok(&app, &c.api_key, &query).await;
        pages += 1;
        seen.extend(ids(&page));
        // New sessions between pages land before the first page, never in a later one.
        app.new_session(&c, NUMBER).await;
        app.new_session(&c, NUMBER).await;
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["nextCursor"].is_null());
                break;
            }
        }
    }
    made.reverse();
    assert_eq!(seen, made);
    assert_eq!(pages, 3);
    // Each item is the status body.
    let first = get_ok(&app, &c.api_key, "/verifications?limit=1").await;
    let item = &first["data"][0];
    let status = app
        .get_json_with_key(&c, item["verificationId"].as_str().unwrap())
        .await;
    assert_eq!(item, &status);
    for bad in [
        "limit=0",
        "limit=101",
        "cursor=xyz",
        "status=lost",
        "createdAfter=yesterday",
    ] {
        let resp = get(&app, &c.api_key, &format!("/verifications?{bad}")).await;
        assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    }
}

impl TestApp {
    async fn get_json_with_key(&self, c: &TestCompany, id: &str) -> Value {
        let resp = self.status(&c.api_key, id).await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }
}

#[tokio::test]
async fn filters_and_the_summary_count_a_known_mix() {
    let app = TestApp::spawn_with(|env| {
        env.insert("VERIFICATION_TTL_SECONDS".into(), "4".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let other = app.create_company(&unique("other")).await;
    let started = Utc::now();
    let a = app.new_session(&c, NUMBER).await;
    let b = app.new_session(&c, NUMBER).await;
    let f = app.new_session(&c, NUMBER).await;
    let d = app.new_session(&c, NUMBER).await;
    let e = app.new_session(&c, NUMBER).await;
    app.new_session(&other, NUMBER).await; // never counted for c
    assert_eq!(submit(&app, &a, NUMBER).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(submit(&app, &b, NUMBER).await, 200);
    assert_eq!(submit(&app, &f, "+447911123457").await, 400);
    // d and e expire unconfirmed (read as expired before any sweep).
    tokio::time::sleep(Duration::from_millis(4200)).await;
    let p = app.new_session(&c, NUMBER).await;

    let by = |status: &'static str| {
        let app = &app;
        let key = c.api_key.clone();
        async move {
            let mut got = ids(&get_ok(app, &key, &format!("/verifications?status={status}")).await);
            got.sort();
            got
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(by("verified").await, sorted(vec![a.clone(), b.clone()]));
    assert_eq!(by("failed").await, vec![f.clone()]);
    assert_eq!(by("expired").await, sorted(vec![d.clone(), e.clone()]));
    assert_eq!(by("pending").await, vec![p.clone()]);

    // requestId, and the creation window.
    let status_a = app.get_json_with_key(&c, &a).await;
    let request_id = status_a["requestId"].as_str().unwrap();
    let page = get_ok(
        &app,
        &c.api_key,
        &format!("/verifications?requestId={request_id}"),
    )
    .await;
    assert_eq!(ids(&page), vec![a.clone()]);
    let p_created = app.get_json_with_key(&c, &p).await["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = get_ok(
        &app,
        &c.api_key,
        &format!("/verifications?createdAfter={p_created}"),
    )
    .await;
    assert_eq!(ids(&page), vec![p.clone()]);
    let page = get_ok(
        &app,
        &c.api_key,
        &format!("/verifications?createdBefore={p_created}"),
    )
    .await;
    assert_eq!(ids(&page).len(), 5);

    // The summary: 6 made, 1 pending, 2 verified, 1 failed, 2 expired.
    let s = get_ok(&app, &c.api_key, "/verifications/summary").await;
    assert_eq!(
        (
            s["total"].as_u64(),
            s["pending"].as_u64(),
            s["verified"].as_u64(),
            s["failed"].as_u64(),
            s["expired"].as_u64()
        ),
        (Some(6), Some(1), Some(2), Some(1), Some(2)),
        "{s}"
    );
    assert!(
        (s["conversionRate"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{s}"
    );
    let seconds = |status: &Value| {
        let at = |f: &str| {
            status[f]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        (at("verifiedAt") - at("createdAt"))
            .num_microseconds()
            .unwrap() as f64
            / 1e6
    };
    let status_b = app.get_json_with_key(&c, &b).await;
    let expected_median = f64::midpoint(seconds(&status_a), seconds(&status_b));
    let median = s["medianSecondsToVerify"].as_f64().unwrap();
    // The API shows milliseconds; the database keeps microseconds.
    assert!(
        (median - expected_median).abs() < 0.002,
        "{median} vs {expected_median}"
    );

    // A window with nothing finished: null rate and median.
    let window = format!(
        "createdAfter={}&createdBefore={}",
        (started - chrono::Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        (started - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let empty = get_ok(
        &app,
        &c.api_key,
        &format!("/verifications/summary?{window}"),
    )
    .await;
    assert_eq!(empty["total"], 0);
    assert!(empty["conversionRate"].is_null() && empty["medianSecondsToVerify"].is_null());
    // Bad windows.
    let now = Utc::now();
    for query in [
        format!(
            "createdAfter={}&createdBefore={}",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        format!(
            "createdAfter={}",
            (now - chrono::Duration::days(91)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    ] {
        let resp = get(&app, &c.api_key, &format!("/verifications/summary?{query}")).await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        assert!(err["message"].as_str().unwrap().contains("createdAfter"));
    }
}

#[tokio::test]
async fn erase_removes_the_session_its_events_and_deliveries() {
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let other = app.create_company(&unique("other")).await;
    let done = app.new_session(&c, NUMBER).await;
    assert_eq!(submit(&app, &done, NUMBER).await, 200);
    receiver.wait_for(1, Duration::from_secs(20)).await;
    let delivered = eventually(Duration::from_secs(20), || async {
        let page = get_ok(&app, &c.api_key, "/company/deliveries").await;
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["verificationId"] == done.as_str() && d["status"] == "succeeded")
            .cloned()
    })
    .await;
    let pending = app.new_session(&c, NUMBER).await;

    let erase = |key: &str, id: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/verifications/{id}")))
            .bearer_auth(key)
            .send()
    };
    // Another company's key: the same 404 as an unknown id, and nothing is erased.
    let resp = erase(&other.api_key, &done).await.unwrap();
    let theirs = assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    let resp = erase(&c.api_key, "ver_unknown").await.unwrap();
    let unknown = assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    assert_eq!(theirs["message"], unknown["message"]);

    for id in [&done, &pending] {
        let resp = erase(&c.api_key, id).await.unwrap();
        assert_eq!(resp.status().as_u16(), 204);
        let resp = app.status(&c.api_key, id).await;
        assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    }
    // The erased pending session cannot be submitted; erasing again is a 404.
    let token = app.app_token("app_user_1", Some(NUMBER));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": pending, "userConfirmedNumber": NUMBER, "appUserId": "app_user_1"}),
        )
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    let resp = erase(&c.api_key, &done).await.unwrap();
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    // Its event and delivery are gone with it.
    let page = get_ok(&app, &c.api_key, "/company/deliveries").await;
    assert!(page["data"].as_array().unwrap().is_empty(), "{page}");
    let resp = get(
        &app,
        &c.api_key,
        &format!(
            "/company/deliveries/{}",
            delivered["deliveryId"].as_str().unwrap()
        ),
    )
    .await;
    assert_error(resp, 404, "DELIVERY_NOT_FOUND", "error").await;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let events = truenumber_entities::verification_event::Entity::find()
        .filter(truenumber_entities::verification_event::Column::VerificationId.eq(done.as_str()))
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 0);
    worker.stop().await;
}

#[tokio::test]
async fn a_management_only_key_cannot_list_summarise_or_erase() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let resp = app
        .client
        .post(app.url("/api/v1/company/api-keys"))
        .bearer_auth(&c.api_key)
        .json(&json!({"scopes": ["management"]}))
        .send()
        .await
        .unwrap();
    let key = resp.json::<Value>().await.unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/verifications", "/verifications/summary"] {
        assert_error(
            get(&app, &key, path).await,
            403,
            "INSUFFICIENT_SCOPE",
            "error",
        )
        .await;
    }
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/verifications/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "INSUFFICIENT_SCOPE", "error").await;
    assert_eq!(app.status(&c.api_key, &id).await.status().as_u16(), 200);
}

/// Moves a session's completion `days` into the past.
async fn backdate(app: &TestApp, verification_id: &str, days: i64) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    use truenumber_entities::verification_session::{Column, Entity};
    let at = truenumber_core::storage::sql::now() - chrono::Duration::days(days);
    let res = Entity::update_many()
        .col_expr(Column::CompletedAt, Expr::value(at))
        .filter(Column::VerificationId.eq(verification_id))
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(res.rows_affected, 1);
}

#[tokio::test]
async fn retention_deletes_exactly_what_is_older_than_the_window_with_a_company_override() {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use truenumber_entities::{verification_event, webhook_delivery};
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    // a keeps the default window (30 days); b has its own, 2 days.
    let a = app
        .create_company_with_webhook(&unique("a"), Some(&receiver.url))
        .await;
    let b = app.create_company(&unique("b")).await;
    truenumber_core::companies::set_retention_days(&app.db, &b.id, Some(2))
        .await
        .unwrap();
    assert_eq!(
        get_ok(&app, &b.api_key, "/company").await["dataRetentionDays"],
        2
    );
    assert_eq!(
        get_ok(&app, &a.api_key, "/company").await["dataRetentionDays"],
        30
    );
    let a_old = app.verified_session(&a, NUMBER).await;
    let a_young = app.verified_session(&a, NUMBER).await;
    let a_pending = app.new_session(&a, NUMBER).await;
    let b_old = app.verified_session(&b, NUMBER).await;
    let b_young = app.verified_session(&b, NUMBER).await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    let deliveries_of = |company: &str| {
        webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::CompanyId.eq(company))
            .count(&app.db)
    };
    eventually(Duration::from_secs(20), || async {
        (deliveries_of(&a.id).await.unwrap() == 2).then_some(())
    })
    .await;
    // (Two more deliveries come with the test events below: four in all.)
    // A test event older than a's window, and one within it.
    let test_event = |app: &TestApp| {
        let key = a.api_key.clone();
        let url = app.url("/api/v1/company/webhook/test");
        let client = app.client.clone();
        async move {
            let resp = client.post(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 202);
            resp.json::<Value>().await.unwrap()["eventId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let old_test = test_event(&app).await;
    let new_test = test_event(&app).await;
    receiver.wait_for(4, Duration::from_secs(20)).await;
    {
        use sea_orm::sea_query::Expr;
        verification_event::Entity::update_many()
            .col_expr(
                verification_event::Column::CreatedAt,
                Expr::value(truenumber_core::storage::sql::now() - chrono::Duration::days(31)),
            )
            .filter(verification_event::Column::Id.eq(old_test.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
    }
    backdate(&app, &a_old, 31).await;
    backdate(&app, &a_young, 29).await;
    backdate(&app, &b_old, 3).await;
    backdate(&app, &b_young, 1).await;

    // Batches of one, so the sweep has to come back for more.
    let deleted = truenumber_core::verification::retention::apply_retention(&app.db, 30, 1)
        .await
        .unwrap();
    assert_eq!(
        deleted,
        truenumber_core::verification::retention::RetentionRun {
            sessions: 2,
            test_events: 1
        }
    );
    for (id, kept) in [(&old_test, false), (&new_test, true)] {
        let found = verification_event::Entity::find_by_id(id.clone())
            .one(&app.db)
            .await
            .unwrap();
        assert_eq!(found.is_some(), kept, "{id}");
    }
    for (c, id) in [(&a, &a_old), (&b, &b_old)] {
        let resp = app.status(&c.api_key, id).await;
        assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
        let events = verification_event::Entity::find()
            .filter(verification_event::Column::VerificationId.eq(id.as_str()))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(events, 0, "{id}'s event went with it");
    }
    for (c, id) in [(&a, &a_young), (&a, &a_pending), (&b, &b_young)] {
        assert_eq!(
            app.status(&c.api_key, id).await.status().as_u16(),
            200,
            "{id}"
        );
    }
    assert_eq!(
        deliveries_of(&a.id).await.unwrap(),
        2,
        "a_young's delivery and the recent test event's stay"
    );
    // Nothing more is due.
    assert_eq!(
        truenumber_core::verification::retention::apply_retention(&app.db, 30, 1)
            .await
            .unwrap(),
        truenumber_core::verification::retention::RetentionRun::default()
    );
    worker.stop().await;
}
