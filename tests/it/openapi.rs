//! The committed `openapi.json` is what the code generates, and it documents every error.

use serde_json::Value;

fn generated() -> Value {
    let mut env = crate::helpers::base_env();
    env.insert("API_BASE_URL".into(), "http://localhost:3000".into());
    let config = truenumber_core::config::Config::from_map(&env).unwrap();
    let connections = truenumber_core::db_lanes::ApiConnections::unopened(&config);
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
                "200", "400", "401", "403", "404", "409", "413", "429", "500", "503",
            ],
            "ApiKey",
        ),
        (
            "/verification/submit",
            "post",
            vec![
                "200", "400", "401", "403", "404", "409", "410", "413", "429", "500", "503",
            ],
            "AppToken",
        ),
        (
            "/verification/status/{verificationId}",
            "get",
            vec!["200", "400", "401", "403", "404", "429", "500", "503"],
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
        for status in statuses.iter().filter(|s| **s != "200") {
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
