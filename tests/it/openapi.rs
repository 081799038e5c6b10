//! The committed `openapi.json` is what the code generates, and it documents every error.

use serde_json::Value;

fn generated() -> Value {
    let mut env = crate::helpers::base_env();
    env.insert("API_BASE_URL".into(), "http://localhost:3000".into());
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let connections = truenumber_core::storage::lanes::ApiConnections::unopened(&config);
    let state = truenumber_api::state::AppState::new(config, connections).unwrap();
    serde_json::from_str(&truenumber_api::openapi_json(state)).unwrap()
}

#[tokio::test]
async fn committed_document_matches_the_code() {
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json"))
            .expect("openapi.json at the repository root"),
    )
    .unwrap();
    assert!(
        committed == generated(),
        "openapi.json is stale: run `cargo run -p truenumber-api -- openapi > openapi.json`"
    );
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_security() {
    let spec = generated();
    let expect = [
        (
            "/verification/initiate",
            "post",
            vec![
                "200", "400", "401", "403", "404", "408", "409", "413", "429", "500", "503",
            ],
            "ApiKey",
        ),
        (
            "/verification/submit",
            "post",
            vec![
                "200", "400", "401", "403", "404", "408", "409", "410", "413", "429", "500", "503",
            ],
            "AppToken",
        ),
        (
            "/verification/status/{verificationId}",
            "get",
            vec!["200", "400", "401", "403", "404", "429", "500", "503"],
            "ApiKey",
        ),
        (
            "/verifications",
            "get",
            vec!["200", "400", "401", "403", "429", "500", "503"],
            "ApiKey",
        ),
        (
            "/verifications/summary",
            "get",
            vec!["200", "400", "401", "403", "429", "500", "503"],
            "ApiKey",
        ),
        (
            "/verifications/{verificationId}",
            "delete",
            vec!["204", "400", "401", "403", "404", "500", "503"],
            "ApiKey",
        ),
        (
            "/company",
            "get",
            vec!["200", "401", "403", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/webhook",
            "put",
            vec!["200", "400", "401", "403", "408", "413", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/webhook",
            "delete",
            vec!["204", "401", "403", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/webhook/test",
            "post",
            vec!["202", "401", "403", "409", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/webhook/secret/rotate",
            "post",
            vec!["200", "401", "403", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/deliveries",
            "get",
            vec!["200", "400", "401", "403", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/deliveries/{deliveryId}",
            "get",
            vec!["200", "400", "401", "403", "404", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/deliveries/{deliveryId}/redeliver",
            "post",
            vec!["202", "400", "401", "403", "404", "409", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/deliveries/recover",
            "post",
            vec!["202", "400", "401", "403", "408", "413", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/api-keys",
            "get",
            vec!["200", "401", "403", "500", "503"],
            "ApiKey",
        ),
        (
            "/company/api-keys",
            "post",
            vec![
                "201", "400", "401", "403", "408", "409", "413", "500", "503",
            ],
            "ApiKey",
        ),
        (
            "/company/api-keys/{keyId}/roll",
            "post",
            vec![
                "201", "400", "401", "403", "404", "408", "409", "413", "500", "503",
            ],
            "ApiKey",
        ),
        (
            "/company/api-keys/{keyId}",
            "delete",
            vec!["204", "400", "401", "403", "404", "500", "503"],
            "ApiKey",
        ),
    ];
    for (path, method, statuses, scheme) in expect {
        let op = &spec["paths"][path][method];
        let mut got: Vec<&str> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        assert_eq!(got, statuses, "{path}");
        assert!(op["security"][0].get(scheme).is_some(), "{path} security");
        for status in statuses.iter().filter(|s| !s.starts_with('2')) {
            let schema = &op["responses"][status]["content"]["application/json; charset=utf-8"]["schema"]
                ["$ref"];
            assert_eq!(schema, "#/components/schemas/Error", "{path} {status}");
        }
    }
    assert_eq!(spec["servers"][0]["url"], "http://localhost:3000/api/v1");
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["ApiKey"]["scheme"], "bearer");
    assert_eq!(schemes["AppToken"]["bearerFormat"], "JWT");
}

/// Every JSON value of the document, with its path, for whole-document rules.
fn walk<'a>(path: String, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), v));
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| walk(format!("{path}/{k}"), v, out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(format!("{path}/{i}"), v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn references_are_plain_and_timestamps_are_date_times() {
    let spec = generated();
    let mut all = Vec::new();
    walk(String::new(), &spec, &mut all);
    for (path, v) in &all {
        assert!(v.get("allOf").is_none(), "allOf wrapper at {path}");
    }
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    let mut timestamps = Vec::new();
    for (name, schema) in schemas {
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            if field.ends_with("At") || field == "timestamp" {
                timestamps.push(format!("{name}.{field}"));
                assert_eq!(prop["format"], "date-time", "{name}.{field}");
            }
        }
    }
    timestamps.sort_unstable();
    let key_times = ["createdAt", "expiresAt", "lastUsedAt", "revokedAt"];
    let mut expected: Vec<String> = [
        "AppVerification.expiresAt",
        "BlockedCompanyItem.blockedAt",
        "CompanyProfile.createdAt",
        "ConsoleLink.expiresAt",
        "Error.timestamp",
        "InitiateVerificationResponse.expiresAt",
        "RolledApiKey.previousKeyExpiresAt",
        "RotatedWebhookSecret.previousSecretExpiresAt",
        "SubmitVerificationResponse.verifiedAt",
        "VerificationStatusResponse.createdAt",
        "VerificationStatusResponse.expiresAt",
        "VerificationStatusResponse.phoneVerifiedAt",
        "VerificationStatusResponse.verifiedAt",
        "WebhookAttempt.attemptedAt",
    ]
    .into_iter()
    .map(String::from)
    .chain(
        ["ApiKey", "IssuedApiKey", "RolledApiKey"]
            .iter()
            .flat_map(|schema| {
                key_times
                    .iter()
                    .map(move |field| format!("{schema}.{field}"))
            }),
    )
    .chain(
        ["WebhookDelivery", "WebhookDeliveryDetail"]
            .iter()
            .flat_map(|schema| {
                ["completedAt", "createdAt", "nextAttemptAt"]
                    .iter()
                    .map(move |field| format!("{schema}.{field}"))
            }),
    )
    .collect();
    expected.sort_unstable();
    assert_eq!(timestamps, expected);
    // Absent, never null: not required, and not nullable.
    let status = &schemas["VerificationStatusResponse"];
    assert!(
        !status["required"]
            .as_array()
            .unwrap()
            .contains(&"verifiedAt".into())
    );
    assert!(status["properties"]["verifiedAt"].get("nullable").is_none());
    assert_eq!(
        status["properties"]["status"],
        serde_json::json!({"$ref": "#/components/schemas/VerificationStatus"})
    );
    // The identifier rule is documented where it applies.
    for (schema, field) in [
        ("InitiateVerificationRequest", "requestId"),
        ("SubmitVerificationRequest", "appUserId"),
        ("DenyVerificationRequest", "appUserId"),
    ] {
        let doc = schemas[schema]["properties"][field]["description"]
            .as_str()
            .unwrap();
        assert!(doc.contains("visible character"), "{schema}.{field}: {doc}");
        assert!(doc.contains("bidi"), "{schema}.{field}: {doc}");
    }
}

#[tokio::test]
async fn headers_are_declared_where_sent_and_required_where_always_sent() {
    let spec = generated();
    let mut responses = 0;
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            // The verification endpoints and the reads of verifications count against a
            // limit; self-service and erase never reach a limiter.
            let rate_limited = path.starts_with("/verification/")
                || path.starts_with("/test/")
                || (path.starts_with("/verifications") && method == "get");
            for (status, resp) in op["responses"].as_object().unwrap() {
                responses += 1;
                let headers = resp["headers"].as_object().unwrap();
                let at = format!("{method} {path} {status}");
                assert_eq!(headers["X-Request-Id"]["required"], true, "{at}");
                let limited = rate_limited && !matches!(status.as_str(), "401" | "408" | "413");
                for name in ["RateLimit", "RateLimit-Policy"] {
                    match headers.get(name) {
                        // Never promised: the limiter may be off or failing open.
                        Some(h) => assert!(limited && h.get("required").is_none(), "{at} {name}"),
                        None => assert!(!limited || status == "400" || status == "403", "{at}"),
                    }
                }
                let retry = matches!(status.as_str(), "429" | "503");
                assert_eq!(
                    headers.get("Retry-After").map(|h| h["required"] == true),
                    retry.then_some(true),
                    "{at} Retry-After"
                );
            }
        }
    }
    assert_eq!(
        responses,
        11 + 12 + 8 + 5 + 5 + 9 + 10 + 7 + 8 + 5 + 5 + 6 + 7 + 8 + 8 + 7 + 7 + 7 + 6
            // deny, the test completion, the app's view and its list
            + 12 + 12 + 7 + 6
            // the blocked companies (list, block, unblock) and the company's settings
            + 5 + 7 + 7 + 8
            // a console sign-in link
            + 5
    );
}

#[tokio::test]
async fn initiate_links_to_status_and_submit() {
    let spec = generated();
    let links = &spec["paths"]["/verification/initiate"]["post"]["responses"]["200"]["links"];
    let ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    for (name, target) in [
        ("GetVerificationStatus", "getVerificationStatus"),
        ("SubmitVerification", "submitVerification"),
        ("DenyVerification", "denyVerification"),
        ("GetAppVerification", "getAppVerification"),
        ("CompleteTestVerification", "completeTestVerification"),
    ] {
        assert_eq!(links[name]["operationId"], target);
        assert!(ids.contains(&target), "{target} is an operation");
    }
    assert_eq!(
        links["GetVerificationStatus"]["parameters"]["verificationId"],
        "$response.body#/verificationId"
    );
    assert_eq!(
        links["SubmitVerification"]["requestBody"]["verificationId"],
        "$response.body#/verificationId"
    );
}

#[tokio::test]
async fn servers_follow_port_unless_api_base_url_is_set() {
    let mut env = crate::helpers::base_env();
    env.remove("API_BASE_URL");
    env.insert("PORT".into(), "3005".into());
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let connections = truenumber_core::storage::lanes::ApiConnections::unopened(&config);
    let state = truenumber_api::state::AppState::new(config, connections).unwrap();
    let spec: Value = serde_json::from_str(&truenumber_api::openapi_json(state)).unwrap();
    assert_eq!(spec["servers"][0]["url"], "http://localhost:3005/api/v1");
}

#[tokio::test]
async fn the_served_document_and_swagger_ui_are_the_generated_one() {
    let app = crate::helpers::TestApp::spawn().await;
    let served: Value = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(served, generated());
    let ui = app.get_text("/docs").await;
    assert!(
        ui.contains("GetVerificationStatus"),
        "Swagger UI has the links"
    );
}
