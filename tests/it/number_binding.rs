//! Number binding (issue 22, PRODUCT.md "App identity and number binding"), in both modes:
//! a live session is confirmed, denied and seen only with an app token whose verified
//! `phone_number` is the session's number; the company learns `numberBinding` and
//! `phoneVerifiedAt` in the status body, the listing and the webhook.

use std::{collections::HashMap, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::helpers::{
    Captured, TEST_JWT_SECRET, TestApp, assert_error, base_env, config_from, delivering,
    session_row, unique,
};

const NUMBER: &str = "+447911123456";
const OTHER: &str = "+447912345678";
/// When the identity provider last proved the number, as the tokens below say (`auth_time`).
const PROVED_AT: i64 = 1_796_000_000;
const PROVED_AT_TEXT: &str = "2026-11-30T00:53:20.000Z";

/// An HS256 app token for `user` with `extra` claims (what an identity provider's token
/// carries), valid ten minutes.
fn token(user: &str, extra: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": user, "exp": now + 600, "iat": now});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn submit_body(id: &str, user: &str) -> Value {
    json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": user})
}

async fn status_of(app: &TestApp, key: &str, id: &str) -> Value {
    let resp = app.status(key, id).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_token_without_the_number_cannot_verify_it_and_the_holder_still_can() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;

    // The attack: the deep link in the hands of someone whose app token proves no number.
    let unbound = token("attacker", json!({}));
    let resp = app.submit(&unbound, &submit_body(&id, "attacker")).await;
    let body = assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    assert!(body["message"].as_str().unwrap().contains("phone_number"));
    // A number the provider has not verified binds nothing either.
    let unverified = token(
        "attacker",
        json!({"phone_number": NUMBER, "phone_number_verified": false}),
    );
    let resp = app.submit(&unverified, &submit_body(&id, "attacker")).await;
    let body = assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    assert!(body["message"].as_str().unwrap().contains("not verified"));
    // "phone_number_verified": "false" (a string, as some providers send it) is the same.
    let unverified = token(
        "attacker",
        json!({"phone_number": NUMBER, "phone_number_verified": "false"}),
    );
    let resp = app.submit(&unverified, &submit_body(&id, "attacker")).await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    // A phone_number that is no mobile number binds nothing.
    let bogus = token("attacker", json!({"phone_number": "+44 20 7946 0000"}));
    let resp = app.submit(&bogus, &submit_body(&id, "attacker")).await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;

    // The attacker's own, genuinely bound token: the same 404 as an unknown id, untouched.
    let own_number = token(
        "attacker",
        json!({"phone_number": OTHER, "phone_number_verified": true}),
    );
    let resp = app.submit(&own_number, &submit_body(&id, "attacker")).await;
    let found_not = assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    let resp = app
        .submit(&own_number, &submit_body("ver_unknown", "attacker"))
        .await;
    let unknown = assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    assert_eq!(found_not["message"], unknown["message"]);

    let row = session_row(&app, &id).await;
    assert_eq!(
        row.status,
        truenumber_core::verification::SessionStatus::Pending
    );
    assert_eq!(row.app_user_id, None);
    assert_eq!(row.number_binding, None);
    let status = status_of(&app, &c.api_key, &id).await;
    assert_eq!(status["status"], "pending");
    assert_eq!(status["numberBinding"], Value::Null);
    assert_eq!(status["phoneVerifiedAt"], Value::Null);

    // The holder, with a token whose number is spelled otherwise (it normalises to E.164).
    let holder = token(
        "holder",
        json!({"phone_number": "+44 7911-123.456", "phone_number_verified": true, "auth_time": PROVED_AT}),
    );
    let resp = app.submit(&holder, &submit_body(&id, "holder")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let status = status_of(&app, &c.api_key, &id).await;
    assert_eq!(status["status"], "verified");
    assert_eq!(status["numberBinding"], "app_token");
    assert_eq!(status["phoneVerifiedAt"], PROVED_AT_TEXT);
    // Never the app user id: it would correlate one person across companies.
    assert!(status.get("appUserId").is_none(), "{status}");
}

#[tokio::test]
async fn deny_the_view_and_the_pending_list_follow_the_same_rules() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let view = format!("/app/verifications/{id}");
    let list = "/app/verifications?status=pending";

    let unbound = token("u", json!({}));
    let unverified = token(
        "u",
        json!({"phone_number": NUMBER, "phone_number_verified": false}),
    );
    for refused in [&unbound, &unverified] {
        assert_error(
            app.deny(refused, &id, "u").await,
            403,
            "NUMBER_BINDING_REQUIRED",
            "error",
        )
        .await;
        for path in [view.as_str(), list] {
            let resp = app.call(Method::GET, path, refused, None).await;
            assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
        }
    }

    let other = token("u", json!({"phone_number": OTHER}));
    assert_error(
        app.deny(&other, &id, "u").await,
        404,
        "SESSION_NOT_FOUND",
        "failed",
    )
    .await;
    let resp = app.call(Method::GET, &view, &other, None).await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    let resp = app.call(Method::GET, list, &other, None).await;
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(listed["data"], json!([]));
    assert_eq!(session_row(&app, &id).await.number_binding, None);

    // The holder sees it in both places, in any spelling of the number, and denies it.
    let holder = token(
        "u",
        json!({"phone_number": "+447911 123456", "auth_time": PROVED_AT}),
    );
    let resp = app.call(Method::GET, &view, &holder, None).await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app.call(Method::GET, list, &holder, None).await;
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(listed["data"][0]["verificationId"], id.as_str());
    assert_eq!(app.deny(&holder, &id, "u").await.status().as_u16(), 200);
    let status = status_of(&app, &c.api_key, &id).await;
    assert_eq!(status["status"], "denied");
    assert_eq!(status["numberBinding"], "app_token");
    assert_eq!(status["phoneVerifiedAt"], PROVED_AT_TEXT);
}

#[tokio::test]
async fn the_company_learns_the_binding_in_status_listing_and_webhook() {
    let (app, receiver, worker, c) = delivering().await;

    // Verified by a bound token with auth_time; denied by one without; completed in test
    // mode (not by the app: null).
    let verified = app.new_session(&c, NUMBER).await;
    let proved = token(
        "u",
        json!({"phone_number": NUMBER, "phone_number_verified": true, "auth_time": PROVED_AT}),
    );
    assert_eq!(
        app.submit(&proved, &submit_body(&verified, "u"))
            .await
            .status()
            .as_u16(),
        200
    );
    let denied = app.new_session(&c, NUMBER).await;
    let no_auth_time = token("u", json!({"phone_number": NUMBER}));
    assert_eq!(
        app.deny(&no_auth_time, &denied, "u")
            .await
            .status()
            .as_u16(),
        200
    );
    let test_session = app.initiate_with(&c.test_api_key, &c, json!({})).await["verificationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.complete(&c.test_api_key, &test_session, "verified")
            .await
            .status()
            .as_u16(),
        200
    );

    let expect = [
        (&verified, json!("app_token"), json!(PROVED_AT_TEXT)),
        (&denied, json!("app_token"), Value::Null),
    ];
    for (id, binding, at) in &expect {
        let status = status_of(&app, &c.api_key, id).await;
        assert_eq!(&status["numberBinding"], binding, "{status}");
        assert_eq!(&status["phoneVerifiedAt"], at, "{status}");
    }
    let status = status_of(&app, &c.test_api_key, &test_session).await;
    assert_eq!(status["numberBinding"], Value::Null);
    assert_eq!(status["phoneVerifiedAt"], Value::Null);
    // The listing carries the same fields.
    let resp = app
        .call(Method::GET, "/verifications", &c.api_key, None)
        .await;
    let page: Value = resp.json().await.unwrap();
    for (id, binding, at) in &expect {
        let item = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["verificationId"] == id.as_str())
            .unwrap();
        assert_eq!(&item["numberBinding"], binding);
        assert_eq!(&item["phoneVerifiedAt"], at);
    }

    // The webhooks, signed (checked with the standardwebhooks crate).
    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    let verifier = standardwebhooks::Webhook::new(&c.webhook_secret).unwrap();
    let mut bodies: HashMap<String, Value> = HashMap::new();
    for r in &got {
        verifier.verify(r.body.as_bytes(), &r.headers).unwrap();
        let body: Value = serde_json::from_str(&r.body).unwrap();
        bodies.insert(body["verificationId"].as_str().unwrap().to_owned(), body);
    }
    for (id, binding, at) in &expect {
        let body = &bodies[id.as_str()];
        assert_eq!(&body["numberBinding"], binding, "{body}");
        assert_eq!(&body["phoneVerifiedAt"], at, "{body}");
        assert!(body.get("appUserId").is_none(), "{body}");
    }
    let test_body = &bodies[&test_session];
    assert_eq!(test_body["numberBinding"], Value::Null);
    assert_eq!(test_body["phoneVerifiedAt"], Value::Null);
    worker.stop().await;
}

#[tokio::test]
async fn the_development_switch_warns_and_marks_unbound_sessions() {
    let captured = Captured::default();
    let mut env = base_env();
    env.insert("APP_TOKEN_REQUIRE_PHONE_NUMBER".into(), "false".into());
    env.insert("LOG_LEVEL".into(), "info".into());
    let config = config_from(&env);
    let sink = captured.clone();
    truenumber_core::observability::telemetry::init_with_writer(
        &config,
        BoxMakeWriter::new(move || sink.clone()),
    );
    let app = TestApp::spawn_config(config).await;
    let warning = captured
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("APP_TOKEN_REQUIRE_PHONE_NUMBER=false"))
        })
        .expect("the start-up warning");
    assert_eq!(warning["level"], "WARN");

    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let unbound = app.unbound_token("dev");
    // The view works without a number; the pending list still needs one.
    let resp = app
        .call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            &unbound,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app
        .call(Method::GET, "/app/verifications", &unbound, None)
        .await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    // A bound token keeps its rules: another number's session is not found.
    let other = token("dev", json!({"phone_number": OTHER}));
    let resp = app.submit(&other, &submit_body(&id, "dev")).await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;

    let resp = app.submit(&unbound, &submit_body(&id, "dev")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let status = status_of(&app, &c.api_key, &id).await;
    assert_eq!(status["status"], "verified");
    assert_eq!(status["numberBinding"], "none");
    assert_eq!(status["phoneVerifiedAt"], Value::Null);
}
