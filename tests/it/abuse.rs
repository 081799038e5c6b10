//! Abuse controls (issue 25, PRODUCT.md "Abuse controls"), in both modes: the per-number
//! limit, the cooldown after "not me", a person's block of a company, the countries a company
//! serves, and every refusal counted in `/metrics` and the summary.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use truenumber_core::companies::{self, AbuseLimits};

use crate::helpers::{
    Expect, TestApp, TestCompany, assert_error, eventually, header, standalone, unique,
};

/// A GB mobile (libphonenumber: GB's own mobile range).
const GB: &str = "+447400123456";
/// Another GB mobile.
const GB_2: &str = "+447400123457";
/// A Jersey mobile: `+44`, but region `JE`.
const JERSEY: &str = "+447797712345";
/// A Guernsey mobile: `+44 7911…`, this project's favourite test number, is region `GG`.
const GUERNSEY: &str = "+447911123456";
/// A Canadian mobile: `+1`, region `CA`.
const CANADA: &str = "+14165552671";
/// A US mobile: `+1`, region `US`.
const US: &str = "+14155552671";

fn body(company: &TestCompany, number: &str, request_id: &str) -> Value {
    json!({"mobileNumber": number, "companyId": company.id, "requestId": request_id})
}

/// The company's own limits, set before its key's first request (a node caches the key with
/// its company's settings for `API_KEY_CACHE_TTL_SECONDS`).
async fn set_limits(app: &TestApp, company: &TestCompany, limits: AbuseLimits) {
    companies::set_abuse_limits(&app.db, &company.id, limits)
        .await
        .unwrap();
}

/// `truenumber_initiations_refused_total{kind=…}`.
fn refused(metrics: &str, kind: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "truenumber_initiations_refused_total{{kind=\"{kind}\"}} "
            ))
        })
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn the_per_number_limit_is_exact_across_two_nodes_and_replays_are_free() {
    let first = TestApp::spawn().await;
    // Production: a second node on the same database and Redis; standalone has one node.
    let second = if standalone() {
        None
    } else {
        Some(TestApp::spawn_config(first.config.clone()).await)
    };
    let node = |i: usize| match (&second, i % 2) {
        (Some(second), 1) => second,
        _ => &first,
    };
    let c = first.create_company(&unique("c")).await;
    set_limits(
        &first,
        &c,
        AbuseLimits {
            initiate_per_number: Some(3),
            initiate_per_number_window_seconds: Some(60),
            ..AbuseLimits::default()
        },
    )
    .await;
    // Exactly three new sessions for the number, from either node.
    let mut ids = Vec::new();
    for i in 0..3 {
        let resp = node(i)
            .initiate(&c.api_key, &body(&c, GB, &format!("r{i}")))
            .await;
        assert_eq!(resp.status(), 200);
        let policy = header(&resp, "ratelimit-policy");
        assert!(
            policy.contains("\"initiate_number\";q=3;w=60"),
            "both limits are announced: {policy}"
        );
        assert!(
            header(&resp, "ratelimit").contains(&format!("\"initiate_number\";r={}", 2 - i)),
            "{}",
            header(&resp, "ratelimit")
        );
        let started: Value = resp.json().await.unwrap();
        ids.push(started["verificationId"].as_str().unwrap().to_owned());
    }
    // A repeat of a request id is not a new initiation: free, before and after the limit.
    let again: Value = node(1)
        .initiate(&c.api_key, &body(&c, GB, "r0"))
        .await
        .expect_json(200)
        .await;
    assert_eq!(again["verificationId"], ids[0].as_str());
    let resp = node(0).initiate(&c.api_key, &body(&c, GB, "r3")).await;
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(header(&resp, "ratelimit").contains("\"initiate_number\";r=0"));
    let err = assert_error(resp, 429, "NUMBER_RATE_LIMITED", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 per minute"),
        "{err}"
    );
    let resp = node(1).initiate(&c.api_key, &body(&c, GB, "r4")).await;
    assert_error(resp, 429, "NUMBER_RATE_LIMITED", "error").await;
    let again: Value = node(1)
        .initiate(&c.api_key, &body(&c, GB, "r2"))
        .await
        .expect_json(200)
        .await;
    assert_eq!(again["verificationId"], ids[2].as_str());
    // Another number, and the test mode's budget, are their own.
    node(0)
        .initiate(&c.api_key, &body(&c, GB_2, "other"))
        .await
        .expect_json(200)
        .await;
    node(1)
        .initiate(&c.test_api_key, &body(&c, GB, "test-r0"))
        .await
        .expect_json(200)
        .await;
    // The refusals made no session: the company has exactly four live ones.
    let page: Value = first
        .list_verifications(&c.api_key, "?limit=100")
        .await
        .expect_json(200)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn not_me_cools_the_company_down_until_the_cooldown_ends() {
    let app = TestApp::spawn().await;
    let asker = app.create_company(&unique("asker")).await;
    let other = app.create_company(&unique("other")).await;
    set_limits(
        &app,
        &asker,
        AbuseLimits {
            deny_cooldown_seconds: Some(3),
            ..AbuseLimits::default()
        },
    )
    .await;
    let id = app.new_session(&asker, GB).await;
    let token = app.app_token("holder", Some(GB));
    assert_eq!(app.deny(&token, &id, "holder").await.status(), 200);
    // The same company, the same number: refused, and erasing the denied session changes
    // nothing (the cooldown is kept apart from the session).
    let resp = app
        .initiate(&asker.api_key, &body(&asker, GB, "again"))
        .await;
    let err = assert_error(resp, 403, "RECENTLY_DENIED", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("may ask again after")
    );
    assert_eq!(
        app.erase_verification(&asker.api_key, &id).await.status(),
        204
    );
    let resp = app
        .initiate(&asker.api_key, &body(&asker, GB, "again"))
        .await;
    assert_error(resp, 403, "RECENTLY_DENIED", "error").await;
    // Another number of the same company, and another company for this number, are free;
    // the person verifies with the other company as ever.
    app.initiate(&asker.api_key, &body(&asker, GB_2, "elsewhere"))
        .await
        .expect_json(200)
        .await;
    let theirs = app.new_session(&other, GB).await;
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": theirs, "userConfirmedNumber": GB, "appUserId": "holder"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // After the cooldown, the company may ask again.
    let started = eventually(Duration::from_secs(10), || async {
        let resp = app
            .initiate(&asker.api_key, &body(&asker, GB, "later"))
            .await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["mobileNumber"], GB);
}

#[tokio::test]
async fn a_holder_blocks_a_company_by_not_me_and_by_put_and_unblocks_it() {
    let app = TestApp::spawn().await;
    let a = app.create_company(&unique("a")).await;
    let b = app.create_company(&unique("b")).await;
    let token = app.app_token("holder", Some(GB));

    // "Not me", and block: the company may not ask this number again.
    let denied = app.new_session(&a, GB).await;
    let view: Value = app
        .app_verification(&token, &denied)
        .await
        .expect_json(200)
        .await;
    assert_eq!(view["companyId"], a.id.as_str());
    let resp = app
        .call(
            Method::POST,
            "/verification/deny",
            &token,
            Some(json!({"verificationId": denied, "appUserId": "holder", "blockCompany": true})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let resp = app.initiate(&a.api_key, &body(&a, GB, "after-block")).await;
    let err = assert_error(resp, 403, "BLOCKED_BY_USER", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("blocked your company")
    );
    // A test key of the blocked company is refused alike.
    let resp = app.initiate(&a.test_api_key, &body(&a, GB, "test")).await;
    assert_error(resp, 403, "BLOCKED_BY_USER", "error").await;

    // Blocking by PUT: B's pending session leaves the pending list, its new ones are refused.
    let pending_b = app.new_session(&b, GB).await;
    let listed = app
        .listed_ids("/app/verifications?status=pending", &token)
        .await;
    assert_eq!(listed, std::slice::from_ref(&pending_b));
    let resp = app.block_company(&token, &b.id).await;
    assert_eq!(resp.status(), 204);
    // Twice is the same.
    let resp = app.block_company(&token, &b.id).await;
    assert_eq!(resp.status(), 204);
    assert!(
        app.listed_ids("/app/verifications?status=pending", &token)
            .await
            .is_empty()
    );
    let resp = app.initiate(&b.api_key, &body(&b, GB, "blocked")).await;
    assert_error(resp, 403, "BLOCKED_BY_USER", "error").await;
    // The block is the number's: another number is unaffected.
    app.initiate(&b.api_key, &body(&b, GB_2, "elsewhere"))
        .await
        .expect_json(200)
        .await;
    let blocked: Value = app.blocked_companies(&token).await.expect_json(200).await;
    let names: Vec<&str> = blocked["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["companyName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{} Ltd", b.id), format!("{} Ltd", a.id)]);
    assert!(blocked["data"][0]["blockedAt"].as_str().is_some());
    // Another number's holder sees none of them.
    let stranger = app.app_token("stranger", Some(GB_2));
    let theirs: Value = app
        .blocked_companies(&stranger)
        .await
        .expect_json(200)
        .await;
    assert_eq!(theirs["data"], json!([]));

    // Unblocking restores the pending session and lets the company ask again; nothing of the
    // block is kept.
    let resp = app.unblock_company(&token, &b.id).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        app.listed_ids("/app/verifications?status=pending", &token)
            .await,
        [pending_b]
    );
    app.initiate(&b.api_key, &body(&b, GB, "unblocked"))
        .await
        .expect_json(200)
        .await;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use truenumber_entities::number_block;
    let rows = number_block::Entity::find()
        .filter(number_block::Column::MobileNumber.eq(GB))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only A's block is left: {rows:?}");
    assert_eq!(rows[0].company_id, a.id);

    // A token without a number cannot block; an unknown company is not found.
    let unbound = app.unbound_token("holder");
    let resp = app.block_company(&unbound, &a.id).await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    let resp = app.blocked_companies(&unbound).await;
    assert_error(resp, 403, "NUMBER_BINDING_REQUIRED", "error").await;
    let resp = app.block_company(&token, "comp_nobody").await;
    assert_error(resp, 404, "COMPANY_NOT_FOUND", "error").await;
}

#[tokio::test]
async fn countries_are_allowed_and_refused_by_the_numbers_own_region() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let profile: Value = app.company_profile(&c.api_key).await.expect_json(200).await;
    assert_eq!(profile["allowedCountries"], json!([]));
    // Every region until the company chooses.
    for number in [GUERNSEY, CANADA] {
        app.initiate(&c.api_key, &body(&c, number, &unique("r")))
            .await
            .expect_json(200)
            .await;
    }
    let set = |codes: Value| app.company_settings(&c.api_key, json!({ "allowedCountries": codes }));
    let settings: Value = set(json!(["je", "GB", "GB"])).await.expect_json(200).await;
    assert_eq!(settings["allowedCountries"], json!(["GB", "JE"]));
    let profile: Value = app.company_profile(&c.api_key).await.expect_json(200).await;
    assert_eq!(profile["allowedCountries"], json!(["GB", "JE"]));
    // In force at once: GB and Jersey in; Guernsey (+44 too) and Canada out, named.
    for number in [GB, JERSEY] {
        app.initiate(&c.api_key, &body(&c, number, &unique("r")))
            .await
            .expect_json(200)
            .await;
    }
    for (number, region) in [(GUERNSEY, "GG"), (CANADA, "CA")] {
        let resp = app
            .initiate(&c.api_key, &body(&c, number, &unique("r")))
            .await;
        let err = assert_error(resp, 400, "COUNTRY_NOT_ALLOWED", "error").await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(&format!("region {region}")), "{message}");
        assert!(message.contains("GB, JE"), "{message}");
    }
    // A test key obeys the same list, and cannot change it.
    let resp = app
        .initiate(&c.test_api_key, &body(&c, CANADA, &unique("r")))
        .await;
    assert_error(resp, 400, "COUNTRY_NOT_ALLOWED", "error").await;
    let resp = app
        .company_settings(&c.test_api_key, json!({"allowedCountries": []}))
        .await;
    assert_error(resp, 403, "LIVE_MODE_ONLY", "error").await;
    // +1: the US is not Canada.
    set(json!(["US"])).await.expect_json(200).await;
    app.initiate(&c.api_key, &body(&c, US, &unique("r")))
        .await
        .expect_json(200)
        .await;
    let resp = app
        .initiate(&c.api_key, &body(&c, CANADA, &unique("r")))
        .await;
    assert_error(resp, 400, "COUNTRY_NOT_ALLOWED", "error").await;
    // A code that is no region is refused by name, and changes nothing.
    let resp = set(json!(["GB", "UK"])).await;
    let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert!(err["message"].as_str().unwrap().contains("`UK`"), "{err}");
    let profile: Value = app.company_profile(&c.api_key).await.expect_json(200).await;
    assert_eq!(profile["allowedCountries"], json!(["US"]));
    // Empty: every region again.
    set(json!([])).await.expect_json(200).await;
    app.initiate(&c.api_key, &body(&c, CANADA, &unique("r")))
        .await
        .expect_json(200)
        .await;
}

#[tokio::test]
async fn every_refusal_is_counted_in_metrics_and_the_summary() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    set_limits(
        &app,
        &c,
        AbuseLimits {
            initiate_per_number: Some(1),
            deny_cooldown_seconds: Some(3600),
            ..AbuseLimits::default()
        },
    )
    .await;
    // Over the per-number limit.
    app.initiate(&c.api_key, &body(&c, GB, "first"))
        .await
        .expect_json(200)
        .await;
    let resp = app.initiate(&c.api_key, &body(&c, GB, "second")).await;
    assert_error(resp, 429, "NUMBER_RATE_LIMITED", "error").await;
    // Within a cooldown (the number is also at its limit of 1: the cooldown, the more
    // lasting refusal, is the answer).
    let token = app.app_token("holder", Some(GB_2));
    let id = app.new_session(&c, GB_2).await;
    assert_eq!(app.deny(&token, &id, "holder").await.status(), 200);
    let resp = app.initiate(&c.api_key, &body(&c, GB_2, "again")).await;
    assert_error(resp, 403, "RECENTLY_DENIED", "error").await;
    // Blocked.
    let blocker = app.app_token("blocker", Some(JERSEY));
    let resp = app.block_company(&blocker, &c.id).await;
    assert_eq!(resp.status(), 204);
    let resp = app.initiate(&c.api_key, &body(&c, JERSEY, "blocked")).await;
    assert_error(resp, 403, "BLOCKED_BY_USER", "error").await;
    // Outside the countries.
    app.company_settings(&c.api_key, json!({"allowedCountries": ["GB"]}))
        .await
        .expect_json(200)
        .await;
    let resp = app.initiate(&c.api_key, &body(&c, CANADA, "abroad")).await;
    assert_error(resp, 400, "COUNTRY_NOT_ALLOWED", "error").await;

    let metrics = app.get_text("/metrics").await;
    for kind in [
        "number_rate_limited",
        "recently_denied",
        "blocked_by_user",
        "country_not_allowed",
    ] {
        assert_eq!(refused(&metrics, kind), 1, "{kind}: {metrics}");
    }
    let summary: Value = app
        .summarise_verifications(&c.api_key, "")
        .await
        .expect_json(200)
        .await;
    assert_eq!(summary["blocked"], 4, "{summary}");
    assert_eq!(
        summary["blockedByReason"],
        json!({"numberRateLimited": 1, "recentlyDenied": 1, "blockedByUser": 1,
               "countryNotAllowed": 1})
    );
    // The test mode counts its own.
    let test: Value = app
        .summarise_verifications(&c.test_api_key, "")
        .await
        .expect_json(200)
        .await;
    assert_eq!(test["blocked"], 0);
}
