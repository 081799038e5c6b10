//! Standalone's database write lock held from outside, through the real binary
//! (`truenumber-api standalone`), with small bounds: health answers 503 with the reason
//! within `SQLITE_BUSY_UNHEALTHY_SECONDS` and recovers when the lock is released; held past
//! `SQLITE_UNWRITABLE_EXIT_SECONDS`, the process exits 1 with one error line.
//!
//! It lives beside the binary (not in `tests/it`) because only a package's own tests can
//! start its binaries (`CARGO_BIN_EXE_…`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sea_orm::sqlx::{
    self, ConnectOptions as _, Executor as _, SqlSafeStr as _, SqliteConnection,
    sqlite::SqliteConnectOptions,
};

const UNHEALTHY_SECONDS: u64 = 2;
const EXIT_SECONDS: u64 = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_truenumber-api"))
        .arg("standalone")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .env(
            "SQLITE_BUSY_UNHEALTHY_SECONDS",
            UNHEALTHY_SECONDS.to_string(),
        )
        .env("SQLITE_UNWRITABLE_EXIT_SECONDS", EXIT_SECONDS.to_string())
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("LLVM_PROFILE")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `GET path` on the node: status and JSON body, or `None` while it does not answer.
async fn get(client: &reqwest::Client, port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let resp = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.ok()?))
}

/// Polls until `ready` holds for `GET path`, for at most `limit`; returns the body.
async fn until(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    limit: Duration,
    ready: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((status, body)) = get(client, port, path).await
            && ready(status, &body)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} not as expected within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Another process's connection holding SQLite's write lock.
async fn hold_write_lock(db: &Path) -> SqliteConnection {
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    conn.execute(sqlx::AssertSqlSafe("BEGIN IMMEDIATE").into_sql_str())
        .await
        .unwrap();
    conn
}

struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_write_lock_held_from_outside_turns_health_503_and_then_ends_the_process() {
    let dir = DataDir(std::env::temp_dir().join(format!(
        "tn_test_write_lock_{}",
        uuid::Uuid::new_v4().simple()
    )));
    let port = free_port();
    let mut child = start(&dir.0, port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    until(
        &client,
        port,
        "/health/ready",
        Duration::from_secs(60),
        |s, _| s == 200,
    )
    .await;
    let db = dir.0.join("truenumber.db");

    // Held: 503 with the reason, within the bound (and the probe's second).
    let taken = Instant::now();
    let lock = hold_write_lock(&db).await;
    let health = until(
        &client,
        port,
        "/health",
        Duration::from_secs(UNHEALTHY_SECONDS + 4),
        |s, _| s == 503,
    )
    .await;
    assert!(taken.elapsed() >= Duration::from_secs(UNHEALTHY_SECONDS));
    let reason = health["checks"]["database"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the database has not been writable for "),
        "{reason}"
    );
    assert!(
        reason.ends_with("another connection holds its write lock (SQLITE_BUSY)"),
        "{reason}"
    );
    assert_eq!(health["status"], "degraded");
    let (status, ready) = get(&client, port, "/health/ready").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(ready["checks"]["database"], "down");
    assert!(
        ready["reasons"]["database"]
            .as_str()
            .unwrap()
            .contains("SQLITE_BUSY")
    );
    // `/health/live` only says the process serves.
    assert_eq!(get(&client, port, "/health/live").await.unwrap().0, 200);

    // Released: healthy again.
    drop(lock);
    let ready = until(
        &client,
        port,
        "/health/ready",
        Duration::from_secs(5),
        |s, _| s == 200,
    )
    .await;
    assert!(ready.get("reasons").is_none());
    assert!(
        child.try_wait().unwrap().is_none(),
        "a lock held shorter than the exit bound does not end the process"
    );

    // Held past the exit bound: the process exits 1, with one clear line on stderr.
    let taken = Instant::now();
    let lock = hold_write_lock(&db).await;
    let deadline = Instant::now() + Duration::from_secs(EXIT_SECONDS + 20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(taken.elapsed() >= Duration::from_secs(EXIT_SECONDS));
    drop(lock);
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: the database has not been writable for "),
        "{stderr}"
    );
    assert!(
        lines[0].ends_with(&format!(
            "another connection holds its write lock (SQLITE_BUSY) (the limit is \
             SQLITE_UNWRITABLE_EXIT_SECONDS={EXIT_SECONDS}); exiting so that a supervisor \
             restarts TrueNumber"
        )),
        "{stderr}"
    );
}
