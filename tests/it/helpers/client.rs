//! The typed client: one call per operation of the API (each returns the response), and the
//! [`Expect`] checks that read a response as the API's own response type, or as the one JSON
//! error shape.

use std::time::Duration;

use poem_openapi::types::ParseFromJSON;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{TestApp, TestCompany, eventually, unique};

/// The number a test session is for unless it names another.
pub const NUMBER: &str = "+447911123456";

/// Reads a response: its status, and its body as the API's own type or as an error.
#[allow(async_fn_in_trait)]
pub trait Expect: Sized {
    /// Asserts `status` and parses the body as `T`, the API's response type (so a field the
    /// API drops or retypes breaks the test at compile time or here).
    async fn expect<T: ParseFromJSON>(self, status: u16) -> T;
    /// Asserts `status` and returns the body as JSON.
    async fn expect_json(self, status: u16) -> Value;
    /// Asserts the whole error shape with `"status":"error"` (see [`assert_error`]).
    async fn expect_error(self, status: u16, code: &str) -> Value;
}

impl Expect for reqwest::Response {
    async fn expect<T: ParseFromJSON>(self, status: u16) -> T {
        let body = self.expect_json(status).await;
        T::parse_from_json(Some(body.clone()))
            .unwrap_or_else(|e| panic!("not a {}: {}: {body}", T::name(), e.into_message()))
    }

    async fn expect_json(self, status: u16) -> Value {
        let got = self.status().as_u16();
        let text = self.text().await.expect("body");
        assert_eq!(got, status, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    async fn expect_error(self, status: u16, code: &str) -> Value {
        assert_error(self, status, code, "error").await
    }
}

impl TestApp {
    /// A new session of `company` for `number`, confirmed by the app (so its webhook goes
    /// out); returns its id.
    pub async fn verified_session(&self, company: &TestCompany, number: &str) -> String {
        let id = self.new_session(company, number).await;
        let token = self.app_token("app_user_1", Some(number));
        let resp = self
            .submit(
                &token,
                &json!({"verificationId": id, "userConfirmedNumber": number, "appUserId": "app_user_1"}),
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        id
    }

    /// `POST /api/v1/verification/initiate` with a key and a JSON body.
    pub async fn initiate(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/verification/initiate"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("initiate")
    }

    /// Initiates for `company` with a fresh request id; asserts 200 and returns the body.
    pub async fn initiate_ok(&self, company: &TestCompany, number: &str) -> Value {
        let resp = self
            .initiate(
                &company.api_key,
                &json!({"mobileNumber": number, "companyId": company.id, "requestId": unique("req")}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("json")
    }

    /// Initiates for `company` and returns the new session's id.
    pub async fn new_session(&self, company: &TestCompany, number: &str) -> String {
        self.initiate_ok(company, number).await["verificationId"]
            .as_str()
            .expect("verificationId")
            .to_owned()
    }

    /// `GET` of an unauthenticated path (probes, metrics, documents); its body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body")
    }

    /// `GET` of an unauthenticated path that answers JSON; its body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON body")
    }

    /// `POST /api/v1/verification/submit` with an app token.
    pub async fn submit(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/verification/submit"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("submit")
    }

    /// `GET /api/v1/verification/status/{id}`.
    pub async fn status(&self, key: &str, verification_id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/v1/verification/status/{verification_id}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("status")
    }

    /// A request to the API under `/api/v1` with an API key (or app token) and, for POST, a
    /// JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    /// `POST /company/api-keys`, asserting 201; returns the body.
    pub async fn create_key(&self, key: &str, body: Value) -> Value {
        let resp = self
            .call(reqwest::Method::POST, "/company/api-keys", key, Some(body))
            .await;
        assert_eq!(resp.status().as_u16(), 201);
        resp.json().await.expect("JSON")
    }

    pub async fn list_keys(&self, key: &str) -> Vec<Value> {
        let resp = self
            .call(reqwest::Method::GET, "/company/api-keys", key, None)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.expect("JSON");
        body["data"].as_array().expect("data").clone()
    }
    pub async fn get_company(&self, c: &TestCompany) -> Value {
        let resp = self
            .call(reqwest::Method::GET, "/company", &c.api_key, None)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }
    /// `GET /company/deliveries` with a query string; asserts 200.
    pub async fn deliveries_page(&self, key: &str, query: &str) -> Value {
        let resp = self
            .call(
                reqwest::Method::GET,
                &format!("/company/deliveries?{query}"),
                key,
                None,
            )
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }

    /// The delivery of session `verification_id`, once it is no longer pending.
    pub async fn finished_delivery(&self, key: &str, verification_id: &str) -> Value {
        eventually(Duration::from_secs(20), || async {
            self.deliveries_page(key, "limit=100").await["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["verificationId"] == verification_id && d["status"] != "pending")
                .cloned()
        })
        .await
    }

    /// Initiates with `key` (live or test) for `company` ([`NUMBER`] unless `body` names
    /// another); asserts 200 and returns the body.
    pub async fn initiate_with(&self, key: &str, company: &TestCompany, body: Value) -> Value {
        let mut body = body;
        body["companyId"] = company.id.as_str().into();
        if body.get("requestId").is_none() {
            body["requestId"] = unique("req").into();
        }
        if body.get("mobileNumber").is_none() {
            body["mobileNumber"] = NUMBER.into();
        }
        let resp = self.initiate(key, &body).await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("JSON")
    }

    /// `GET` of a listing under `/api/v1` with `key` (an API key or app token), asserting
    /// 200: the `verificationId` of each item of its `data`.
    pub async fn listed_ids(&self, path: &str, key: &str) -> Vec<String> {
        let resp = self.call(Method::GET, path, key, None).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let page: Value = resp.json().await.expect("JSON");
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|item| {
                item["verificationId"]
                    .as_str()
                    .expect("verificationId")
                    .to_owned()
            })
            .collect()
    }

    /// The status body of a session the key sees, asserting 200.
    pub async fn status_body(&self, key: &str, id: &str) -> Value {
        let resp = self.status(key, id).await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("JSON")
    }

    /// `POST /test/verifications/{id}/complete` with `key`.
    pub async fn complete(&self, key: &str, id: &str, outcome: &str) -> reqwest::Response {
        self.call(
            Method::POST,
            &format!("/test/verifications/{id}/complete"),
            key,
            Some(json!({ "outcome": outcome })),
        )
        .await
    }
    /// `POST /verification/deny` with an app token.
    pub async fn deny(&self, token: &str, id: &str, user: &str) -> reqwest::Response {
        self.call(
            Method::POST,
            "/verification/deny",
            token,
            Some(json!({"verificationId": id, "appUserId": user})),
        )
        .await
    }

    // One call per remaining operation (the ones above cover initiate, submit, deny, status,
    // the test completion and the generic `call`); each returns the response, to be read with
    // [`Expect`].

    /// `GET /verifications{query}`.
    pub async fn list_verifications(&self, key: &str, query: &str) -> reqwest::Response {
        self.call(Method::GET, &format!("/verifications{query}"), key, None)
            .await
    }

    /// `GET /verifications/summary{query}`.
    pub async fn summarise_verifications(&self, key: &str, query: &str) -> reqwest::Response {
        self.call(
            Method::GET,
            &format!("/verifications/summary{query}"),
            key,
            None,
        )
        .await
    }

    /// `DELETE /verifications/{id}`.
    pub async fn erase_verification(&self, key: &str, id: &str) -> reqwest::Response {
        self.call(Method::DELETE, &format!("/verifications/{id}"), key, None)
            .await
    }

    /// `GET /app/verifications/{id}` with an app token.
    pub async fn app_verification(&self, token: &str, id: &str) -> reqwest::Response {
        self.call(
            Method::GET,
            &format!("/app/verifications/{id}"),
            token,
            None,
        )
        .await
    }

    /// `GET /app/verifications?status=pending` with an app token.
    pub async fn app_pending(&self, token: &str) -> reqwest::Response {
        self.call(
            Method::GET,
            "/app/verifications?status=pending",
            token,
            None,
        )
        .await
    }

    /// `GET /app/blocked-companies` with an app token.
    pub async fn blocked_companies(&self, token: &str) -> reqwest::Response {
        self.call(Method::GET, "/app/blocked-companies", token, None)
            .await
    }

    /// `PUT /app/blocked-companies/{companyId}` with an app token.
    pub async fn block_company(&self, token: &str, company_id: &str) -> reqwest::Response {
        self.call(
            Method::PUT,
            &format!("/app/blocked-companies/{company_id}"),
            token,
            None,
        )
        .await
    }

    /// `DELETE /app/blocked-companies/{companyId}` with an app token.
    pub async fn unblock_company(&self, token: &str, company_id: &str) -> reqwest::Response {
        self.call(
            Method::DELETE,
            &format!("/app/blocked-companies/{company_id}"),
            token,
            None,
        )
        .await
    }

    /// `PUT /company/settings`.
    pub async fn company_settings(&self, key: &str, body: Value) -> reqwest::Response {
        self.call(Method::PUT, "/company/settings", key, Some(body))
            .await
    }

    /// `GET /company`.
    pub async fn company_profile(&self, key: &str) -> reqwest::Response {
        self.call(Method::GET, "/company", key, None).await
    }

    /// `POST /company/console-links`.
    pub async fn console_link(&self, key: &str) -> reqwest::Response {
        self.call(Method::POST, "/company/console-links", key, None)
            .await
    }

    /// `PUT /company/webhook`.
    pub async fn set_webhook(&self, key: &str, url: &str) -> reqwest::Response {
        self.call(
            Method::PUT,
            "/company/webhook",
            key,
            Some(json!({ "url": url })),
        )
        .await
    }

    /// `DELETE /company/webhook`.
    pub async fn delete_webhook(&self, key: &str) -> reqwest::Response {
        self.call(Method::DELETE, "/company/webhook", key, None)
            .await
    }

    /// `POST /company/webhook/test`.
    pub async fn send_test_webhook(&self, key: &str) -> reqwest::Response {
        self.call(Method::POST, "/company/webhook/test", key, None)
            .await
    }

    /// `POST /company/webhook/secret/rotate`.
    pub async fn rotate_webhook_secret(&self, key: &str) -> reqwest::Response {
        self.call(Method::POST, "/company/webhook/secret/rotate", key, None)
            .await
    }

    /// `GET /company/api-keys`.
    pub async fn api_keys(&self, key: &str) -> reqwest::Response {
        self.call(Method::GET, "/company/api-keys", key, None).await
    }

    /// `POST /company/api-keys`.
    pub async fn new_api_key(&self, key: &str, body: Value) -> reqwest::Response {
        self.call(Method::POST, "/company/api-keys", key, Some(body))
            .await
    }

    /// `POST /company/api-keys/{keyId}/roll`.
    pub async fn roll_api_key(&self, key: &str, key_id: &str, body: Value) -> reqwest::Response {
        self.call(
            Method::POST,
            &format!("/company/api-keys/{key_id}/roll"),
            key,
            Some(body),
        )
        .await
    }

    /// `DELETE /company/api-keys/{keyId}`.
    pub async fn revoke_api_key(&self, key: &str, key_id: &str) -> reqwest::Response {
        self.call(
            Method::DELETE,
            &format!("/company/api-keys/{key_id}"),
            key,
            None,
        )
        .await
    }

    /// `GET /company/deliveries{query}`.
    pub async fn list_deliveries(&self, key: &str, query: &str) -> reqwest::Response {
        self.call(
            Method::GET,
            &format!("/company/deliveries{query}"),
            key,
            None,
        )
        .await
    }

    /// `GET /company/deliveries/{deliveryId}`.
    pub async fn delivery(&self, key: &str, id: &str) -> reqwest::Response {
        self.call(Method::GET, &format!("/company/deliveries/{id}"), key, None)
            .await
    }

    /// `POST /company/deliveries/{deliveryId}/redeliver`.
    pub async fn redeliver(&self, key: &str, id: &str) -> reqwest::Response {
        self.call(
            Method::POST,
            &format!("/company/deliveries/{id}/redeliver"),
            key,
            None,
        )
        .await
    }

    /// `POST /company/deliveries/recover`.
    pub async fn recover_deliveries(&self, key: &str, body: Value) -> reqwest::Response {
        self.call(Method::POST, "/company/deliveries/recover", key, Some(body))
            .await
    }
}

/// A response header that must be there, as text.
pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts an error response: status, the exact key set of the error body, its code and
/// `status` field, and that `requestId` equals the `X-Request-Id` header. Returns the body.
pub async fn assert_error(
    resp: reqwest::Response,
    status: u16,
    code: &str,
    body_status: &str,
) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status of {code}");
    let header_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("X-Request-Id header");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = resp.json().await.expect("JSON error body");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "message", "requestId", "status", "timestamp"],
        "{body}"
    );
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], body_status, "{body}");
    assert_eq!(body["requestId"], header_id.as_str());
    assert!(
        chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().expect("timestamp"))
            .is_ok()
    );
    assert!(!body["message"].as_str().expect("message").is_empty());
    body
}
