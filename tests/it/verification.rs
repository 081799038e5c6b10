//! The verification flow end to end: initiate, submit, status, with every error code.

use std::time::Duration;

use serde_json::{Value, json};

use truenumber_core::verification::SessionStatus;

use crate::helpers::{TestApp, assert_error, session_row, unique};

const NUMBER: &str = "+447911123456";
const OTHER_NUMBER: &str = "+447912345678";

#[tokio::test]
async fn the_whole_flow_verifies_a_number() {
    let app = TestApp::spawn().await;
    let company = app.create_company("comp_abc").await;

    let resp = app
        .initiate(
            &company.api_key,
            &json!({"mobileNumber": "+44 (0)7911-123.456", "companyId": "comp_abc", "requestId": "uuid_xyz"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let started: Value = resp.json().await.unwrap();
    let id = started["verificationId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ver_") && id.len() >= 26, "{id}");
    assert_eq!(started["status"], "success");
    assert_eq!(started["message"], "Verification initiated");
    assert_eq!(started["mobileNumber"], NUMBER);
    assert_eq!(
        started["deepLinkUrl"],
        format!("truenumberapp://verify?number=%2B447911123456&verificationId={id}")
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(started["expiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");

    let pending: Value = app
        .status(&company.api_key, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["verificationId"], id.as_str());
    assert_eq!(pending["mobileNumber"], NUMBER);
    assert_eq!(pending["requestId"], "uuid_xyz");
    // Absent while pending (the document says so; not `null`).
    assert!(pending.get("verifiedAt").is_none(), "{pending}");
    assert!(pending["createdAt"].is_string() && pending["expiresAt"] == started["expiresAt"]);

    let token = app.app_token("user_def", Some(NUMBER));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": "+447911 123456", "appUserId": "user_def"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let submitted: Value = resp.json().await.unwrap();
    assert_eq!(submitted["status"], "success");
    assert_eq!(submitted["message"], "Mobile number verified successfully!");
    assert_eq!(submitted["verificationId"], id.as_str());
    let verified_at = submitted["verifiedAt"].as_str().unwrap().to_owned();

    let done: Value = app
        .status(&company.api_key, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "verified");
    assert_eq!(done["verifiedAt"], verified_at.as_str());

    // The app user is stored with the session.
    let row = session_row(&app, &id).await;
    assert_eq!(row.app_user_id.as_deref(), Some("user_def"));
    assert_eq!(row.status, SessionStatus::Verified);
    assert!(row.completed_at.is_some());

    // Replay of the same confirmation.
    let replay = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "user_def"}),
        )
        .await;
    let body = assert_error(replay, 409, "SESSION_ALREADY_COMPLETED", "error").await;
    assert!(body["message"].as_str().unwrap().contains("verified"));
}

#[tokio::test]
async fn a_malformed_confirmed_number_is_the_request_s_fault_and_leaves_the_session_alone() {
    let app = TestApp::spawn().await;
    let company = app.create_company(&unique("c")).await;
    let id = app.new_session(&company, NUMBER).await;
    let token = app.app_token("u1", Some(NUMBER));
    for bad in ["07911123456", "+44abc", "", "+441632960000"] {
        let resp = app
            .submit(
                &token,
                &json!({"verificationId": id, "userConfirmedNumber": bad, "appUserId": "u1"}),
            )
            .await;
        let body = assert_error(resp, 400, "INVALID_NUMBER", "error").await;
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with("userConfirmedNumber "), "{message}");
        assert!(!message.contains("mobileNumber"), "{message}");
    }
    let row = session_row(&app, &id).await;
    assert_eq!(row.status, SessionStatus::Pending);
    assert!(row.app_user_id.is_none());
    // And the right number still verifies it.
    let ok = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_different_number_fails_the_session_for_good() {
    let app = TestApp::spawn().await;
    let company = app.create_company(&unique("c")).await;
    let id = app.new_session(&company, NUMBER).await;
    let token = app.app_token("u1", Some(NUMBER));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": OTHER_NUMBER, "appUserId": "u1"}),
        )
        .await;
    let body = assert_error(resp, 400, "NUMBER_MISMATCH", "failed").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Verification failed")
    );
    let status: Value = app
        .status(&company.api_key, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "failed");
    assert!(status.get("verifiedAt").is_none(), "{status}");
    // The right number afterwards does not resurrect it.
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    let body = assert_error(resp, 409, "SESSION_ALREADY_COMPLETED", "error").await;
    assert!(body["message"].as_str().unwrap().contains("failed"));
}

#[tokio::test]
async fn a_token_bound_to_another_number_cannot_verify_nor_fail_it() {
    let app = TestApp::spawn().await;
    let company = app.create_company(&unique("c")).await;
    let id = app.new_session(&company, NUMBER).await;
    let token = app.app_token("u1", Some(OTHER_NUMBER));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    // Exactly the answer to an unknown id, and the session is untouched (issue 22: a token
    // bound to another number used to fail it, so anyone with the link could break it).
    let body = assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    let unknown = app
        .submit(
            &token,
            &json!({"verificationId": "ver_unknown", "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    let unknown = assert_error(unknown, 404, "SESSION_NOT_FOUND", "failed").await;
    assert_eq!(body["message"], unknown["message"]);
    let status: Value = app
        .status(&company.api_key, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "pending");

    // A token bound to the right number (in another format) verifies.
    let id = app.new_session(&company, NUMBER).await;
    let token = app.app_token("u1", Some("+44 7911 123456"));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn tenants_cannot_see_each_other() {
    let app = TestApp::spawn().await;
    let a = app.create_company(&unique("a")).await;
    let b = app.create_company(&unique("b")).await;
    let id = app.new_session(&a, NUMBER).await;

    // B reading A's session: the same answer as an unknown id.
    let resp = app.status(&b.api_key, &id).await;
    let body = assert_error(resp, 404, "SESSION_NOT_FOUND", "error").await;
    assert_eq!(body["message"], "Verification session not found");
    let unknown = app.status(&b.api_key, "ver_doesnotexist").await;
    let unknown_body = assert_error(unknown, 404, "SESSION_NOT_FOUND", "error").await;
    assert_eq!(unknown_body["message"], body["message"]);

    // B initiating in A's name, or in an unknown company's name: the same 404.
    for company_id in [a.id.as_str(), "comp_nobody"] {
        let resp = app
            .initiate(
                &b.api_key,
                &json!({"mobileNumber": NUMBER, "companyId": company_id, "requestId": "r"}),
            )
            .await;
        let body = assert_error(resp, 404, "COMPANY_NOT_FOUND", "error").await;
        assert_eq!(body["message"], "Company not found");
    }

    // The same requestId in two companies makes two sessions.
    let body = json!({"mobileNumber": NUMBER, "requestId": "shared"});
    let mut with_a = body.clone();
    with_a["companyId"] = json!(a.id);
    let mut with_b = body;
    with_b["companyId"] = json!(b.id);
    let sa: Value = app
        .initiate(&a.api_key, &with_a)
        .await
        .json()
        .await
        .unwrap();
    let sb: Value = app
        .initiate(&b.api_key, &with_b)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(sa["verificationId"], sb["verificationId"]);

    // A still reads its own.
    let own: Value = app.status(&a.api_key, &id).await.json().await.unwrap();
    assert_eq!(own["status"], "pending");
}

#[tokio::test]
async fn initiate_is_idempotent_on_request_id() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let body = json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": "req-1"});
    let first: Value = app.initiate(&c.api_key, &body).await.json().await.unwrap();
    let again = app.initiate(&c.api_key, &body).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    // Formatting differences are the same number.
    let formatted =
        json!({"mobileNumber": "+44 7911 123456", "companyId": c.id, "requestId": "req-1"});
    let same: Value = app
        .initiate(&c.api_key, &formatted)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["verificationId"], first["verificationId"]);

    let other = json!({"mobileNumber": OTHER_NUMBER, "companyId": c.id, "requestId": "req-1"});
    let resp = app.initiate(&c.api_key, &other).await;
    assert_error(resp, 409, "DUPLICATE_REQUEST", "error").await;

    // Concurrent first requests with one requestId still make one session.
    let body = json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": "req-race"});
    let results = futures::future::join_all((0..20).map(|_| app.initiate(&c.api_key, &body))).await;
    let mut ids = Vec::new();
    for r in results {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        ids.push(v["verificationId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Once the session is finished, its requestId is no longer a replay: a 409 that names
    // the session and its status (never a 200 with an expiresAt in the past).
    let id = first["verificationId"].as_str().unwrap();
    let token = app.app_token("u", Some(NUMBER));
    let done = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u"}),
        )
        .await;
    assert_eq!(done.status(), 200);
    let resp = app.initiate(&c.api_key, &body_for(&c.id, "req-1")).await;
    let err = assert_error(resp, 409, "DUPLICATE_REQUEST", "error").await;
    assert_eq!(
        err["message"],
        format!(
            "requestId was already used by verification {id}, which is verified; use a new \
             requestId to verify this number again"
        )
    );
    // A new requestId starts a new session.
    let resp = app.initiate(&c.api_key, &body_for(&c.id, "req-2")).await;
    assert_eq!(resp.status(), 200);
}

fn body_for(company_id: &str, request_id: &str) -> Value {
    json!({"mobileNumber": NUMBER, "companyId": company_id, "requestId": request_id})
}

#[tokio::test]
async fn sessions_expire_lazily_and_refuse_submits() {
    let app = TestApp::spawn_with(|env| {
        env.insert("VERIFICATION_TTL_SECONDS".into(), "1".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let started = app.initiate_ok(&c, NUMBER).await;
    let id = started["verificationId"].as_str().unwrap().to_owned();
    let pending: Value = app.status(&c.api_key, &id).await.json().await.unwrap();
    assert_eq!(pending["status"], "pending");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    // No sweeper runs here: the status is computed.
    let expired: Value = app.status(&c.api_key, &id).await.json().await.unwrap();
    assert_eq!(expired["status"], "expired");

    let token = app.app_token("u", Some(NUMBER));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u"}),
        )
        .await;
    let body = assert_error(resp, 410, "SESSION_EXPIRED", "failed").await;
    assert_eq!(body["message"], "Verification session has expired");
    // Its requestId now names an expired session (before any sweep).
    let resp = app
        .initiate(
            &c.api_key,
            &json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": pending["requestId"]}),
        )
        .await;
    let err = assert_error(resp, 409, "DUPLICATE_REQUEST", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("which is expired"),
        "{err}"
    );
    // The stored row is untouched (the sweeper owns the transition and its event).
    let row = session_row(&app, &id).await;
    assert_eq!(row.status, SessionStatus::Pending);
    assert!(row.app_user_id.is_none());
}

#[tokio::test]
async fn submit_refuses_bad_tokens_users_and_ids() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let body = json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "u1"});

    // No token, a garbage token, an API key, a token signed with another secret, an expired one.
    let no_auth = app
        .client
        .post(app.url("/api/v1/verification/submit"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(no_auth, 401, "UNAUTHORIZED", "error").await;
    let foreign = truenumber_core::companies::app_tokens::AppTokenKeys::new(
        &truenumber_core::config::Secret::new("another-secret-another-secret-0123456"),
    )
    .mint("u1", None, 600)
    .unwrap();
    let expired = truenumber_core::companies::app_tokens::AppTokenKeys::new(&app.config.jwt_secret)
        .mint("u1", None, -3600)
        .unwrap();
    for token in [
        "garbage",
        c.api_key.as_str(),
        foreign.as_str(),
        expired.as_str(),
    ] {
        let resp = app.submit(token, &body).await;
        let err = assert_error(resp, 401, "UNAUTHORIZED", "error").await;
        assert_eq!(err["message"], "Invalid or expired app token");
    }

    // A token for another user.
    let resp = app.submit(&app.app_token("u2", Some(NUMBER)), &body).await;
    assert_error(resp, 403, "FORBIDDEN", "error").await;

    let token = app.app_token("u1", Some(NUMBER));
    // Unknown and absurd ids.
    for vid in ["ver_unknown", &"x".repeat(64)] {
        let resp = app
            .submit(
                &token,
                &json!({"verificationId": vid, "userConfirmedNumber": NUMBER, "appUserId": "u1"}),
            )
            .await;
        assert_error(resp, 404, "SESSION_NOT_FOUND", "failed").await;
    }
    // A confirmed number that is not a number at all.
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": id, "userConfirmedNumber": "07911123456", "appUserId": "u1"}),
        )
        .await;
    let err = assert_error(resp, 400, "INVALID_NUMBER", "error").await;
    assert!(err["message"].as_str().unwrap().contains("E.164"));

    // None of that touched the session.
    let status: Value = app.status(&c.api_key, &id).await.json().await.unwrap();
    assert_eq!(status["status"], "pending");
}

#[tokio::test]
async fn initiate_validates_numbers_with_reasons() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    for (number, fragment) in [
        ("07911123456", "E.164"),
        ("+44abc", "E.164"),
        ("", "empty"),
        ("+1234567890123456", "more than 15"),
        ("+442079460000", "fixed-line"),
        ("+448001111111", "toll-free"),
        ("+1234567890", "not"),
    ] {
        let resp = app
            .initiate(
                &c.api_key,
                &json!({"mobileNumber": number, "companyId": c.id, "requestId": unique("r")}),
            )
            .await;
        let body = assert_error(resp, 400, "INVALID_NUMBER", "error").await;
        assert!(
            body["message"].as_str().unwrap().contains(fragment),
            "{number}: {body}"
        );
    }
    // Valid mobiles from several countries are stored in E.164.
    for (number, e164) in [
        ("+1 415 555 2671", "+14155552671"),
        ("+49 151 12345678", "+4915112345678"),
        ("+91 98765 43210", "+919876543210"),
    ] {
        let body = app.initiate_ok(&c, number).await;
        assert_eq!(body["mobileNumber"], e164);
    }
}

#[tokio::test]
async fn api_keys_are_checked_rotated_revoked_and_deactivated() {
    let app = TestApp::spawn_with(|env| {
        // Revocation must be seen at once here, so no verdict cache.
        env.insert("API_KEY_CACHE_TTL_SECONDS".into(), "0".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;

    for key in [
        "",
        "nonsense",
        "tn_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}x", &c.api_key[..c.api_key.len() - 1]),
    ] {
        let resp = app.status(key, "ver_x").await;
        assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    }
    let no_header = app
        .client
        .get(app.url("/api/v1/verification/status/ver_x"))
        .send()
        .await
        .unwrap();
    assert_error(no_header, 401, "UNAUTHORIZED", "error").await;
    let basic = app
        .client
        .get(app.url("/api/v1/verification/status/ver_x"))
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "UNAUTHORIZED", "error").await;

    // Rotation: both keys work until the old one is revoked.
    let (new_key, new_id) = truenumber_core::companies::rotate_key(&app.db, &c.id, false)
        .await
        .unwrap();
    let new_key = new_key.expose().to_owned();
    assert_eq!(app.status(&c.api_key, "ver_x").await.status(), 404);
    assert_eq!(app.status(&new_key, "ver_x").await.status(), 404);
    let old_id = truenumber_core::companies::secrets::api_key_parts(&c.api_key)
        .map(|p| p.lookup_id)
        .unwrap();
    truenumber_core::companies::revoke_key(&app.db, &c.id, old_id)
        .await
        .unwrap();
    assert_error(
        app.status(&c.api_key, "ver_x").await,
        401,
        "UNAUTHORIZED",
        "error",
    )
    .await;
    assert_eq!(app.status(&new_key, "ver_x").await.status(), 404);
    assert!(matches!(
        truenumber_core::companies::revoke_key(&app.db, &c.id, "ffffffffffffffff").await,
        Err(truenumber_core::companies::CompanyError::KeyNotFound(_))
    ));

    // Deactivation.
    truenumber_core::companies::set_active(&app.db, &c.id, false)
        .await
        .unwrap();
    let resp = app
        .initiate(
            &new_key,
            &json!({"mobileNumber": NUMBER, "companyId": c.id, "requestId": "r"}),
        )
        .await;
    assert_error(resp, 403, "COMPANY_INACTIVE", "error").await;
    assert_error(
        app.status(&new_key, "ver_x").await,
        403,
        "COMPANY_INACTIVE",
        "error",
    )
    .await;
    truenumber_core::companies::set_active(&app.db, &c.id, true)
        .await
        .unwrap();
    assert_eq!(app.status(&new_key, "ver_x").await.status(), 404);

    // last_used_at is recorded.
    let list = truenumber_core::companies::list_companies(&app.db)
        .await
        .unwrap();
    let keys = &list.iter().find(|x| x.company_id == c.id).unwrap().api_keys;
    let new = keys.iter().find(|k| k.key_id == new_id).unwrap();
    assert!(new.last_used_at.is_some() && new.revoked_at.is_none());
}

#[tokio::test]
async fn verified_keys_are_cached_so_argon2_is_not_paid_per_request() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    assert_eq!(app.status(&c.api_key, "ver_x").await.status(), 404);
    // Delete the key row: a cached verdict still answers within the TTL, which proves that
    // the database (and argon2) were not consulted again.
    use sea_orm::ConnectionTrait;
    app.db
        .execute_unprepared("DELETE FROM api_keys")
        .await
        .unwrap();
    assert_eq!(app.status(&c.api_key, "ver_x").await.status(), 404);
    // A different (unknown) key is still refused.
    let other = truenumber_core::companies::secrets::new_api_key(
        truenumber_entities::api_key::KeyMode::Live,
    )
    .unwrap();
    assert_error(
        app.status(other.key.expose(), "ver_x").await,
        401,
        "UNAUTHORIZED",
        "error",
    )
    .await;
}

/// 100 concurrent submits of one session; returns the count of each status.
async fn race_submits(app: &TestApp) -> std::collections::BTreeMap<u16, usize> {
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    let token = app.app_token("racer", Some(NUMBER));
    let body = json!({"verificationId": id, "userConfirmedNumber": NUMBER, "appUserId": "racer"});
    let responses = futures::future::join_all((0..100).map(|_| app.submit(&token, &body))).await;
    let mut counts = std::collections::BTreeMap::new();
    for r in responses {
        let status = r.status().as_u16();
        if status != 200 {
            let v: Value = r.json().await.unwrap();
            let expected = if status == 409 {
                "SESSION_ALREADY_COMPLETED"
            } else {
                "RATE_LIMIT_EXCEEDED"
            };
            assert_eq!(v["code"], expected);
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    let status: Value = app.status(&c.api_key, &id).await.json().await.unwrap();
    assert_eq!(status["status"], "verified");
    counts
}

#[tokio::test]
async fn a_hundred_concurrent_submits_have_exactly_one_winner() {
    // With the submit limit out of the way: one winner, 99 replays.
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMIT_SUBMIT_PER_MINUTE".into(), "1000".into());
    })
    .await;
    let counts = race_submits(&app).await;
    assert_eq!(counts, [(200, 1), (409, 99)].into_iter().collect());

    // With the default 10 per minute per session: still one winner; nine replays get 409,
    // the other ninety are refused before they reach the database.
    let app = TestApp::spawn().await;
    let counts = race_submits(&app).await;
    assert_eq!(
        counts,
        [(200, 1), (409, 9), (429, 90)].into_iter().collect()
    );
}

#[tokio::test]
async fn a_database_outage_is_a_503_not_a_leak() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, NUMBER).await;
    // Point a second node at a database server that does not exist.
    let mut env = crate::helpers::base_env();
    env.insert(
        "DATABASE_URL".into(),
        "postgresql://postgres@127.0.0.1:1/nothing".into(),
    );
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let mut opts = sea_orm::ConnectOptions::new(config.database_url.expose().to_owned());
    opts.connect_lazy(true)
        .acquire_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300));
    let dead = sea_orm::Database::connect(opts).await.unwrap();
    let bound = truenumber_api::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), &config)
        .await
        .unwrap();
    let base = format!("http://{}", bound.local_addr);
    let lanes = truenumber_core::storage::lanes::ConnectionLanes::start(
        &config,
        truenumber_core::storage::lanes::LaneOptions::new(1),
    );
    let connections = truenumber_core::storage::lanes::ApiConnections {
        pool: dead,
        lanes: truenumber_core::storage::lanes::RequestDb::Lanes(lanes),
    };
    let state = truenumber_api::state::AppState::new(config, connections).unwrap();
    tokio::spawn(bound.serve(state, std::future::pending()));

    let resp = app
        .client
        .get(format!("{base}/api/v1/verification/status/{id}"))
        .bearer_auth(&c.api_key)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let body = assert_error(resp, 503, "SERVICE_UNAVAILABLE", "error").await;
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("postgres"),
        "{text}"
    );

    let health = app
        .client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["database"]["status"], "down");
    let ready = app
        .client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let live = app
        .client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn health_reports_the_database_with_latency() {
    let app = TestApp::spawn().await;
    // Each check has 2 s; the first one also opens the node's RabbitMQ connection, which on a
    // loaded CI machine (coverage-instrumented build) can take longer. Poll, as a probe does.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let resp = loop {
        let resp = app.client.get(app.url("/health")).send().await.unwrap();
        if resp.status() == 200 || std::time::Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(resp.headers().contains_key("x-request-id"));
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert!(body["checks"]["database"]["latencyMs"].as_f64().unwrap() >= 0.0);
    let ready: Value = app.get_json("/health/ready").await;
    assert_eq!(ready["status"], "ready");
    let live: Value = app.get_json("/health/live").await;
    assert_eq!(live["status"], "ok");
    app.stop().await;
}
