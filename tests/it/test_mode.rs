//! Test mode: `tn_test_` keys, their sessions completed without the app with each outcome
//! (webhooks with `"livemode": false`), and test and live data invisible to each other and
//! to the app. Run in both modes.

use std::{collections::HashMap, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Received, TestApp, assert_error, delivering, unique};

const NUMBER: &str = "+447911123456";

fn body(r: &Received) -> Value {
    serde_json::from_str(&r.body).expect("JSON webhook")
}

#[tokio::test]
async fn a_test_sessions_outcomes_each_send_a_webhook_with_livemode_false() {
    let (app, receiver, worker, c) = delivering().await;
    assert!(c.test_api_key.starts_with("tn_test_"), "{}", c.test_api_key);

    let mut expected = HashMap::new();
    for outcome in ["verified", "failed", "denied", "expired"] {
        let started = app.initiate_with(&c.test_api_key, &c, json!({})).await;
        let id = started["verificationId"].as_str().unwrap().to_owned();
        let resp = app.complete(&c.test_api_key, &id, outcome).await;
        assert_eq!(resp.status().as_u16(), 200, "{outcome}");
        let done: Value = resp.json().await.unwrap();
        assert_eq!(done["status"], outcome);
        assert_eq!(done["verificationId"], id.as_str());
        assert_eq!(done.get("verifiedAt").is_some(), outcome == "verified");
        // The status endpoint agrees, for the test key.
        let status = app.status_body(&c.test_api_key, &id).await;
        assert_eq!(status["status"], outcome);
        // Single winner: a second completion, with any outcome, is refused as the app's
        // would be (an expired session answers as expired).
        let again = app.complete(&c.test_api_key, &id, "verified").await;
        if outcome == "expired" {
            assert_error(again, 410, "SESSION_EXPIRED", "failed").await;
        } else {
            assert_error(again, 409, "SESSION_ALREADY_COMPLETED", "error").await;
        }
        expected.insert(id, outcome);
    }
    // A live session, verified by the app, for contrast.
    let live = app.verified_session(&c, NUMBER).await;

    let got = receiver.wait_for(5, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 5, "exactly one webhook per completion");
    let verifier = standardwebhooks::Webhook::new(&c.webhook_secret).unwrap();
    for r in &got {
        verifier
            .verify(r.body.as_bytes(), &r.headers)
            .expect("signed like every webhook");
        let b = body(r);
        assert_eq!(b["event"], "verification.completed");
        let id = b["verificationId"].as_str().unwrap();
        if id == live {
            assert_eq!(b["livemode"], true);
            assert_eq!(b["status"], "verified");
        } else {
            assert_eq!(b["livemode"], false, "{b}");
            assert_eq!(b["status"], expected[id], "{b}");
        }
    }

    // Each key lists its own mode's deliveries only.
    let deliveries = "/company/deliveries?limit=100";
    let test_deliveries = app.listed_ids(deliveries, &c.test_api_key).await;
    assert_eq!(test_deliveries.len(), 4);
    assert!(test_deliveries.iter().all(|id| expected.contains_key(id)));
    assert_eq!(app.listed_ids(deliveries, &c.api_key).await, [live]);
    worker.stop().await;
}

#[tokio::test]
async fn test_and_live_data_are_invisible_to_each_other_and_to_the_app() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    // The same requestId in both modes makes two sessions (no replay across modes, no
    // DUPLICATE_REQUEST that would reveal the other mode's request).
    let same = json!({"requestId": "order-1"});
    let test = app.initiate_with(&c.test_api_key, &c, same.clone()).await;
    let live = app
        .initiate_with(
            &c.api_key,
            &c,
            json!({"requestId": "order-1", "mobileNumber": "+447911123457"}),
        )
        .await;
    let test_id = test["verificationId"].as_str().unwrap().to_owned();
    let live_id = live["verificationId"].as_str().unwrap().to_owned();
    assert_ne!(test_id, live_id);
    // Replays stay in their mode.
    let replay = app.initiate_with(&c.test_api_key, &c, same).await;
    assert_eq!(replay["verificationId"], test_id.as_str());

    // Status: each key sees its own mode's session and not the other's.
    assert_eq!(
        app.status(&c.test_api_key, &test_id)
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.status(&c.api_key, &live_id).await.status().as_u16(),
        200
    );
    assert_error(
        app.status(&c.api_key, &test_id).await,
        404,
        "SESSION_NOT_FOUND",
        "error",
    )
    .await;
    assert_error(
        app.status(&c.test_api_key, &live_id).await,
        404,
        "SESSION_NOT_FOUND",
        "error",
    )
    .await;

    // Listings and summaries.
    assert_eq!(
        app.listed_ids("/verifications", &c.test_api_key).await,
        std::slice::from_ref(&test_id)
    );
    assert_eq!(
        app.listed_ids("/verifications", &c.api_key).await,
        std::slice::from_ref(&live_id)
    );
    assert_eq!(
        app.listed_ids("/verifications?requestId=order-1", &c.api_key)
            .await,
        std::slice::from_ref(&live_id)
    );
    for key in [&c.api_key, &c.test_api_key] {
        let resp = app
            .call(Method::GET, "/verifications/summary", key, None)
            .await;
        let summary: Value = resp.json().await.unwrap();
        assert_eq!(summary["total"], 1, "{summary}");
        assert_eq!(summary["pending"], 1, "{summary}");
    }

    // A live key cannot complete anything; a test key cannot complete a live session.
    assert_error(
        app.complete(&c.api_key, &live_id, "verified").await,
        403,
        "TEST_MODE_ONLY",
        "error",
    )
    .await;
    assert_error(
        app.complete(&c.test_api_key, &live_id, "verified").await,
        404,
        "SESSION_NOT_FOUND",
        "failed",
    )
    .await;
    // Nor erase across modes.
    let resp = app
        .call(
            Method::DELETE,
            &format!("/verifications/{test_id}"),
            &c.api_key,
            None,
        )
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;

    // The app never sees a test session: not in the view, not submittable or deniable.
    let token = app.app_token("u1", Some(NUMBER));
    let view = app
        .call(
            Method::GET,
            &format!("/app/verifications/{test_id}"),
            &token,
            None,
        )
        .await;
    assert_error(view, 404, "SESSION_NOT_FOUND", "error").await;
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": test_id, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    let resp = app
        .call(
            Method::POST,
            "/verification/deny",
            &token,
            Some(json!({"verificationId": test_id, "appUserId": "u1"})),
        )
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    let bound = app.app_token("u1", Some(NUMBER));
    let pending: Value = app
        .call(
            Method::GET,
            "/app/verifications?status=pending",
            &bound,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["data"], json!([]), "the test session is not listed");
    // And the test session is still pending, untouched by all that.
    let status = app.status_body(&c.test_api_key, &test_id).await;
    assert_eq!(status["status"], "pending");
}

#[tokio::test]
async fn a_test_key_manages_test_keys_only_and_cannot_change_company_wide_settings() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let t = &c.test_api_key;
    for (method, path, body) in [
        (
            Method::PUT,
            "/company/webhook",
            Some(json!({"url": "https://example.com/h"})),
        ),
        (Method::DELETE, "/company/webhook", None),
        (Method::POST, "/company/webhook/secret/rotate", None),
        (
            Method::POST,
            "/company/api-keys",
            Some(json!({"mode": "live"})),
        ),
    ] {
        let resp = app.call(method.clone(), path, t, body).await;
        assert_error(resp, 403, "LIVE_MODE_ONLY", "error").await;
    }
    // A test key makes test keys (its own mode by default); a live key may make either.
    let made: Value = app
        .call(Method::POST, "/company/api-keys", t, Some(json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        made["apiKey"].as_str().unwrap().starts_with("tn_test_"),
        "{made}"
    );
    assert_eq!(made["mode"], "test");
    let resp = app
        .call(
            Method::POST,
            "/company/api-keys",
            &c.api_key,
            Some(json!({"mode": "test"})),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.unwrap();
    assert!(body["apiKey"].as_str().unwrap().starts_with("tn_test_"));

    // Listing: the test key sees test keys only; the live key sees all of them.
    let modes = |key: String| {
        let app = &app;
        async move {
            let list: Value = app
                .call(Method::GET, "/company/api-keys", &key, None)
                .await
                .json()
                .await
                .unwrap();
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["mode"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let test_view = modes(t.clone()).await;
    assert_eq!(test_view, ["test", "test", "test"]);
    let live_view = modes(c.api_key.clone()).await;
    assert_eq!(live_view.len(), 4);
    assert_eq!(live_view.iter().filter(|m| *m == "live").count(), 1);

    // A live key is as unknown to a test key as an unknown id.
    let live_id = truenumber_core::companies::secrets::api_key_parts(&c.api_key)
        .unwrap()
        .lookup_id
        .to_owned();
    for (method, path, body) in [
        (Method::DELETE, format!("/company/api-keys/{live_id}"), None),
        (
            Method::POST,
            format!("/company/api-keys/{live_id}/roll"),
            Some(json!({"expiresInSeconds": 0})),
        ),
    ] {
        let resp = app.call(method, &path, t, body).await;
        assert_error(resp, 404, "API_KEY_NOT_FOUND", "error").await;
    }
    // The live key still works.
    assert_eq!(
        app.status(&c.api_key, "ver_unknown")
            .await
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test]
async fn test_and_live_requests_count_against_separate_limits() {
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMIT_INITIATE_PER_HOUR".into(), "2".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    for _ in 0..2 {
        app.initiate_with(&c.test_api_key, &c, json!({})).await;
    }
    let over = app
        .initiate(
            &c.test_api_key,
            &json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": unique("r")}),
        )
        .await;
    assert_error(over, 429, "RATE_LIMIT_EXCEEDED", "error").await;
    // The live budget is untouched.
    for _ in 0..2 {
        app.initiate_with(&c.api_key, &c, json!({})).await;
    }
}

#[tokio::test]
async fn concurrent_completions_of_a_test_session_have_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    for _ in 0..3 {
        let id = app.initiate_with(&c.test_api_key, &c, json!({})).await["verificationId"]
            .as_str()
            .unwrap()
            .to_owned();
        let outcomes = [
            "verified", "failed", "denied", "expired", "verified", "denied",
        ];
        let results = futures::future::join_all(
            outcomes
                .iter()
                .map(|o| app.complete(&c.test_api_key, &id, o)),
        )
        .await;
        let mut winners = Vec::new();
        let mut expired_answers = 0;
        for (o, r) in outcomes.iter().zip(results) {
            match r.status().as_u16() {
                200 => winners.push(*o),
                409 => {}
                // A loser to `expired` hears what the app would: the session has expired.
                410 => expired_answers += 1,
                other => panic!("{other} for {o}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert!(
            expired_answers == 0 || winners[0] == "expired",
            "{winners:?}"
        );
        let status = app.status_body(&c.test_api_key, &id).await;
        assert_eq!(status["status"], winners[0]);
    }
}
