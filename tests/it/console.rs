//! The company console over HTTP, in both modes: sign-in links are single-use and bound to
//! their company, the cookie and headers are as the contract says, a page without a session
//! redirects, a forged form is refused, and another company's (or mode's) ids are 404.
//! (The pages themselves, clicked through in a real browser: `console_browser`.)

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{NUMBER, TestApp, TestCompany, cli_json, header, unique};

/// Opens a link for `company` (its live key) and returns the session cookie's value.
async fn sign_in(app: &TestApp, company: &TestCompany) -> String {
    let link: Value = app
        .console_link(&company.api_key)
        .await
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap();
    let path = url.split_once("/console/").unwrap().1;
    let resp = app
        .client
        .get(app.url(&format!("/console/{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&resp, "location"), "/console");
    let cookie = header(&resp, "set-cookie");
    cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("tn_console=")
        .unwrap()
        .to_owned()
}

async fn get(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("cookie", format!("tn_console={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .request(Method::POST, app.url(path))
        .header("cookie", format!("tn_console={cookie}"))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The CSRF token of a page's forms.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_link_signs_in_once_and_sets_a_strict_cookie() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let resp = app.console_link(&c.api_key).await;
    assert_eq!(resp.status(), 201);
    let link: Value = resp.json().await.unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://localhost:3000/console/sign-in?token="),
        "{url}"
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(link["expiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        ttl > chrono::Duration::minutes(9) && ttl <= chrono::Duration::minutes(10),
        "{ttl}"
    );
    let path = format!("/console/{}", url.split_once("/console/").unwrap().1);

    let first = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let cookie = header(&first, "set-cookie");
    for part in [
        "tn_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "served over http: {cookie}");
    // The link works once.
    let again = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.headers().get("set-cookie").is_none());
    assert!(again.text().await.unwrap().contains("was used already"));
    // A made-up token and no token are the same refusal.
    for bad in ["/console/sign-in?token=nope", "/console/sign-in"] {
        assert_eq!(
            app.client.get(app.url(bad)).send().await.unwrap().status(),
            401
        );
    }
}

#[tokio::test]
async fn a_session_ends_after_an_idle_hour_or_twelve_hours_in_all() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let age = |column: &'static str, by: chrono::Duration| {
        let db = app.db.clone();
        let id = c.id.clone();
        async move {
            let at = chrono::Utc::now() - by;
            db.execute_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                format!("UPDATE console_sessions SET {column} = $1 WHERE company_id = $2"),
                [at.into(), id.into()],
            ))
            .await
            .unwrap();
        }
    };
    // Used 59 minutes ago: still open (and the use restarts the idle clock).
    let cookie = sign_in(&app, &c).await;
    age("last_seen_at", chrono::Duration::minutes(59)).await;
    assert_eq!(get(&app, &cookie, "/console").await.status(), 200);
    assert_eq!(get(&app, &cookie, "/console").await.status(), 200);
    // Idle for an hour: over.
    age("last_seen_at", chrono::Duration::minutes(61)).await;
    assert_eq!(get(&app, &cookie, "/console").await.status(), 303);
    // Busy, but past its lifetime: over.
    let cookie = sign_in(&app, &c).await;
    age("expires_at", chrono::Duration::seconds(1)).await;
    assert_eq!(get(&app, &cookie, "/console").await.status(), 303);
    // A link past its ten minutes opens nothing.
    let link: Value = app.console_link(&c.api_key).await.json().await.unwrap();
    app.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "UPDATE console_links SET expires_at = $1 WHERE company_id = $2 AND used_at IS NULL",
            [chrono::Utc::now().into(), c.id.as_str().into()],
        ))
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap();
    let path = format!("/console/{}", url.split_once("/console/").unwrap().1);
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_needs_a_session() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let cookie = sign_in(&app, &c).await;
    for path in [
        "/console",
        "/console/verifications",
        "/console/webhooks",
        "/console/api-keys",
        "/console/settings",
    ] {
        let page = get(&app, &cookie, path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        let csp = header(&page, "content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("script-src"), "no script may run: {csp}");
        assert_eq!(header(&page, "referrer-policy"), "no-referrer");
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert_eq!(header(&page, "cache-control"), "no-store");
        let html = page.text().await.unwrap();
        assert!(!html.contains("<script"), "{path} has a script");
        // Without a session (no cookie, or a made-up one) the page redirects to the sign-in help.
        for cookie in ["", "made-up"] {
            let anonymous = get(&app, cookie, path).await;
            assert_eq!(anonymous.status(), 303, "{path}");
            assert_eq!(header(&anonymous, "location"), "/console/signed-out");
        }
    }
    let help = app
        .client
        .get(app.url("/console/signed-out"))
        .send()
        .await
        .unwrap();
    assert_eq!(help.status(), 200);
    assert!(help.text().await.unwrap().contains("console-links"));
    // `/` names both the API document and the console.
    let root = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(header(&root, "location"), "/docs");
    assert!(root.text().await.unwrap().contains("/console"));
}

#[tokio::test]
async fn a_forged_form_is_refused_and_sign_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let cookie = sign_in(&app, &c).await;
    let html = get(&app, &cookie, "/console/settings")
        .await
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&html);

    // Without the token, or with another, nothing changes.
    for forged in ["", "forged-token"] {
        let resp = post_form(
            &app,
            &cookie,
            "/console/settings/countries",
            &[("csrf", forged), ("countries", "GB")],
        )
        .await;
        assert_eq!(resp.status(), 403);
        assert!(resp.text().await.unwrap().contains("CSRF"));
    }
    let profile: Value = app.company_profile(&c.api_key).await.json().await.unwrap();
    assert_eq!(profile["allowedCountries"], json!([]));

    // With it, the change is the API's: the same rule refuses an unknown code, same message.
    let refused = post_form(
        &app,
        &cookie,
        "/console/settings/countries",
        &[("csrf", &csrf), ("countries", "GB, XX")],
    )
    .await;
    assert_eq!(refused.status(), 400);
    let api = app
        .company_settings(&c.api_key, json!({"allowedCountries": ["GB", "XX"]}))
        .await;
    let api_message = api.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = refused.text().await.unwrap();
    assert!(page.contains("INVALID_REQUEST"), "{page}");
    assert!(
        page.contains(&api_message),
        "the API's message: {api_message}"
    );
    let saved = post_form(
        &app,
        &cookie,
        "/console/settings/countries",
        &[("csrf", &csrf), ("countries", "gb je")],
    )
    .await;
    assert_eq!(saved.status(), 200);
    let profile: Value = app.company_profile(&c.api_key).await.json().await.unwrap();
    assert_eq!(profile["allowedCountries"], json!(["GB", "JE"]));

    // Sign-out needs the token too; then the cookie opens nothing.
    assert_eq!(
        post_form(&app, &cookie, "/console/sign-out", &[])
            .await
            .status(),
        403
    );
    let out = post_form(&app, &cookie, "/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert!(header(&out, "set-cookie").contains("Max-Age=0"));
    assert_eq!(get(&app, &cookie, "/console").await.status(), 303);
}

#[tokio::test]
async fn another_companys_or_modes_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let mine = app.create_company(&unique("c")).await;
    let theirs = app.create_company(&unique("c")).await;
    let cookie = sign_in(&app, &mine).await;
    let their_session = app.new_session(&theirs, NUMBER).await;
    let my_live = app.new_session(&mine, NUMBER).await;

    let page = get(
        &app,
        &cookie,
        &format!("/console/verifications/{their_session}"),
    )
    .await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("SESSION_NOT_FOUND"));
    let own = get(&app, &cookie, &format!("/console/verifications/{my_live}")).await;
    assert_eq!(own.status(), 200);
    let html = own.text().await.unwrap();
    assert!(html.contains(NUMBER), "the session's page shows its number");
    let csrf = csrf_of(&html);

    // Erasing theirs is a 404 and leaves it; their delivery and key ids are not found either.
    let erase = post_form(
        &app,
        &cookie,
        &format!("/console/verifications/{their_session}/erase"),
        &[("csrf", &csrf), ("confirm", "yes")],
    )
    .await;
    assert_eq!(erase.status(), 404);
    assert_eq!(
        app.status(&theirs.api_key, &their_session).await.status(),
        200
    );
    let their_key = app.list_keys(&theirs.api_key).await[0]["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = post_form(
        &app,
        &cookie,
        &format!("/console/api-keys/{their_key}/revoke"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(revoke.status(), 404);
    assert!(revoke.text().await.unwrap().contains("API_KEY_NOT_FOUND"));
    assert_eq!(app.company_profile(&theirs.api_key).await.status(), 200);
    let redeliver = post_form(
        &app,
        &cookie,
        &format!(
            "/console/webhooks/deliveries/{}/redeliver",
            uuid::Uuid::new_v4()
        ),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(redeliver.status(), 404);

    // In test mode the live session is not found, and a live one cannot be completed.
    let switched = post_form(
        &app,
        &cookie,
        "/console/mode",
        &[("csrf", &csrf), ("live", "false")],
    )
    .await;
    assert_eq!(switched.status(), 303);
    let page = get(&app, &cookie, "/console").await.text().await.unwrap();
    assert!(page.contains("Test mode"));
    assert_eq!(
        get(&app, &cookie, &format!("/console/verifications/{my_live}"))
            .await
            .status(),
        404
    );
    let test_session = app
        .initiate_ok(
            &TestCompany {
                api_key: mine.test_api_key.clone(),
                ..mine.clone()
            },
            NUMBER,
        )
        .await["verificationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = post_form(
        &app,
        &cookie,
        &format!("/console/verifications/{test_session}/complete"),
        &[("csrf", &csrf), ("outcome", "denied")],
    )
    .await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Completed as denied"));
    let status: Value = app
        .status(&mine.test_api_key, &test_session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "denied");
}

#[tokio::test]
async fn only_a_live_management_key_issues_a_link_and_the_cli_prints_one() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let test = app.console_link(&c.test_api_key).await;
    assert_eq!(test.status(), 403);
    assert_eq!(
        test.json::<Value>().await.unwrap()["code"],
        "LIVE_MODE_ONLY"
    );
    let narrow: Value = app
        .create_key(&c.api_key, json!({"scopes": ["verifications"]}))
        .await;
    let resp = app.console_link(narrow["apiKey"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "INSUFFICIENT_SCOPE"
    );
    assert_eq!(
        app.client
            .post(app.url("/api/v1/company/console-links"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let printed = cli_json(
        &app.config,
        &["company", "console-link", "--company-id", &c.id],
    )
    .await;
    let url = printed["url"].as_str().unwrap();
    let path = format!("/console/{}", url.split_once("/console/").unwrap().1);
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
}
