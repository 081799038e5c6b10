//! Standalone mode's own promises: its data survives a restart, a retry that fell due while
//! the process was down (killed, not stopped) goes out after the next start, one process per
//! `DATA_DIR`, a backup taken while it serves restores elsewhere, and SQLite is refused by
//! `serve` and the worker. (Everything else standalone
//! does is proved by the HTTP tests run with `TN_TEST_MODE=standalone`.)

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use serde_json::json;
use truenumber_api::{
    cli::{self, Command},
    standalone,
};
use truenumber_core::{
    companies,
    config::{Config, Mode},
    storage::db,
    webhooks::deliveries::{self, DeliveryStatus},
};

use crate::helpers::{
    Reply, TestReceiver, cli_json, cli_run, eventually, production_env, spawn_process, unique,
};

const TOKEN_USER: &str = "standalone_user";
const NUMBER: &str = "+447911123456";

/// A standalone environment on a fresh `DATA_DIR` (no `DATABASE_URL`, no `JWT_SECRET`: the
/// secret is generated as on a newcomer's machine).
fn standalone_env() -> HashMap<String, String> {
    let mut env = production_env();
    for k in ["DATABASE_URL", "JWT_SECRET"] {
        env.remove(k);
    }
    let dir = std::env::temp_dir().join(unique("tn_test"));
    env.insert("DATA_DIR".into(), dir.display().to_string());
    env
}

fn config_of(env: &HashMap<String, String>) -> Config {
    standalone::config_from_lookup(|n| env.get(n).cloned(), true).unwrap()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Flow {
    client: reqwest::Client,
    base: String,
}

impl Flow {
    async fn initiate(&self, key: &str, company: &str) -> String {
        let resp = self
            .client
            .post(format!("{}/api/v1/verification/initiate", self.base))
            .bearer_auth(key)
            .json(&json!({"mobileNumber": NUMBER, "companyId": company, "requestId": unique("r")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<serde_json::Value>().await.unwrap()["verificationId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn submit(&self, config: &Config, vid: &str) {
        let token = truenumber_core::companies::app_tokens::AppTokenKeys::new(&config.jwt_secret)
            .mint(TOKEN_USER, Some(NUMBER), 600)
            .unwrap();
        let resp = self
            .client
            .post(format!("{}/api/v1/verification/submit", self.base))
            .bearer_auth(token)
            .json(&json!({"verificationId": vid, "userConfirmedNumber": NUMBER, "appUserId": TOKEN_USER}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    async fn status(&self, key: &str, vid: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(format!("{}/api/v1/verification/status/{vid}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

#[tokio::test]
async fn sessions_keys_and_deliveries_survive_a_restart() {
    let receiver = TestReceiver::start().await;
    let env = standalone_env();
    let config = config_of(&env);
    assert_eq!(config.mode, Mode::Standalone);
    // The generated secret is kept, owner-only.
    let secret_file = config.data_dir.join(standalone::JWT_SECRET_FILE);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let first = standalone::start(config.clone(), loopback()).await.unwrap();
    let company = unique("restart");
    let created = companies::create_company(&first.db, &company, "R Ltd", Some(&receiver.url))
        .await
        .unwrap();
    let key = created.api_key.expose().to_owned();
    let flow = Flow {
        client: reqwest::Client::new(),
        base: format!("http://{}", first.addr),
    };
    let vid = flow.initiate(&key, &company).await;
    flow.submit(&config, &vid).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert!(got[0].body.contains(&vid));
    first.stop().await.unwrap();

    // Same DATA_DIR, a new process state: the secret is the same one, so are the data.
    let again = config_of(&env);
    assert_eq!(again.jwt_secret, config.jwt_secret);
    let second = standalone::start(again.clone(), loopback()).await.unwrap();
    let flow = Flow {
        client: reqwest::Client::new(),
        base: format!("http://{}", second.addr),
    };
    let (code, body) = flow.status(&key, &vid).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("verified")));
    let done = deliveries::list(&second.db, &company, None, 10)
        .await
        .unwrap();
    assert_eq!(
        (done.len(), done[0].status, done[0].attempts),
        (1, DeliveryStatus::Succeeded, 1)
    );
    // Nothing is delivered twice after the restart.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 1);
    second.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let env = standalone_env();
    let config = config_of(&env);
    let first = standalone::start(config.clone(), loopback()).await.unwrap();
    let refused = standalone::start(config.clone(), loopback())
        .await
        .map(|_| ())
        .unwrap_err();
    let msg = format!("{refused:#}");
    assert!(
        msg.contains("another TrueNumber standalone process") && msg.contains("DATA_DIR"),
        "{msg}"
    );
    // The first one is untouched by the attempt.
    let live = reqwest::get(format!("http://{}/health/live", first.addr))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    first.stop().await.unwrap();
    // Released on stop: the next start succeeds.
    standalone::start(config.clone(), loopback())
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

#[tokio::test]
async fn a_taken_port_is_refused_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let env = standalone_env();
    let config = config_of(&env);
    let refused = standalone::start(config.clone(), addr)
        .await
        .map(|_| ())
        .unwrap_err();
    let msg = format!("{refused:#}");
    assert!(msg.contains(&format!("cannot listen on {addr}")), "{msg}");
    assert!(
        !config.standalone_db_path().exists(),
        "a node that cannot listen created {}",
        config.standalone_db_path().display()
    );
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_new_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    use truenumber_migration::MigratorTrait;

    let env = standalone_env();
    let config = config_of(&env);
    let node = standalone::start(config.clone(), loopback()).await.unwrap();
    let company = unique("backup");
    let created = companies::create_company(&node.db, &company, "B Ltd", None)
        .await
        .unwrap();
    let key = created.api_key.expose().to_owned();
    let base = format!("http://{}", node.addr);
    let flow = Flow {
        client: reqwest::Client::new(),
        base: base.clone(),
    };
    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(flow.initiate(&key, &company).await);
    }
    // Writes go on while the copy is taken.
    let writer = {
        let flow = Flow {
            client: reqwest::Client::new(),
            base,
        };
        let (key, company) = (key.clone(), company.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                flow.initiate(&key, &company).await;
            }
        })
    };
    let file = std::env::temp_dir().join(format!("{}.db", unique("tn_backup")));
    let path = file.to_str().unwrap();
    let info = cli_json(&config, &["backup", "--to", path]).await;
    writer.await.unwrap();
    let latest = truenumber_migration::Migrator::migrations()
        .last()
        .unwrap()
        .name()
        .to_owned();
    assert_eq!(info["migration"], latest.as_str());
    assert_eq!(info["companies"], 1);
    let sessions = info["sessions"].as_i64().unwrap();
    assert!((10..=50).contains(&sessions), "{info}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A backup never overwrites.
    let again = cli_run(&config, &["backup", "--to", path])
        .await
        .unwrap_err();
    assert!(format!("{again:#}").contains("exists"), "{again:#}");
    // A restore under a running node is refused.
    let refused = cli_run(&config, &["restore", "--from", path])
        .await
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("another TrueNumber standalone process"),
        "{refused:#}"
    );
    node.stop().await.unwrap();

    // Into a new DATA_DIR: the backup's company, key and sessions serve there.
    let elsewhere = config_of(&standalone_env());
    let restored = cli_json(&elsewhere, &["restore", "--from", path]).await;
    assert_eq!(restored["restored"]["sessions"], sessions);
    assert_eq!(restored["replacedDatabaseKeptAt"], serde_json::Value::Null);
    let node = standalone::start(elsewhere.clone(), loopback())
        .await
        .unwrap();
    let flow = Flow {
        client: reqwest::Client::new(),
        base: format!("http://{}", node.addr),
    };
    // Every session committed before the backup began is there.
    for id in &before {
        let (code, body) = flow.status(&key, id).await;
        assert_eq!(
            (code, body["status"].as_str()),
            (200, Some("pending")),
            "{id}"
        );
    }
    flow.initiate(&key, &company).await;
    node.stop().await.unwrap();

    // Over an existing database: the one replaced is kept beside it, whole.
    let over = cli_json(&elsewhere, &["restore", "--from", path]).await;
    let kept = std::path::PathBuf::from(over["replacedDatabaseKeptAt"].as_str().unwrap());
    let kept_info = truenumber_core::storage::backup::inspect(&kept)
        .await
        .unwrap();
    assert_eq!(kept_info.sessions, sessions + 1);

    // Something that is not a backup is refused, and replaces nothing.
    let junk = std::env::temp_dir().join(unique("tn_not_a_backup"));
    std::fs::write(&junk, "not a database").unwrap();
    let err = cli_run(&elsewhere, &["restore", "--from", junk.to_str().unwrap()])
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("is not a TrueNumber backup"),
        "{err:#}"
    );
    let current = truenumber_core::storage::backup::inspect(&elsewhere.standalone_db_path())
        .await
        .unwrap();
    assert_eq!(current.sessions, sessions);

    // Production backs up PostgreSQL with its own tools.
    let production = production_env();
    let err = cli::config_for(&Command::Backup { to: file.clone() }, |n| {
        production.get(n).cloned()
    })
    .unwrap_err();
    assert!(format!("{err}").contains("pg_dump"), "{err}");

    for f in [&file, &junk] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_file(&kept);
    let _ = std::fs::remove_dir_all(&config.data_dir);
    let _ = std::fs::remove_dir_all(&elsewhere.data_dir);
}

#[tokio::test]
async fn serve_and_the_worker_refuse_sqlite() {
    let mut env = production_env();
    env.insert("DATABASE_URL".into(), "sqlite://./x.db".into());
    let serve = cli::config_for(&Command::Serve, |n| env.get(n).cloned()).unwrap_err();
    assert!(
        format!("{serve}").contains("DATABASE_URL: SQLite serves standalone mode only"),
        "{serve}"
    );
    let worker = Config::worker_from_lookup(|n| env.get(n).cloned()).unwrap_err();
    assert_eq!(worker.var, "DATABASE_URL");
    // And standalone takes no DATABASE_URL at all.
    let mut env = standalone_env();
    env.insert(
        "DATABASE_URL".into(),
        "postgresql://postgres@127.0.0.1/x".into(),
    );
    let standalone = cli::config_for(&Command::Standalone, |n| env.get(n).cloned()).unwrap_err();
    assert!(format!("{standalone}").contains("takes no DATABASE_URL"));
    let _ = std::fs::remove_dir_all(env["DATA_DIR"].as_str());
}

#[tokio::test]
async fn operator_commands_find_the_standalone_data() {
    let env = standalone_env();
    let config = config_of(&env);
    // Before the data exists, operator commands are production mode.
    let lookup = |n: &str| env.get(n).cloned();
    assert!(!standalone::operator_uses_standalone(&lookup));
    standalone::start(config.clone(), loopback())
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    assert!(standalone::operator_uses_standalone(&lookup));
    let company = Command::Company {
        command: cli::CompanyCommand::List,
    };
    let op = cli::config_for(&company, lookup).unwrap();
    assert_eq!(op.mode, Mode::Standalone);
    assert_eq!(
        op.jwt_secret, config.jwt_secret,
        "app-token signs with the kept secret"
    );
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

#[tokio::test]
#[ignore = "entry point of standalone processes started by the crash test"]
async fn standalone_process() {
    let env: HashMap<String, String> =
        serde_json::from_str(&std::env::var("TN_TEST_PROCESS_ENV").unwrap()).unwrap();
    standalone::run(config_of(&env), std::future::pending())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retry_due_while_the_process_was_killed_goes_out_after_restart() {
    let receiver = TestReceiver::start().await;
    // The first attempt fails; the retry is due 3 s later.
    receiver.script(&[Reply::Status(500)]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = standalone_env();
    env.insert("PORT".into(), port.to_string());
    env.insert("WEBHOOK_RETRY_SCHEDULE".into(), "3".into());
    let config = config_of(&env);
    // Make the data (migrated, with a company) before the process starts.
    let setup = standalone::start(config.clone(), loopback()).await.unwrap();
    let company = unique("crash");
    let created = companies::create_company(&setup.db, &company, "C Ltd", Some(&receiver.url))
        .await
        .unwrap();
    setup.stop().await.unwrap();
    let key = created.api_key.expose().to_owned();

    let base = format!("http://127.0.0.1:{port}");
    let flow = Flow {
        client: reqwest::Client::new(),
        base: base.clone(),
    };
    let up = || async {
        eventually(Duration::from_secs(30), || {
            let url = format!("{base}/health/live");
            async move { reqwest::get(url).await.ok().filter(|r| r.status() == 200) }
        })
        .await;
    };
    let mut child = spawn_process("standalone::standalone_process", &env);
    up().await;
    let vid = flow.initiate(&key, &company).await;
    flow.submit(&config, &vid).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    // Killed outright, right after the failed attempt was recorded (its retry time with it).
    let db = db::connect(&config).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        deliveries::list(&db, &company, None, 1)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.attempts == 1)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // The retry falls due while nothing runs.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.received().len(), 1);
    let pending = deliveries::list(&db, &company, None, 1).await.unwrap();
    assert_eq!(pending[0].status, DeliveryStatus::Pending);
    assert!(pending[0].next_attempt_at.unwrap() < chrono::Utc::now());

    let mut child = spawn_process("standalone::standalone_process", &env);
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].headers["webhook-id"], got[0].headers["webhook-id"]);
    let done = eventually(Duration::from_secs(10), || async {
        deliveries::list(&db, &company, None, 1)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.status == DeliveryStatus::Succeeded)
    })
    .await;
    assert_eq!(done.attempts, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    db.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&config.data_dir);
}
