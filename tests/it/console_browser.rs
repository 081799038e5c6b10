//! The company console in a real browser (headless Chromium over WebDriver), in both modes:
//! every page renders the seeded data, passes axe-core with no serious or critical violation
//! and is screenshotted at desktop and phone width; then one action per page is done through
//! the UI and its effect checked through the API. (Headers, CSRF and isolation over plain
//! HTTP: `console`.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Browser, NUMBER, TestApp, TestCompany, TestReceiver, delivering, eventually, standalone,
};

/// A second region's number, so the country breakdown has two rows.
const US_NUMBER: &str = "+14155552671";

fn mode() -> &'static str {
    if standalone() {
        "standalone"
    } else {
        "production"
    }
}

/// Signs the browser in through a fresh link of `company` and returns to the overview.
async fn sign_in(app: &TestApp, browser: &Browser, company: &TestCompany) -> String {
    let link: Value = app
        .console_link(&company.api_key)
        .await
        .json()
        .await
        .unwrap();
    // The link is built on API_BASE_URL; the test node listens elsewhere.
    let url = link["url"]
        .as_str()
        .unwrap()
        .replace(&app.config.api_base_url, &app.base);
    assert_eq!(browser.open(&url).await, "Overview");
    assert_eq!(browser.path().await, "/console");
    url
}

/// Live sessions of every outcome but failed, in two regions; returns a verified one's id.
async fn seed(app: &TestApp, company: &TestCompany) -> String {
    let verified = app.verified_session(company, NUMBER).await;
    app.verified_session(company, US_NUMBER).await;
    app.verified_session(company, NUMBER).await;
    let denied = app.new_session(company, NUMBER).await;
    let token = app.app_token("app_user_2", Some(NUMBER));
    assert_eq!(app.deny(&token, &denied, "app_user_2").await.status(), 200);
    app.new_session(company, US_NUMBER).await;
    verified
}

/// Sessions of earlier days in two more regions, so the chart and the 30-day numbers show a
/// history (their times are moved back in the database; nothing of today changes).
async fn history(app: &TestApp, company: &TestCompany) {
    use sea_orm::ConnectionTrait;
    for day in 2..=12_i64 {
        for k in 0..(day % 4 + 1) {
            let number = if k % 2 == 0 {
                "+4915123456789"
            } else {
                "+33612345678"
            };
            let id = if k == 3 {
                app.new_session(company, number).await
            } else {
                app.verified_session(company, number).await
            };
            let created = chrono::Utc::now() - chrono::Duration::days(day);
            let done = created + chrono::Duration::seconds(4 + day + k);
            app.db
                .execute_raw(sea_orm::Statement::from_sql_and_values(
                    app.db.get_database_backend(),
                    "UPDATE verification_sessions SET created_at = $1, \
                       verified_at = CASE WHEN verified_at IS NULL THEN NULL ELSE $2 END, \
                       completed_at = CASE WHEN completed_at IS NULL THEN NULL ELSE $2 END, \
                       expires_at = $3 WHERE verification_id = $4",
                    [
                        created.into(),
                        done.into(),
                        (created + chrono::Duration::minutes(10)).into(),
                        id.into(),
                    ],
                ))
                .await
                .unwrap();
        }
    }
}

/// Gives the company a name fit for the screenshots.
async fn rename(app: &TestApp, company: &TestCompany, name: &str) {
    use sea_orm::ConnectionTrait;
    app.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "UPDATE companies SET name = $1 WHERE company_id = $2",
            [name.into(), company.id.as_str().into()],
        ))
        .await
        .unwrap();
}

async fn check_page(browser: &Browser, base: &str, name: &str, path: &str, h1: &str) {
    assert_eq!(browser.open(&format!("{base}{path}")).await, h1, "{path}");
    let violations = browser.serious_violations().await;
    assert!(violations.is_empty(), "{path}: {violations:#?}");
    browser
        .screenshot(&format!("{}-{name}-desktop", mode()), 1280, 1400)
        .await;
    browser
        .screenshot(&format!("{}-{name}-phone", mode()), 390, 844)
        .await;
    // At phone width nothing is wider than the screen but the tables' own scroll boxes.
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    if overflow != json!(false) {
        let wide = browser
            .client
            .execute(
                "return [...document.querySelectorAll('body *')].filter(e => \
                 e.scrollWidth > e.clientWidth + 1 && \
                 getComputedStyle(e).overflowX === 'visible').slice(-3) \
                 .map(e => e.outerHTML.slice(0, 160));",
                vec![],
            )
            .await
            .unwrap();
        panic!("{path} scrolls sideways at phone width: {wide:#}");
    }
    browser.client.set_window_size(1280, 900).await.unwrap();
}

#[tokio::test]
async fn every_console_page_renders_passes_axe_and_is_screenshotted() {
    let (app, receiver, worker, company) = delivering().await;
    let verified = seed(&app, &company).await;
    history(&app, &company).await;
    rename(&app, &company, "Acme Shop").await;
    // The webhooks of today's three verified sessions and the denied one, and of the history.
    receiver.wait_for(4 + 25, Duration::from_secs(60)).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    sign_in(&app, &browser, &company).await;

    // The overview shows the seeded numbers: 5 sessions today, 3 of the 4 finished verified.
    let today = browser.text("section[aria-label='Last 24 hours']").await;
    assert!(today.contains("Sessions\n5"), "{today}");
    assert!(today.contains("75.0%"), "{today}");
    browser.find("svg[role='img'] desc").await;
    let countries = browser
        .text("section[aria-labelledby='countries-title'] table")
        .await;
    // +447911… is Guernsey's, by libphonenumber.
    assert!(
        countries.contains("GG 3 2 66.7%") && countries.contains("US 2 1 100.0%"),
        "{countries}"
    );

    let base = app.base.clone();
    check_page(&browser, &base, "overview", "/console", "Overview").await;
    check_page(
        &browser,
        &base,
        "verifications",
        "/console/verifications",
        "Verifications",
    )
    .await;
    // 33 sessions: a full page of 25, and the rest on the next.
    let rows = browser
        .client
        .find_all(fantoccini::Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 25);
    let next = browser
        .find("a[rel='next']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    browser.open(&format!("{}{next}", app.base)).await;
    let rest = browser
        .client
        .find_all(fantoccini::Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(rest.len(), 8);
    let session_path = format!("/console/verifications/{verified}");
    check_page(
        &browser,
        &base,
        "session",
        &session_path,
        &format!("Verification {verified}"),
    )
    .await;
    let timeline = browser.text("ol.timeline").await;
    assert!(timeline.contains("Completed as verified"), "{timeline}");
    assert!(
        timeline.contains("verification.completed") && timeline.contains("HTTP 200"),
        "{timeline}"
    );
    check_page(&browser, &base, "webhooks", "/console/webhooks", "Webhooks").await;
    assert!(browser.text("table").await.contains("succeeded"));
    check_page(&browser, &base, "api-keys", "/console/api-keys", "API keys").await;
    check_page(&browser, &base, "settings", "/console/settings", "Settings").await;

    // Test mode: a test session's page shows the consent screen.
    browser.click("form.mode button").await;
    assert!(browser.text("p.testbanner").await.contains("Test mode"));
    let test = TestCompany {
        api_key: company.test_api_key.clone(),
        ..company.clone()
    };
    let id = app.new_session(&test, NUMBER).await;
    check_page(
        &browser,
        &base,
        "consent",
        &format!("/console/verifications/{id}"),
        &format!("Verification {id}"),
    )
    .await;
    let consent = browser.text(".consent").await;
    assert!(consent.contains(NUMBER), "{consent}");
    // The consent screen itself, at phone width, as the app would show it.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser
        .client
        .execute(
            "document.getElementById('consent').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    browser
        .screenshot(&format!("{}-consent-screen-phone", mode()), 390, 844)
        .await;
    worker.stop().await;
}

#[tokio::test]
async fn one_action_per_page_through_the_ui() {
    let receiver = TestReceiver::start().await;
    let app = TestApp::spawn().await;
    let worker = crate::helpers::TestWorker::spawn(&app.config).await;
    let company = app.create_company(&crate::helpers::unique("c")).await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let link = sign_in(&app, &browser, &company).await;
    let base = app.base.clone();

    // The keyboard: the first Tab reaches the skip link, Enter on it moves focus to the page's
    // content.
    let focused = |script: &'static str| {
        let client = browser.client.clone();
        async move { client.execute(script, vec![]).await.unwrap() }
    };
    let body = browser.client.active_element().await.unwrap();
    body.send_keys("\u{E004}").await.unwrap();
    assert_eq!(
        focused("return document.activeElement.className;").await,
        json!("skip")
    );
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    assert_eq!(
        focused("return document.activeElement.id;").await,
        json!("main")
    );

    // Webhooks: a refused URL shows the API's refusal; a good one is saved; a test event is
    // delivered and listed with its attempt.
    browser.open(&format!("{base}/console/webhooks")).await;
    browser
        .fill("#w-url", "https://user:secret@example.com/hook")
        .await;
    browser.click("button[value='set']").await;
    let refused = browser.text(".notice.error").await;
    assert!(refused.contains("INVALID_WEBHOOK_URL"), "{refused}");
    browser.fill("#w-url", &receiver.url).await;
    browser.click("button[value='set']").await;
    assert!(browser.text(".notice.ok").await.contains(&receiver.url));
    browser
        .click("form[action='/console/webhooks/test'] button")
        .await;
    assert!(browser.text(".notice.ok").await.contains("queued"));
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert!(got[0].body.contains("webhook.test"));
    eventually(Duration::from_secs(20), || async {
        browser.open(&format!("{base}/console/webhooks")).await;
        browser
            .text("table")
            .await
            .contains("succeeded")
            .then_some(())
    })
    .await;

    // API keys: a key made here works, and stops when revoked here.
    browser.open(&format!("{base}/console/api-keys")).await;
    browser.fill("#k-label", "browser key").await;
    browser
        .click("form[action='/console/api-keys'] button[type='submit']")
        .await;
    let key = browser.text(".secret-value").await;
    assert!(key.starts_with("tn_live_"), "{key}");
    assert_eq!(app.company_profile(&key).await.status(), 200);
    browser
        .click("button[aria-label='Revoke browser key']")
        .await;
    assert!(browser.text(".notice.ok").await.contains("revoked"));
    assert_eq!(app.company_profile(&key).await.status(), 401);

    // Verifications in test mode: the consent screen completes a session, and the overview
    // counts it.
    browser.click("form.mode button").await;
    let test = TestCompany {
        api_key: company.test_api_key.clone(),
        ..company.clone()
    };
    let id = app.new_session(&test, NUMBER).await;
    browser.open(&format!("{base}/console")).await;
    assert!(
        browser
            .text("section[aria-label='Last 24 hours']")
            .await
            .contains("pending 1")
    );
    browser
        .open(&format!("{base}/console/verifications/{id}"))
        .await;
    browser.click("button[value='verified']").await;
    assert!(
        browser
            .text(".notice.ok")
            .await
            .contains("Completed as verified")
    );
    let status: Value = app
        .status(&company.test_api_key, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "verified");
    browser.open(&format!("{base}/console")).await;
    let today = browser.text("section[aria-label='Last 24 hours']").await;
    assert!(
        today.contains("100.0%") && today.contains("Verified 1"),
        "{today}"
    );

    // Settings: allowed countries set here refuse another region's number at initiate.
    browser.click("form.mode button").await;
    browser.open(&format!("{base}/console/settings")).await;
    browser.fill("#s-countries", "US").await;
    browser
        .click("form[action='/console/settings/countries'] button")
        .await;
    assert!(browser.text(".notice.ok").await.contains("US"));
    let resp = app
        .initiate(
            &company.api_key,
            &json!({"companyId": company.id, "mobileNumber": NUMBER, "requestId": "r-gb"}),
        )
        .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "COUNTRY_NOT_ALLOWED", "{body}");

    // A forged form (its CSRF token replaced) is refused and changes nothing.
    browser
        .client
        .execute(
            "const f = document.querySelector(\"form[action='/console/settings/countries']\"); \
             f.querySelector(\"input[name='csrf']\").value = 'forged'; \
             f.querySelector(\"input[name='countries']\").value = ''; f.submit();",
            vec![],
        )
        .await
        .unwrap();
    assert!(browser.text(".notice.error").await.contains("CSRF"));
    let profile: Value = app
        .company_profile(&company.api_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["allowedCountries"], json!(["US"]));

    // Sign-out ends the session; the link does not open another.
    browser.open(&format!("{base}/console")).await;
    browser.click("form.signout button").await;
    assert_eq!(browser.path().await, "/console/signed-out");
    assert_eq!(
        browser.open(&format!("{base}/console/settings")).await,
        "Sign in to the TrueNumber console"
    );
    assert_eq!(browser.open(&link).await, "This sign-in link does not work");
    worker.stop().await;
}
