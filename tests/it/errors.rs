//! Every malformed input gets the JSON error shape, including poem's own errors.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, unique};

async fn post_raw(
    app: &TestApp,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/verification/initiate"))
        .bearer_auth(key)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn malformed_bodies_name_what_is_wrong() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let json_ct = Some("application/json");
    for (body, fragment) in [
        ("{bad".to_owned(), "key must be a string"),
        ("".to_owned(), "must be a JSON object"),
        ("[1,2]".to_owned(), "must be a JSON object"),
        ("\"text\"".to_owned(), "must be a JSON object"),
        (
            format!(
                r#"{{"mobileNumber":"+447911123456","companyId":"{}"}}"#,
                c.id
            ),
            "missing field `requestId`",
        ),
        (
            format!(
                r#"{{"mobileNumber":5,"companyId":"{}","requestId":"r"}}"#,
                c.id
            ),
            "mobileNumber: invalid type: integer `5`, expected a string",
        ),
        (
            format!(
                r#"{{"mobileNumber":null,"companyId":"{}","requestId":"r"}}"#,
                c.id
            ),
            "mobileNumber: invalid type: null",
        ),
        (
            format!(
                r#"{{"mobileNumber":"+447911123456","companyId":"{}","requestId":""}}"#,
                c.id
            ),
            "requestId must be 1 to 255 characters",
        ),
        (
            format!(
                r#"{{"mobileNumber":"+447911123456","companyId":"{}","requestId":"{}"}}"#,
                c.id,
                "r".repeat(256)
            ),
            "requestId must be 1 to 255 characters, got 256",
        ),
        (
            format!(
                r#"{{"mobileNumber":"+447911123456","companyId":"{}","requestId":"a\u0000b"}}"#,
                c.id
            ),
            "requestId must not contain control characters",
        ),
        (
            format!(
                r#"{{"mobileNumber":"+447911123456","companyId":"{}","requestId":"r"}} trailing"#,
                c.id
            ),
            "trailing characters",
        ),
    ] {
        let resp = post_raw(&app, &c.api_key, json_ct, body.clone().into_bytes()).await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{body} -> {message}");
    }

    // Wrong or missing content type.
    let ok_body = json!({"mobileNumber": "+447911123456", "companyId": c.id, "requestId": "r"})
        .to_string()
        .into_bytes();
    for ct in [None, Some("text/plain")] {
        let resp = post_raw(&app, &c.api_key, ct, ok_body.clone()).await;
        let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
        assert_eq!(err["message"], "Content-Type must be application/json");
    }
    // application/json with a charset is fine.
    let resp = post_raw(
        &app,
        &c.api_key,
        Some("application/json; charset=utf-8"),
        ok_body,
    )
    .await;
    assert_eq!(resp.status(), 200);

    // Submit's body is checked the same way (after the token).
    let token = app.app_token("u", Some("+447911123456"));
    let resp = app
        .submit(
            &token,
            &json!({"verificationId": "ver_x", "appUserId": "u"}),
        )
        .await;
    let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("userConfirmedNumber")
    );
}

#[tokio::test]
async fn unauthenticated_callers_learn_nothing_about_the_body() {
    let app = TestApp::spawn().await;
    let resp = post_raw(&app, "nope", Some("application/json"), b"{bad".to_vec()).await;
    assert_error(resp, 401, "UNAUTHORIZED", "error").await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_whether_declared_or_streamed() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let big = vec![b' '; 20_000];
    let resp = post_raw(&app, &c.api_key, Some("application/json"), big.clone()).await;
    let err = assert_error(resp, 413, "PAYLOAD_TOO_LARGE", "error").await;
    assert!(err["message"].as_str().unwrap().contains("16384"));

    // Chunked, with no Content-Length.
    let stream = futures::stream::iter(
        big.chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = app
        .client
        .post(app.url("/api/v1/verification/initiate"))
        .bearer_auth(&c.api_key)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE", "error").await;
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_json() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 404, "NOT_FOUND", "error").await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_error(resp, 404, "NOT_FOUND", "error").await;
    // `/` sends a newcomer to the API and its document.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/docs");

    let resp = app
        .client
        .get(app.url("/api/v1/verification/initiate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "POST");
    assert_error(resp, 405, "METHOD_NOT_ALLOWED", "error").await;
    let resp = app
        .client
        .delete(app.url("/api/v1/verification/status/ver_x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "GET");
    assert_error(resp, 405, "METHOD_NOT_ALLOWED", "error").await;
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/api/v1/nope"))
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-id-123");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["requestId"], "client-id-123");

    let resp = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(&id).is_ok());
}

#[tokio::test]
async fn the_documents_are_served() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(spec["info"]["title"], "TrueNumber API");
    let ui = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn an_absurd_path_parameter_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let c = app.create_company(&unique("c")).await;
    let resp = app.status(&c.api_key, &"v".repeat(65)).await;
    let err = assert_error(resp, 400, "INVALID_REQUEST", "error").await;
    assert!(
        err["message"].as_str().unwrap().contains("verificationId"),
        "{err}"
    );
}
