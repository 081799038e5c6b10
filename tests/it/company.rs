//! Company self-service: the profile, API keys with scopes (create, list, roll, revoke),
//! `lastUsedAt` without a write per request, keys of the first form, and tenant isolation on
//! every key id. Run in both modes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use truenumber_core::{companies, companies::secrets};
use truenumber_entities::api_key::{self, KeyMode};

use crate::helpers::{TestApp, TestCompany, assert_error, eventually, unique};

fn key_id(key: &str) -> String {
    secrets::api_key_parts(key)
        .map(|p| p.lookup_id.to_owned())
        .expect("a well-formed key")
}

fn listed<'a>(keys: &'a [Value], id: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["keyId"] == id)
        .unwrap_or_else(|| panic!("{id} not listed in {keys:?}"))
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in metrics"))
}

#[tokio::test]
async fn the_profile_shows_the_company_and_the_limits_in_force() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let resp = app
        .call(reqwest::Method::GET, "/company", &c.api_key, None)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["companyId"], c.id.as_str());
    assert_eq!(body["name"], format!("{} Ltd", c.id).as_str());
    assert_eq!(body["isActive"], true);
    assert!(body.get("webhookUrl").is_none(), "absent, not null: {body}");
    let config = &app.config;
    assert_eq!(
        body["rateLimits"],
        json!({
            "initiatePerHour": config.rate_limit_initiate_per_hour,
            "statusPerHour": config.rate_limit_status_per_hour,
            "submitPerMinute": config.rate_limit_submit_per_minute,
            "initiatePerNumber": config.rate_limit_initiate_per_number,
            "initiatePerNumberWindowSeconds": config.rate_limit_initiate_per_number_window.as_secs(),
        })
    );
    assert_eq!(body["denyCooldownSeconds"], config.deny_cooldown.as_secs());
    assert_eq!(body["allowedCountries"], json!([]));
    assert!(DateTime::parse_from_rfc3339(body["createdAt"].as_str().unwrap()).is_ok());

    // The company's own limits, once the operator sets them.
    companies::set_rate_limits(&app.db, &c.id, Some(7), Some(9))
        .await
        .unwrap();
    let body = app.get_company(&c).await;
    assert_eq!(body["rateLimits"]["initiatePerHour"], 7);
    assert_eq!(body["rateLimits"]["statusPerHour"], 9);
}

#[tokio::test]
async fn scopes_are_enforced_both_ways() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let session = app.new_session(&c, "+447911123456").await;

    let verifications = app
        .create_key(
            &c.api_key,
            json!({"scopes": ["verifications"], "label": "backend"}),
        )
        .await;
    assert_eq!(verifications["scopes"], json!(["verifications"]));
    assert_eq!(verifications["mode"], "live");
    assert_eq!(verifications["label"], "backend");
    let v_key = verifications["apiKey"].as_str().unwrap().to_owned();
    assert!(v_key.starts_with("tn_live_"), "{v_key}");
    assert_eq!(verifications["keyId"], key_id(&v_key).as_str());

    let management = app
        .create_key(&c.api_key, json!({"scopes": ["management"]}))
        .await;
    let m_key = management["apiKey"].as_str().unwrap().to_owned();
    assert!(management.get("label").is_none());

    // A verifications key: the verification endpoints yes, self-service no.
    assert_eq!(app.status(&v_key, &session).await.status().as_u16(), 200);
    let other = TestCompany {
        api_key: v_key.clone(),
        ..c.clone()
    };
    app.initiate_ok(&other, "+447911123457").await;
    for (method, path) in [
        (reqwest::Method::GET, "/company"),
        (reqwest::Method::GET, "/company/api-keys"),
    ] {
        let resp = app.call(method, path, &v_key, None).await;
        let body = assert_error(resp, 403, "INSUFFICIENT_SCOPE", "error").await;
        assert!(
            body["message"].as_str().unwrap().contains("management"),
            "{body}"
        );
    }
    let resp = app
        .call(
            reqwest::Method::POST,
            "/company/api-keys",
            &v_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 403, "INSUFFICIENT_SCOPE", "error").await;

    // A management key: self-service yes, the verification endpoints no.
    // The live and test keys of `company create`, and the two made here.
    assert_eq!(app.list_keys(&m_key).await.len(), 4);
    let resp = app.status(&m_key, &session).await;
    assert_error(resp, 403, "INSUFFICIENT_SCOPE", "error").await;
    let resp = app
        .initiate(
            &m_key,
            &json!({"mobileNumber": "+447911123456", "companyId": c.id, "requestId": unique("r")}),
        )
        .await;
    let body = assert_error(resp, 403, "INSUFFICIENT_SCOPE", "error").await;
    assert!(
        body["message"].as_str().unwrap().contains("verifications"),
        "{body}"
    );

    // The listing never shows a secret, and shows each key's scopes.
    let keys = app.list_keys(&c.api_key).await;
    let text = serde_json::to_string(&keys).unwrap();
    for key in [&c.api_key, &v_key, &m_key] {
        assert!(!text.contains(key.as_str()));
    }
    assert_eq!(
        listed(&keys, &key_id(&c.api_key))["scopes"],
        json!(["verifications", "management"])
    );
    assert_eq!(
        listed(&keys, &key_id(&m_key))["scopes"],
        json!(["management"])
    );
}

#[tokio::test]
async fn bad_key_requests_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    for (body, field) in [
        (json!({"scopes": []}), "scopes"),
        (json!({"scopes": ["admin"]}), "scopes"),
        (
            json!({"scopes": ["management", "management", "verifications"]}),
            "scopes",
        ),
        (json!({"label": ""}), "label"),
        (json!({"label": "a\u{202e}b"}), "label"),
        (json!({"label": "x".repeat(256)}), "label"),
        (json!({"mode": "sandbox"}), "mode"),
        (json!({"label": null}), "label"),
        (json!({"scopes": null}), "scopes"),
        (json!([null, null]), "object"),
    ] {
        let resp = app
            .call(
                reqwest::Method::POST,
                "/company/api-keys",
                &c.api_key,
                Some(body.clone()),
            )
            .await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "{body} -> {err}"
        );
    }
    let id = key_id(&c.api_key);
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{id}/roll"),
            &c.api_key,
            Some(json!({"expiresInSeconds": 604_801})),
        )
        .await;
    let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("expiresInSeconds")
    );
    // Nothing was made by any of them (the live and test keys of `company create` remain).
    assert_eq!(app.list_keys(&c.api_key).await.len(), 2);
}

#[tokio::test]
async fn a_rolled_key_works_until_its_expiry_and_is_refused_after() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let session = app.new_session(&c, "+447911123456").await;
    let labelled = app
        .create_key(
            &c.api_key,
            json!({"scopes": ["verifications"], "label": "billing"}),
        )
        .await;
    let old_key = labelled["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(app.status(&old_key, &session).await.status().as_u16(), 200);

    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{}/roll", key_id(&old_key)),
            &c.api_key,
            Some(json!({"expiresInSeconds": 3})),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let rolled: Value = resp.json().await.unwrap();
    let new_key = rolled["apiKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    // Same mode, scopes and label.
    assert_eq!(rolled["scopes"], json!(["verifications"]));
    assert_eq!(rolled["label"], "billing");
    assert_eq!(rolled["mode"], "live");
    let ends: DateTime<Utc> = rolled["previousKeyExpiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = ends - Utc::now();
    assert!(
        left > chrono::Duration::seconds(1) && left <= chrono::Duration::seconds(3),
        "{left}"
    );

    // Both work during the overlap; the listing shows the old key's end.
    assert_eq!(app.status(&old_key, &session).await.status().as_u16(), 200);
    assert_eq!(app.status(&new_key, &session).await.status().as_u16(), 200);
    let keys = app.list_keys(&c.api_key).await;
    assert_eq!(
        listed(&keys, &key_id(&old_key))["expiresAt"],
        rolled["previousKeyExpiresAt"]
    );
    assert!(listed(&keys, &key_id(&new_key)).get("expiresAt").is_none());

    // After it, the old key is refused (its cached verdict carries the expiry) and the new
    // one still works.
    let refused = eventually(Duration::from_secs(10), || async {
        let resp = app.status(&old_key, &session).await;
        (resp.status().as_u16() == 401).then_some(resp)
    })
    .await;
    assert!(Utc::now() >= ends);
    assert_error(refused, 401, "UNAUTHORIZED", "error").await;
    assert_eq!(app.status(&new_key, &session).await.status().as_u16(), 200);

    // An expired key cannot be rolled again; a roll with 0 stops the old key at once.
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{}/roll", key_id(&old_key)),
            &c.api_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 409, "API_KEY_REVOKED", "error").await;
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{}/roll", key_id(&new_key)),
            &c.api_key,
            Some(json!({"expiresInSeconds": 0})),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 201);
    let newest: Value = resp.json().await.unwrap();
    let resp = app.status(&new_key, &session).await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    let newest_key = newest["apiKey"].as_str().unwrap();
    assert_eq!(
        app.status(newest_key, &session).await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_and_cannot_be_rolled() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let session = app.new_session(&c, "+447911123456").await;
    let spare = app.create_key(&c.api_key, json!({})).await;
    let spare_key = spare["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(
        app.status(&spare_key, &session).await.status().as_u16(),
        200
    );

    let path = format!("/company/api-keys/{}", key_id(&spare_key));
    let resp = app
        .call(reqwest::Method::DELETE, &path, &c.api_key, None)
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = app.status(&spare_key, &session).await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    // Again: still 204, and the revocation time does not move.
    let before = listed(&app.list_keys(&c.api_key).await, &key_id(&spare_key))["revokedAt"].clone();
    assert!(before.is_string());
    let resp = app
        .call(reqwest::Method::DELETE, &path, &c.api_key, None)
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    let after = listed(&app.list_keys(&c.api_key).await, &key_id(&spare_key))["revokedAt"].clone();
    assert_eq!(before, after);
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/roll"),
            &c.api_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 409, "API_KEY_REVOKED", "error").await;

    // A key may revoke itself; the next request with it is refused.
    let resp = app
        .call(
            reqwest::Method::DELETE,
            &format!("/company/api-keys/{}", key_id(&c.api_key)),
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    let resp = app
        .call(reqwest::Method::GET, "/company", &c.api_key, None)
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_two_nodes_within_the_cache_ttl() {
    let first = TestApp::spawn_with(|env| {
        env.insert("API_KEY_CACHE_TTL_SECONDS".into(), "2".into());
    })
    .await;
    let second = TestApp::spawn_config(first.config.clone()).await;
    let c = first.create_company(&unique("c")).await;
    let session = first.new_session(&c, "+447911123456").await;
    let spare = first.create_key(&c.api_key, json!({})).await;
    let spare_key = spare["apiKey"].as_str().unwrap().to_owned();
    // Both nodes have verified (and cached) the key.
    for node in [&first, &second] {
        assert_eq!(
            node.status(&spare_key, &session).await.status().as_u16(),
            200
        );
    }
    let resp = first
        .call(
            reqwest::Method::DELETE,
            &format!("/company/api-keys/{}", key_id(&spare_key)),
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    // The node that revoked it refuses it at once; the other once its cached verdict is
    // older than the TTL (2 s here; the default would outlast the 10 s this test waits).
    let resp = first.status(&spare_key, &session).await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    let resp = eventually(Duration::from_secs(10), || async {
        let resp = second.status(&spare_key, &session).await;
        (resp.status().as_u16() == 401).then_some(resp)
    })
    .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
}

#[tokio::test]
async fn last_used_at_moves_without_a_write_per_request() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let session = app.new_session(&c, "+447911123456").await;
    let first_use = eventually(Duration::from_secs(10), || async {
        let keys = app.list_keys(&c.api_key).await;
        listed(&keys, &key_id(&c.api_key))["lastUsedAt"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    for _ in 0..40 {
        assert_eq!(
            app.status(&c.api_key, &session).await.status().as_u16(),
            200
        );
    }
    // 40 status reads and a few listings later: still the one write of the first use.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = app.get_text("/metrics").await;
    assert_eq!(
        counter(&metrics, "truenumber_api_key_last_used_writes_total"),
        1,
        "one write for the key's first use, none for the requests after it"
    );
    let keys = app.list_keys(&c.api_key).await;
    assert_eq!(
        listed(&keys, &key_id(&c.api_key))["lastUsedAt"],
        first_use.as_str()
    );
    // A key never used has no lastUsedAt.
    let unused = app.create_key(&c.api_key, json!({})).await;
    let keys = app.list_keys(&c.api_key).await;
    assert!(
        listed(&keys, unused["keyId"].as_str().unwrap())
            .get("lastUsedAt")
            .is_none()
    );
}

#[tokio::test]
async fn another_companys_key_is_not_found_like_an_unknown_one() {
    let app = TestApp::spawn().await;
    let a = app.create_company(&unique("a")).await;
    let b = app.create_company(&unique("b")).await;
    let b_id = key_id(&b.api_key);
    let mut messages = Vec::new();
    for id in [b_id.as_str(), "ffffffffffffffff"] {
        let resp = app
            .call(
                reqwest::Method::DELETE,
                &format!("/company/api-keys/{id}"),
                &a.api_key,
                None,
            )
            .await;
        let body = assert_error(resp, 404, "API_KEY_NOT_FOUND", "error").await;
        messages.push(body["message"].clone());
        let resp = app
            .call(
                reqwest::Method::POST,
                &format!("/company/api-keys/{id}/roll"),
                &a.api_key,
                Some(json!({})),
            )
            .await;
        let body = assert_error(resp, 404, "API_KEY_NOT_FOUND", "error").await;
        messages.push(body["message"].clone());
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    // B's key still works and A's listing has only A's keys.
    let session = app.new_session(&b, "+447911123456").await;
    assert_eq!(
        app.status(&b.api_key, &session).await.status().as_u16(),
        200
    );
    let keys = app.list_keys(&a.api_key).await;
    assert_eq!(keys.len(), 2, "A's live and test keys");
    listed(&keys, &key_id(&a.api_key));
    listed(&keys, &key_id(&a.test_api_key));
}

#[tokio::test]
async fn keys_of_the_first_form_keep_working_as_live_keys_with_both_scopes() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    // A key as issued before modes and scopes: `tn_<keyId>_<secret>`, its row with the
    // defaults the migration gave every existing key.
    let made = secrets::new_api_key(KeyMode::Live).unwrap();
    let live = made.key.expose();
    let old_form = live.replacen("tn_live_", "tn_", 1);
    api_key::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        company_id: Set(c.id.clone()),
        lookup_id: Set(made.lookup_id.clone()),
        key_hash: Set(secrets::hash_api_key(&old_form).unwrap()),
        secret_check: Set(Some(secrets::secret_check(&old_form))),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        mode: Set(KeyMode::Live),
        scope_verifications: Set(true),
        scope_management: Set(true),
        label: Set(None),
        expires_at: Set(None),
    }
    .insert(&app.db)
    .await
    .unwrap();
    let session = app.new_session(&c, "+447911123456").await;
    assert_eq!(app.status(&old_form, &session).await.status().as_u16(), 200);
    assert_eq!(
        app.get_company(&TestCompany {
            api_key: old_form.clone(),
            ..c.clone()
        })
        .await["companyId"],
        c.id.as_str()
    );
    // The same key id under a mode prefix is another key: refused.
    let resp = app
        .status(&old_form.replacen("tn_", "tn_live_", 1), &session)
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
    let resp = app
        .status(&old_form.replacen("tn_", "tn_test_", 1), &session)
        .await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
}

#[tokio::test]
async fn a_company_holds_at_most_fifty_usable_keys() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    // Beside the live and test keys of `company create`, 47 more usable keys, written
    // directly (argon2 for each would only slow the test), one revoked and one expired key
    // that do not count.
    let hash = secrets::hash_api_key("tn_live_0000000000000000_x").unwrap();
    for i in 0..49 {
        let made = secrets::new_api_key(KeyMode::Live).unwrap();
        api_key::ActiveModel {
            id: Set(uuid::Uuid::new_v4()),
            company_id: Set(c.id.clone()),
            lookup_id: Set(made.lookup_id),
            key_hash: Set(hash.clone()),
            secret_check: Set(None),
            created_at: Set(Utc::now()),
            last_used_at: Set(None),
            revoked_at: Set((i == 47).then(Utc::now)),
            mode: Set(KeyMode::Live),
            scope_verifications: Set(true),
            scope_management: Set(true),
            label: Set(None),
            expires_at: Set((i == 48).then(|| Utc::now() - chrono::Duration::seconds(1))),
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    // 49 usable: one more is allowed, the next is refused.
    app.create_key(&c.api_key, json!({})).await;
    let resp = app
        .call(
            reqwest::Method::POST,
            "/company/api-keys",
            &c.api_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 409, "API_KEY_LIMIT_REACHED", "error").await;
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{}/roll", key_id(&c.api_key)),
            &c.api_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 409, "API_KEY_LIMIT_REACHED", "error").await;
    assert_eq!(app.list_keys(&c.api_key).await.len(), 52);
}

#[tokio::test]
async fn concurrent_key_creates_end_with_exactly_the_budget() {
    // Read-count-then-insert let 60 concurrent creates pass the budget (55 usable keys were
    // seen); the budget is now one statement under the company's row lock. All 60 are
    // admitted at once (each hashes its key first, off the async threads), so they reach the
    // database together.
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_CONCURRENT_REQUESTS".into(), "64".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let (app_ref, key) = (&app, c.api_key.as_str());
    let statuses: Vec<u16> = futures::future::join_all((0..60).map(|i| async move {
        app_ref
            .call(
                reqwest::Method::POST,
                "/company/api-keys",
                key,
                Some(json!({"label": format!("racer {i}")})),
            )
            .await
            .status()
            .as_u16()
    }))
    .await;
    // The live and test keys of `company create` leave room for 48.
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, refused), (48, 12), "{statuses:?}");
    let keys = app.list_keys(&c.api_key).await;
    assert_eq!(keys.len(), 50);
    // A roll needs a slot beside the key it replaces: refused at the budget.
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!("/company/api-keys/{}/roll", key_id(&c.api_key)),
            &c.api_key,
            Some(json!({})),
        )
        .await;
    assert_error(resp, 409, "API_KEY_LIMIT_REACHED", "error").await;
}

#[tokio::test]
async fn webhook_urls_are_refused_at_registration_for_every_ssrf_class() {
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_ALLOW_PRIVATE_NETWORKS".into(), "false".into());
    })
    .await;
    let c = app.create_company(&unique("c")).await;
    let put = |url: &str| {
        app.call(
            reqwest::Method::PUT,
            "/company/webhook",
            &c.api_key,
            Some(json!({ "url": url })),
        )
    };
    for (url, why) in [
        ("http://127.0.0.1/hook", "127.0.0.1"),       // loopback
        ("http://localhost:8080/hook", "non-public"), // loopback, after DNS
        ("http://10.1.2.3/hook", "10.1.2.3"),         // private
        ("http://172.16.0.1/hook", "172.16.0.1"),     // private
        ("http://192.168.1.1/hook", "192.168.1.1"),   // private
        ("http://169.254.169.254/latest", "169.254.169.254"), // link-local (cloud metadata)
        ("http://224.0.0.1/hook", "224.0.0.1"),       // multicast
        ("http://0.0.0.0/hook", "0.0.0.0"),           // unspecified
        ("http://[::1]/hook", "::1"),                 // IPv6 loopback
        ("http://[fd00::1]/hook", "fd00::1"),         // unique local
        ("http://[::ffff:127.0.0.1]/hook", "127.0.0.1"), // IPv4-mapped IPv6
        ("http://2130706433/hook", "127.0.0.1"),      // decimal
        ("http://127.1/hook", "127.0.0.1"),           // short form
        ("http://0x7f.0.0.1/hook", "127.0.0.1"),      // hex
        ("ftp://example.com/hook", "http or https"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("not a url", "not a URL"),
    ] {
        let resp = put(url).await;
        let body = assert_error(resp, 400, "INVALID_WEBHOOK_URL", "error").await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{url}: {message}");
    }
    // Nothing was stored by any of them.
    assert!(app.get_company(&c).await.get("webhookUrl").is_none());

    // A public address is accepted, stored normalised, shown, and removed again.
    let resp = put("HTTPS://93.184.216.34:8443/hooks?x=1").await;
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["webhookUrl"], "https://93.184.216.34:8443/hooks?x=1");
    assert_eq!(
        app.get_company(&c).await["webhookUrl"],
        "https://93.184.216.34:8443/hooks?x=1"
    );
    let resp = app
        .call(
            reqwest::Method::DELETE,
            "/company/webhook",
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 204);
    assert!(app.get_company(&c).await.get("webhookUrl").is_none());
}

/// Verifies a received webhook with an independent Standard Webhooks implementation.
fn accepts(secret: &str, r: &crate::helpers::Received) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(r.body.as_bytes(), &r.headers)
        .is_ok()
}

#[tokio::test]
async fn during_a_rotation_receivers_on_either_secret_accept_and_after_it_only_the_new() {
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_SECRET_OVERLAP_SECONDS".into(), "8".into());
    })
    .await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let token = app.app_token("app_user_1", Some("+447911123456"));
    let verify = |id: String| {
        let token = token.clone();
        let app = &app;
        async move {
            let resp = app
                .submit(
                    &token,
                    &json!({"verificationId": id, "userConfirmedNumber": "+447911123456", "appUserId": "app_user_1"}),
                )
                .await;
            assert_eq!(resp.status().as_u16(), 200);
        }
    };
    let old_secret = c.webhook_secret.clone();

    let resp = app
        .call(
            reqwest::Method::POST,
            "/company/webhook/secret/rotate",
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let rotated: Value = resp.json().await.unwrap();
    let new_secret = rotated["webhookSecret"].as_str().unwrap().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    let until: DateTime<Utc> = rotated["previousSecretExpiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // During the overlap: two signatures, and a receiver holding only the old secret and one
    // holding only the new one both accept the same delivery.
    verify(app.new_session(&c, "+447911123456").await).await;
    let during = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert!(Utc::now() < until, "the delivery came within the overlap");
    let signature = during[0].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert!(accepts(&old_secret, &during[0]), "old secret");
    assert!(accepts(&new_secret, &during[0]), "new secret");

    // After it: one signature, the new secret's.
    tokio::time::sleep((until - Utc::now()).to_std().unwrap_or_default()).await;
    verify(app.new_session(&c, "+447911123456").await).await;
    let after = receiver.wait_for(2, Duration::from_secs(20)).await;
    let last = &after[1];
    assert_eq!(
        last.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert!(accepts(&new_secret, last));
    assert!(!accepts(&old_secret, last));

    // Rotating twice within an overlap keeps only the secret being replaced: the first one
    // no longer signs.
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let resp = app
            .call(
                reqwest::Method::POST,
                "/company/webhook/secret/rotate",
                &c.api_key,
                None,
            )
            .await;
        let body: Value = resp.json().await.unwrap();
        secrets.push(body["webhookSecret"].as_str().unwrap().to_owned());
    }
    verify(app.new_session(&c, "+447911123456").await).await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let third = &got[2];
    assert!(accepts(&secrets[1], third), "the newest");
    assert!(accepts(&secrets[0], third), "the one it replaced");
    assert!(
        !accepts(&new_secret, third),
        "the one before that is dropped"
    );
    worker.stop().await;
}

#[tokio::test]
async fn deliveries_are_paged_newest_first_without_skips_or_repeats_and_isolated() {
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let id = app.verified_session(&c, "+447911123456").await;
        app.finished_delivery(&c.api_key, &id).await;
        sessions.push(id);
    }

    // Pages of 2, with a new delivery arriving between pages: the pages hold exactly the
    // first five, newest first, and the last page says so with a null cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let page = app.deliveries_page(&c.api_key, &query).await;
        pages += 1;
        for d in page["data"].as_array().unwrap() {
            seen.push(d["verificationId"].as_str().unwrap().to_owned());
        }
        if pages == 1 {
            let newer = app.verified_session(&c, "+447911123456").await;
            app.finished_delivery(&c.api_key, &newer).await;
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["nextCursor"].is_null(), "null, not absent: {page}");
                break;
            }
        }
    }
    let mut expected = sessions.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // One delivery with its attempts.
    let first = app.finished_delivery(&c.api_key, &sessions[0]).await;
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["event"], "verification.completed");
    assert_eq!(first["attempts"], 1);
    assert!(first.get("nextAttemptAt").is_none());
    let id = first["deliveryId"].as_str().unwrap();
    let resp = app
        .call(
            reqwest::Method::GET,
            &format!("/company/deliveries/{id}"),
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let detail: Value = resp.json().await.unwrap();
    assert_eq!(detail["eventId"], first["eventId"]);
    let log = detail["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["statusCode"], 200);
    assert!(log[0].get("error").is_none());

    // Filters and bad parameters.
    let failed = app.deliveries_page(&c.api_key, "status=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 0);
    for query in ["limit=0", "limit=101", "cursor=nonsense", "status=lost"] {
        let resp = app
            .call(
                reqwest::Method::GET,
                &format!("/company/deliveries?{query}"),
                &c.api_key,
                None,
            )
            .await;
        assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    }

    // Another company sees none of them, and its requests for one are an unknown id's 404.
    let other = app.create_company(&unique("other")).await;
    let theirs = app.deliveries_page(&other.api_key, "").await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    assert!(theirs["nextCursor"].is_null());
    let mut bodies = Vec::new();
    for target in [id.to_owned(), uuid::Uuid::new_v4().to_string()] {
        for (method, path) in [
            (
                reqwest::Method::GET,
                format!("/company/deliveries/{target}"),
            ),
            (
                reqwest::Method::POST,
                format!("/company/deliveries/{target}/redeliver"),
            ),
        ] {
            let resp = app.call(method, &path, &other.api_key, None).await;
            let body = assert_error(resp, 404, "DELIVERY_NOT_FOUND", "error").await;
            bodies.push(body["message"].clone());
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    let resp = app
        .call(
            reqwest::Method::GET,
            "/company/deliveries/not-a-uuid",
            &c.api_key,
            None,
        )
        .await;
    assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    worker.stop().await;
}

#[tokio::test]
async fn redeliver_keeps_the_webhook_id_and_recover_takes_exactly_the_failed_ones_in_the_window() {
    use crate::helpers::Reply;
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn_with(|env| {
        // A 500 is retried an hour later: that delivery stays pending through the test.
        env.insert("WEBHOOK_RETRY_SCHEDULE".into(), "3600".into());
    })
    .await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    // 410 stops a delivery at once: A and B fail, C succeeds, D waits for its retry.
    receiver.script(&[
        Reply::Status(410),
        Reply::Status(410),
        Reply::Status(200),
        Reply::Status(500),
    ]);
    let a = app.verified_session(&c, "+447911123456").await;
    let a_delivery = app.finished_delivery(&c.api_key, &a).await;
    assert_eq!(a_delivery["status"], "failed");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let window_start = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = app.verified_session(&c, "+447911123456").await;
    assert_eq!(
        app.finished_delivery(&c.api_key, &b).await["status"],
        "failed"
    );
    let cs = app.verified_session(&c, "+447911123456").await;
    let c_delivery = app.finished_delivery(&c.api_key, &cs).await;
    assert_eq!(c_delivery["status"], "succeeded");
    let d = app.verified_session(&c, "+447911123456").await;
    let d_delivery = eventually(Duration::from_secs(20), || async {
        app.deliveries_page(&c.api_key, "status=pending").await["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["verificationId"] == d.as_str() && x["attempts"] == 1)
            .cloned()
    })
    .await;
    assert!(d_delivery["nextAttemptAt"].is_string());
    assert_eq!(receiver.received().len(), 4);

    // A pending delivery cannot be redelivered.
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!(
                "/company/deliveries/{}/redeliver",
                d_delivery["deliveryId"].as_str().unwrap()
            ),
            &c.api_key,
            None,
        )
        .await;
    assert_error(resp, 409, "DELIVERY_IN_PROGRESS", "error").await;

    // Redelivering A sends the same webhook-id again, with a fresh schedule.
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!(
                "/company/deliveries/{}/redeliver",
                a_delivery["deliveryId"].as_str().unwrap()
            ),
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["eventId"], a_delivery["eventId"]);
    let got = receiver.wait_for(5, Duration::from_secs(20)).await;
    assert_eq!(
        got[4].headers["webhook-id"].to_str().unwrap(),
        a_delivery["eventId"].as_str().unwrap()
    );
    let a_again = eventually(Duration::from_secs(20), || async {
        let d = app.finished_delivery(&c.api_key, &a).await;
        (d["attempts"] == 2).then_some(d)
    })
    .await;
    assert_eq!(a_again["status"], "succeeded");

    // Recover from just after A was made: only B is failed in that window.
    let recover = |since: DateTime<Utc>| {
        app.call(
            reqwest::Method::POST,
            "/company/deliveries/recover",
            &c.api_key,
            Some(json!({"since": since.to_rfc3339()})),
        )
    };
    let resp = recover(window_start).await;
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["count"], 1);
    let got = receiver.wait_for(6, Duration::from_secs(20)).await;
    let b_event = app.finished_delivery(&c.api_key, &b).await["eventId"].clone();
    assert_eq!(
        got[5].headers["webhook-id"].to_str().unwrap(),
        b_event.as_str().unwrap()
    );
    // Nothing failed is left.
    let resp = recover(window_start - chrono::Duration::hours(1)).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["count"], 0);

    // The window's bounds.
    for (body, field) in [
        (
            json!({"since": (Utc::now() - chrono::Duration::days(15)).to_rfc3339()}),
            "since",
        ),
        (
            json!({"since": Utc::now().to_rfc3339(), "until": (Utc::now() - chrono::Duration::hours(1)).to_rfc3339()}),
            "until",
        ),
        (json!({"since": "yesterday"}), "since"),
        (
            json!({"since": Utc::now().to_rfc3339(), "until": null}),
            "until",
        ),
    ] {
        let resp = app
            .call(
                reqwest::Method::POST,
                "/company/deliveries/recover",
                &c.api_key,
                Some(body.clone()),
            )
            .await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "{body}: {err}"
        );
    }
    worker.stop().await;
}

#[tokio::test]
async fn a_test_event_is_signed_delivered_and_listed_and_needs_a_url() {
    let receiver = crate::helpers::TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let bare = app.create_company(&unique("bare")).await;
    let resp = app
        .call(
            reqwest::Method::POST,
            "/company/webhook/test",
            &bare.api_key,
            None,
        )
        .await;
    assert_error(resp, 409, "WEBHOOK_NOT_CONFIGURED", "error").await;

    let c = app
        .create_company_with_webhook(&unique("c"), Some(&receiver.url))
        .await;
    let resp = app
        .call(
            reqwest::Method::POST,
            "/company/webhook/test",
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let sent: Value = resp.json().await.unwrap();
    let event_id = sent["eventId"].as_str().unwrap().to_owned();
    assert!(event_id.starts_with("evt_"));

    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert!(accepts(&c.webhook_secret, &got[0]));
    assert_eq!(got[0].headers["webhook-id"].to_str().unwrap(), event_id);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["companyId", "event", "livemode", "timestamp"]);
    assert_eq!(body["event"], "webhook.test");
    assert_eq!(body["companyId"], c.id.as_str());
    assert_eq!(body["livemode"], true);
    assert!(DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());

    // Listed among the deliveries, succeeded, with no verification.
    let listed = eventually(Duration::from_secs(20), || async {
        app.deliveries_page(&c.api_key, "").await["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["eventId"] == event_id.as_str() && d["status"] == "succeeded")
            .cloned()
    })
    .await;
    assert_eq!(listed["deliveryId"], sent["deliveryId"]);
    assert_eq!(listed["event"], "webhook.test");
    assert!(listed.get("verificationId").is_none(), "{listed}");
    // And it can be redelivered like any other, with the same webhook-id.
    let resp = app
        .call(
            reqwest::Method::POST,
            &format!(
                "/company/deliveries/{}/redeliver",
                sent["deliveryId"].as_str().unwrap()
            ),
            &c.api_key,
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    let again = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(again[1].headers["webhook-id"].to_str().unwrap(), event_id);
    worker.stop().await;
}
