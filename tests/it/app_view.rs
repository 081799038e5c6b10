//! The app's side: "not me" (deny), the consent view, the pending list for a number-bound
//! token, and number matching. Run in both modes.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, delivering, unique};

const NUMBER: &str = "+447911123456";
const OTHER: &str = "+447912345678";

#[tokio::test]
async fn deny_makes_the_session_denied_everywhere_with_its_webhook() {
    let (app, receiver, worker, c) = delivering().await;
    let id = app.new_session(&c, NUMBER).await;
    let token = app.app_token("app_user_9", Some(NUMBER));

    // The token's sub must be the body's appUserId, as for submit.
    assert_error(
        app.deny(&token, &id, "someone_else").await,
        403,
        "FORBIDDEN",
        "error",
    )
    .await;
    let resp = app.deny(&token, &id, "app_user_9").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "message": "Verification denied", "verificationId": id})
    );

    let status = app.status_body(&c.api_key, &id).await;
    assert_eq!(status["status"], "denied");
    assert!(status.get("verifiedAt").is_none(), "{status}");
    // Terminal: a second deny and a late submit are replays.
    assert_error(
        app.deny(&token, &id, "app_user_9").await,
        409,
        "SESSION_ALREADY_COMPLETED",
        "error",
    )
    .await;
    let late = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "app_user_9"}),
        )
        .await;
    assert_error(late, 409, "SESSION_ALREADY_COMPLETED", "error").await;

    // Listed and summarised as denied.
    let listed: Value = app
        .call(
            Method::GET,
            "/verifications?status=denied",
            &c.api_key,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["verificationId"], id.as_str());
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let summary: Value = app
        .call(Method::GET, "/verifications/summary", &c.api_key, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["denied"], 1, "{summary}");
    assert_eq!(summary["verified"], 0, "{summary}");
    assert_eq!(summary["conversionRate"], 0.0, "{summary}");

    // The webhook says denied, with no verifiedAt.
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let hook: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(hook["status"], "denied");
    assert_eq!(hook["verificationId"], id.as_str());
    assert_eq!(hook["livemode"], true);
    assert_eq!(hook["verifiedAt"], Value::Null);
    standardwebhooks::Webhook::new(&c.webhook_secret)
        .unwrap()
        .verify(got[0].body.as_bytes(), &got[0].headers)
        .expect("signed");

    // Counted among the outcomes.
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("truenumber_verifications_total{kind=\"denied\"} 1"),
        "{metrics}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_number_bound_token_denies_only_its_numbers_sessions() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let other_number = app.app_token("u", Some(OTHER));
    assert_error(
        app.deny(&other_number, &id, "u").await,
        404,
        "SESSION_NOT_FOUND",
        "failed",
    )
    .await;
    assert_eq!(app.status_body(&c.api_key, &id).await["status"], "pending");
    let own_number = app.app_token("u", Some("+44 7911 123456"));
    assert_eq!(app.deny(&own_number, &id, "u").await.status().as_u16(), 200);
    assert_error(
        app.deny(&own_number, "ver_unknown", "u").await,
        404,
        "SESSION_NOT_FOUND",
        "failed",
    )
    .await;
}

#[tokio::test]
async fn deny_and_submit_race_with_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let token = app.app_token("racer", Some(NUMBER));
    let mut won = [0usize; 2];
    for _ in 0..8 {
        let id = app.new_session(&c, NUMBER).await;
        let submit_body =
            json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "racer"});
        let (submitted, denied, submitted2, denied2) = tokio::join!(
            app.submit(&token, &submit_body),
            app.deny(&token, &id, "racer"),
            app.submit(&token, &submit_body),
            app.deny(&token, &id, "racer"),
        );
        let codes = [submitted, denied, submitted2, denied2].map(|r| r.status().as_u16());
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
        assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
        let winner_is_submit = codes[0] == 200 || codes[2] == 200;
        won[usize::from(!winner_is_submit)] += 1;
        let status = app.status_body(&c.api_key, &id).await;
        assert_eq!(
            status["status"],
            if winner_is_submit {
                "verified"
            } else {
                "denied"
            }
        );
        // Exactly one event for the session, whoever won.
        let events = truenumber_entities::verification_event::Entity::find()
            .filter(truenumber_entities::verification_event::Column::VerificationId.eq(id.as_str()))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
    }
    println!("submit won {} rounds, deny won {}", won[0], won[1]);
}

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

#[tokio::test]
async fn the_consent_view_shows_who_asks_and_never_the_match_code() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let started = app
        .initiate_with(&c.api_key, &c, json!({"numberMatching": true}))
        .await;
    let id = started["verificationId"].as_str().unwrap().to_owned();
    let code = started["matchCode"].as_str().unwrap().to_owned();

    let token = app.app_token("viewer", Some(NUMBER));
    let resp = app
        .call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        view.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        [
            "companyId",
            "companyName",
            "expiresAt",
            "mobileNumber",
            "numberMatching",
            "status",
            "verificationId"
        ]
    );
    assert_eq!(view["companyName"], format!("{} Ltd", c.id));
    assert_eq!(view["mobileNumber"], NUMBER);
    assert_eq!(view["status"], "pending");
    assert_eq!(view["numberMatching"], true);
    assert_eq!(view["expiresAt"], started["expiresAt"]);
    assert!(!text.contains("matchCode"), "{text}");
    // Nor does the company's status body carry it.
    let status = app.status_body(&c.api_key, &id).await;
    assert!(status.get("matchCode").is_none(), "{status}");
    assert_eq!(code.len(), 2);

    // A token bound to the number sees it; bound to another, it is not found.
    let own = app.app_token("viewer", Some(NUMBER));
    let resp = app
        .call(Method::GET, &format!("/app/verifications/{id}"), &own, None)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let other = app.app_token("viewer", Some(OTHER));
    let resp = app
        .call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            &other,
            None,
        )
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    let resp = app
        .call(Method::GET, "/app/verifications/ver_nope", &token, None)
        .await;
    assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    // Without a token: 401.
    let resp = app
        .call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            "nope",
            None,
        )
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    // After a deny it reads denied.
    assert_eq!(app.deny(&token, &id, "viewer").await.status().as_u16(), 200);
    let view: Value = app
        .call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            &token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "denied");
}

#[tokio::test]
async fn the_pending_list_shows_only_the_tokens_numbers_open_live_sessions() {
    let app = TestApp::spawn().await;
    let a = app.create_company(&unique("a")).await;
    let b = app.create_company(&unique("b")).await;
    let first = app.new_session(&a, NUMBER).await;
    let second = app.new_session(&b, "+44 7911 123456").await;
    let third = app.new_session(&a, NUMBER).await;
    let done = app.new_session(&b, NUMBER).await;
    let _other_number = app.new_session(&a, OTHER).await;
    app.initiate_with(&a.test_api_key, &a, json!({})).await;
    let token = app.app_token("lister", Some(NUMBER));
    assert_eq!(
        app.deny(&token, &done, "lister").await.status().as_u16(),
        200
    );

    // Unbound: refused.
    let unbound = app.unbound_token("lister");
    let resp = app
        .call(
            Method::GET,
            "/app/verifications?status=pending",
            &unbound,
            None,
        )
        .await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    // Bound: exactly the open live sessions of that number, across companies, newest first.
    for query in ["?status=pending", ""] {
        let path = format!("/app/verifications{query}");
        let ids = app.listed_ids(&path, &token).await;
        assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()]);
        let page: Value = app
            .call(Method::GET, &path, &token, None)
            .await
            .json()
            .await
            .unwrap();
        let names: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["companyName"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("{} Ltd", a.id),
                format!("{} Ltd", b.id),
                format!("{} Ltd", a.id)
            ]
        );
    }
    let resp = app
        .call(
            Method::GET,
            "/app/verifications?status=verified",
            &token,
            None,
        )
        .await;
    assert_error(resp, 400, "INVALID_REQUEST", "error").await;
}

#[tokio::test]
async fn number_matching_right_wrong_and_missing() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let token = app.app_token("m", Some(NUMBER));
    let start = |matching: bool| {
        let app = &app;
        let c = &c;
        async move {
            let body = app
                .initiate_with(&c.api_key, c, json!({"numberMatching": matching}))
                .await;
            (
                body["verificationId"].as_str().unwrap().to_owned(),
                body.get("matchCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        }
    };
    let submit = |id: String, code: Option<String>| {
        let app = &app;
        let token = &token;
        async move {
            let mut body =
                json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "m"});
            if let Some(code) = code {
                body["matchCode"] = code.into();
            }
            app.submit(token, &body).await
        }
    };

    // Right code: verified.
    let (id, code) = start(true).await;
    let code = code.expect("matchCode with numberMatching");
    assert!(
        code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert_eq!(
        submit(id.clone(), Some(code.clone()))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.status_body(&c.api_key, &id).await["status"], "verified");

    // A malformed code is the request's fault: the session is untouched.
    let (id, code) = start(true).await;
    let resp = submit(id.clone(), Some("7".into())).await;
    assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert_eq!(app.status_body(&c.api_key, &id).await["status"], "pending");
    // A wrong code fails the session, which then stays failed.
    let code = code.unwrap();
    let wrong = format!("{:02}", (code.parse::<u8>().unwrap() + 1) % 100);
    let resp = submit(id.clone(), Some(wrong)).await;
    let err = assert_error(resp, 400, "MATCH_CODE_MISMATCH", "failed").await;
    assert!(
        err["message"].as_str().unwrap().contains("match code"),
        "{err}"
    );
    assert_eq!(app.status_body(&c.api_key, &id).await["status"], "failed");
    let resp = submit(id, Some(code)).await;
    assert_error(resp, 409, "SESSION_ALREADY_COMPLETED", "error").await;

    // A missing code fails it too.
    let (id, _) = start(true).await;
    assert_error(
        submit(id.clone(), None).await,
        400,
        "MATCH_CODE_MISMATCH",
        "failed",
    )
    .await;
    assert_eq!(app.status_body(&c.api_key, &id).await["status"], "failed");

    // Without number matching there is no code, and a code sent anyway changes nothing.
    let (id, code) = start(false).await;
    assert_eq!(code, None);
    assert_eq!(submit(id, Some("42".into())).await.status().as_u16(), 200);
    // A wrong number with number matching on is still a number mismatch.
    let (id, code) = start(true).await;
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": OTHER, "appUserId": "m", "matchCode": code}),
        )
        .await;
    assert_error(resp, 400, "NUMBER_MISMATCH", "failed").await;

    // Idempotency: the replay returns the same code; a different numberMatching is refused.
    let request_id = unique("req");
    let first = app
        .initiate_with(
            &c.api_key,
            &c,
            json!({"requestId": request_id, "numberMatching": true}),
        )
        .await;
    let again = app
        .initiate_with(
            &c.api_key,
            &c,
            json!({"requestId": request_id, "numberMatching": true}),
        )
        .await;
    assert_eq!(first["matchCode"], again["matchCode"]);
    assert_eq!(first["verificationId"], again["verificationId"]);
    let resp = app
        .initiate(
            &c.api_key,
            &json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": request_id}),
        )
        .await;
    assert_error(resp, 409, "DUPLICATE_REQUEST", "error").await;
}
