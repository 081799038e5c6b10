//! Operator commands, parsed by clap and executed as the binary does.

use serde_json::{Value, json};
use truenumber_api::cli::{self};
use truenumber_core::config::Config;

use crate::helpers::{
    TestApp, assert_error, base_env, cli_json as run_json, cli_run as run, unique,
};

#[tokio::test]
async fn company_lifecycle_through_the_cli() {
    let mut app = TestApp::spawn().await;
    let cfg = app.config.clone();
    let id = unique("comp");

    let created = run_json(
        &cfg,
        &[
            "company",
            "create",
            "--company-id",
            &id,
            "--name",
            "ACME Ltd",
            "--webhook-url",
            "https://acme.example/hooks",
        ],
    )
    .await;
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["apiKey", "companyId", "testApiKey", "webhookSecret"]);
    assert!(
        created["testApiKey"]
            .as_str()
            .unwrap()
            .starts_with("tn_test_")
    );
    assert_eq!(created["companyId"], id.as_str());
    let key = created["apiKey"].as_str().unwrap().to_owned();
    let secret = created["webhookSecret"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tn_") && secret.starts_with("whsec_"));

    // The key works against the API.
    let resp = app
        .initiate(
            &key,
            &json!({"mobileNumber": "+447911123456", "companyId": id, "requestId": "r"}),
        )
        .await;
    assert_eq!(resp.status(), 200);

    // A second create with the same id fails and changes nothing.
    let dup = run(
        &cfg,
        &["company", "create", "--company-id", &id, "--name", "Other"],
    )
    .await;
    // It says what to do instead, since the first output was the only copy of the key.
    let dup = dup.unwrap_err().to_string();
    assert!(dup.contains("already exists"), "{dup}");
    assert!(
        dup.contains(&format!("company rotate-key --company-id {id}")),
        "{dup}"
    );
    for bad in [
        vec![
            "company",
            "create",
            "--company-id",
            "has space",
            "--name",
            "x",
        ],
        vec!["company", "create", "--company-id", "ok", "--name", " "],
        vec![
            "company",
            "create",
            "--company-id",
            "ok2",
            "--name",
            "x",
            "--webhook-url",
            "ftp://x",
        ],
    ] {
        assert!(run(&cfg, &bad).await.is_err(), "{bad:?}");
    }

    // list shows the company and its key id, never the key, its hash or the webhook secret.
    let listed = run(&cfg, &["company", "list"]).await.unwrap();
    assert!(!listed.contains(&key) && !listed.contains(&secret) && !listed.contains("argon2"));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ours = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["companyId"] == id.as_str())
        .unwrap();
    assert_eq!(ours["name"], "ACME Ltd");
    assert_eq!(ours["webhookUrl"], "https://acme.example/hooks");
    assert_eq!(ours["isActive"], true);
    let key_id = truenumber_core::companies::secrets::api_key_parts(&key)
        .map(|p| p.lookup_id)
        .unwrap();
    assert_eq!(ours["apiKeys"][0]["keyId"], key_id);

    // rotate-key --revoke-existing: the old key stops working (after the verdict cache).
    let rotated = run_json(
        &cfg,
        &[
            "company",
            "rotate-key",
            "--company-id",
            &id,
            "--revoke-existing",
        ],
    )
    .await;
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    // A node with no key cache: another node on the database, or (standalone, one node per
    // DATA_DIR) the same node restarted.
    let fresh_holder;
    let fresh_node: &TestApp = if crate::helpers::standalone() {
        app.restart().await;
        &app
    } else {
        fresh_holder = TestApp::spawn_config(cfg.clone()).await;
        &fresh_holder
    };
    assert_error(
        fresh_node.status(&key, "ver_x").await,
        401,
        "UNAUTHORIZED",
        "error",
    )
    .await;
    assert_eq!(fresh_node.status(&new_key, "ver_x").await.status(), 404);

    // revoke-key on the new key.
    let new_id = rotated["keyId"].as_str().unwrap().to_owned();
    let revoked = run_json(
        &cfg,
        &[
            "company",
            "revoke-key",
            "--company-id",
            &id,
            "--key-id",
            &new_id,
        ],
    )
    .await;
    assert_eq!(revoked["revoked"], true);
    assert!(
        run(
            &cfg,
            &[
                "company",
                "revoke-key",
                "--company-id",
                &id,
                "--key-id",
                "nope"
            ]
        )
        .await
        .is_err()
    );

    // set-webhook and clear.
    let set = run_json(
        &cfg,
        &[
            "company",
            "set-webhook",
            "--company-id",
            &id,
            "--url",
            "https://b.example/h",
        ],
    )
    .await;
    assert_eq!(set["webhookUrl"], "https://b.example/h");
    run_json(
        &cfg,
        &["company", "set-webhook", "--company-id", &id, "--clear"],
    )
    .await;
    let co = truenumber_core::companies::find_company(&app.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(co.webhook_url, None);
    assert!(
        run(&cfg, &["company", "set-webhook", "--company-id", &id])
            .await
            .is_err()
    );
    assert!(
        run(
            &cfg,
            &["company", "set-webhook", "--company-id", "ghost", "--clear"]
        )
        .await
        .is_err()
    );

    // Rate-limit overrides.
    run_json(
        &cfg,
        &[
            "company",
            "set-rate-limits",
            "--company-id",
            &id,
            "--initiate-per-hour",
            "7",
        ],
    )
    .await;
    let co = truenumber_core::companies::find_company(&app.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            co.rate_limit_initiate_per_hour,
            co.rate_limit_status_per_hour
        ),
        (Some(7), None)
    );
    assert!(
        run(
            &cfg,
            &[
                "company",
                "set-rate-limits",
                "--company-id",
                &id,
                "--status-per-hour",
                "0"
            ]
        )
        .await
        .is_err()
    );

    // deactivate / activate.
    assert_eq!(
        run_json(&cfg, &["company", "deactivate", "--company-id", &id]).await["isActive"],
        false
    );
    let co = truenumber_core::companies::find_company(&app.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(!co.is_active);
    assert_eq!(
        run_json(&cfg, &["company", "activate", "--company-id", &id]).await["isActive"],
        true
    );
    assert!(
        run(&cfg, &["company", "deactivate", "--company-id", "ghost"])
            .await
            .is_err()
    );
    assert!(
        run(&cfg, &["company", "rotate-key", "--company-id", "ghost"])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn app_token_prints_a_token_the_api_accepts() {
    let app = TestApp::spawn().await;
    let out = run(
        &app.config,
        &[
            "app-token",
            "--app-user-id",
            "user_9",
            "--phone",
            "+44 7911 123456",
            "--ttl-seconds",
            "120",
        ],
    )
    .await
    .unwrap();
    let token = out.trim();
    let claims = truenumber_core::companies::app_tokens::AppTokenKeys::new(&app.config.jwt_secret)
        .verify(token)
        .await
        .unwrap();
    assert_eq!(claims.sub, "user_9");
    assert_eq!(claims.phone_number.as_deref(), Some("+447911123456"));
    // As an identity provider's token says it: verified, just now.
    assert_eq!(claims.phone_number_verified, Some(true));
    let now = chrono::Utc::now().timestamp();
    assert!(
        claims
            .auth_time
            .is_some_and(|t| (now - 60..=now).contains(&t))
    );
    let ttl = claims.exp - now;
    assert!((100..=120).contains(&ttl));
    // The API accepts it for that number's session.
    let c = app.create_company(&unique("c")).await;
    let id = app.new_session(&c, "+447911123456").await;
    let resp = app
        .submit(
            token,
            &json!({"verificationId": id, "userConfirmedNumber": "+447911123456", "appUserId": "user_9"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);

    // A binding must be chosen: --phone, or --unbound (development) for a token with none.
    let neither = run(&app.config, &["app-token", "--app-user-id", "u"]).await;
    assert!(
        neither.unwrap_err().to_string().contains("--phone"),
        "clap names the missing choice"
    );
    assert!(
        run(
            &app.config,
            &[
                "app-token",
                "--app-user-id",
                "u",
                "--phone",
                "+447911123456",
                "--unbound"
            ]
        )
        .await
        .is_err()
    );
    let unbound = run(
        &app.config,
        &["app-token", "--app-user-id", "u", "--unbound"],
    )
    .await
    .unwrap();
    let claims = truenumber_core::companies::app_tokens::AppTokenKeys::new(&app.config.jwt_secret)
        .verify(unbound.trim())
        .await
        .unwrap();
    assert_eq!(claims.phone_number, None);
    assert_eq!(claims.auth_time, None);
    assert!(
        run(
            &app.config,
            &["app-token", "--app-user-id", "u", "--phone", "12"]
        )
        .await
        .is_err()
    );
    assert!(
        run(
            &app.config,
            &[
                "app-token",
                "--app-user-id",
                "u",
                "--unbound",
                "--ttl-seconds",
                "0"
            ]
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn openapi_command_prints_the_document() {
    let out = run(&cli::openapi_config().unwrap(), &["openapi"])
        .await
        .unwrap();
    let spec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(spec["openapi"], "3.0.0");
    assert!(spec["paths"]["/verification/initiate"].is_object());
}

#[tokio::test]
async fn migrations_are_idempotent_and_safe_to_race() {
    let env = base_env();
    let config = Config::from_map(&env).unwrap();
    // Three nodes migrate a database that does not exist yet, at once.
    let results = futures::future::join_all((0..3).map(|_| run(&config, &["migrate"]))).await;
    for r in results {
        r.unwrap();
    }
    run(&config, &["migrate"]).await.unwrap();
    let db = truenumber_core::storage::db::connect(&config)
        .await
        .unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*)::int AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    use truenumber_migration::MigratorTrait;
    let expected = i32::try_from(truenumber_migration::Migrator::migrations().len()).unwrap();
    assert_eq!(row.try_get::<i32>("", "n").unwrap(), expected);
}

#[tokio::test]
async fn serve_runs_until_told_to_stop() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = base_env();
    env.insert("PORT".into(), port.to_string());
    let config = Config::from_map(&env).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cli::serve(config, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let ready = crate::helpers::eventually(std::time::Duration::from_secs(20), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => Some(()),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(ready, ());
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(client.get(&url).send().await.is_err());
}

#[test]
fn configuration_errors_name_the_variable() {
    let mut env = base_env();
    env.remove("JWT_SECRET");
    let err = Config::from_map(&env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration error: JWT_SECRET: is required (at least 32 bytes)"
    );
}

#[tokio::test]
async fn a_second_start_migrates_without_notices() {
    let captured = crate::helpers::Captured::default();
    let mut env = base_env();
    env.insert("LOG_LEVEL".into(), "info".into());
    let config = Config::from_map(&env).unwrap();
    let sink = captured.clone();
    truenumber_core::observability::telemetry::init_with_writer(
        &config,
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || sink.clone()),
    );
    run(&config, &["migrate"]).await.unwrap();
    run(&config, &["migrate"]).await.unwrap();
    let logs = captured.text();
    assert!(
        logs.contains("migrations applied"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains("already exists"), "{logs}");
}
