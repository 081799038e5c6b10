//! Standalone mode's SQLite under its own loops (issue 23). sqlx-sqlite records a statement's
//! columns when it first prepares it; SQLite re-prepares a statement after any schema change,
//! and a `*` then yields more columns than recorded, which crashed the connection's worker
//! thread (`index out of bounds: the len is 11 but the index is 11`). Two ways led there:
//! pool connections that read the schema while another migrated (every fresh start), and a
//! schema change by another process while the node runs (a newer release's `migrate`). And a
//! crash inside a transaction could leave the write lock held by a dead connection.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Once,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DbBackend, Statement, TransactionTrait,
    sqlx::{self, ConnectOptions as _, Executor as _, SqlSafeStr as _, SqliteConnection},
};
use serde_json::json;
use truenumber_api::standalone;
use truenumber_core::{
    companies,
    companies::api_keys,
    config::Config,
    phone::parse_mobile_number,
    queue::{InProcessQueue, Queue},
    storage::db,
    verification,
    verification::{expiry, retention},
    webhooks::deliveries::{self, AttemptRecord, DeliveryStatus, NextStep},
    webhooks::events,
};

use crate::helpers::{Reply, TestReceiver, eventually, production_env, unique};

/// Panics of sqlx's SQLite worker threads in this process (each test runs in its own process
/// under nextest). Such a panic does not fail the task that sent the statement: it only
/// shows as a dead connection, so it is counted here.
static DATABASE_WORKER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_database_worker_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("sqlx-sqlite-worker"))
            {
                DATABASE_WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// A standalone environment on a fresh `DATA_DIR`, with `overrides`.
fn standalone_env(overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = production_env();
    for k in ["DATABASE_URL", "JWT_SECRET"] {
        env.remove(k);
    }
    let dir = std::env::temp_dir().join(unique("tn_test"));
    env.insert("DATA_DIR".into(), dir.display().to_string());
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    env
}

fn config_of(env: &HashMap<String, String>) -> Config {
    standalone::config_from_lookup(|n| env.get(n).cloned(), true).unwrap()
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A connection of another process's kind: not from the node's pool.
async fn outside(path: &std::path::Path) -> SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

/// What a newer release's migration does to a running node's database: a column more on
/// every table the loops read whole rows of (`n` makes each change new).
async fn add_columns(conn: &mut SqliteConnection, n: usize) {
    for table in [
        "verification_sessions",
        "verification_events",
        "webhook_deliveries",
        "companies",
        "api_keys",
    ] {
        conn.execute(
            sqlx::AssertSqlSafe(format!("ALTER TABLE {table} ADD COLUMN later_{n} TEXT"))
                .into_sql_str(),
        )
        .await
        .unwrap();
    }
}

/// A fresh database file, opened as standalone mode opens it.
async fn fresh_database(pool_size: u32) -> (sea_orm::DatabaseConnection, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique("tn_test"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truenumber.db");
    (db::open_sqlite(&path, pool_size).await.unwrap(), path)
}

/// Runs of a fresh node, sessions per run, and how many first attempts the receiver refuses
/// per run (so the dispatcher's retries run too).
const RUNS: usize = 10;
const SESSIONS: usize = 30;
const REFUSED: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_delivery_loops_hold_over_many_short_runs() {
    count_database_worker_panics();
    let receiver = TestReceiver::start().await;
    let client = reqwest::Client::new();
    for run in 0..RUNS {
        let env = standalone_env(&[
            ("VERIFICATION_TTL_SECONDS", "1"),
            ("SWEEP_INTERVAL_SECONDS", "1"),
            ("WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1"),
            ("RATE_LIMIT_INITIATE_PER_HOUR", "100000"),
        ]);
        let config = config_of(&env);
        let node = standalone::start(config.clone(), loopback()).await.unwrap();
        let company = unique("stress");
        let created = companies::create_company(&node.db, &company, "S Ltd", Some(&receiver.url))
            .await
            .unwrap();
        let key = created.api_key.expose().to_owned();
        receiver.script(&[Reply::Status(500); REFUSED]);
        let base = format!("http://{}", node.addr);
        let initiated = futures::future::join_all((0..SESSIONS).map(|i| {
            let (client, base, key, company) = (&client, &base, &key, &company);
            async move {
                client
                    .post(format!("{base}/api/v1/verification/initiate"))
                    .bearer_auth(key)
                    .json(
                        &json!({"mobileNumber": "+447911123456", "companyId": company,
                                  "requestId": format!("r{i}")}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        }))
        .await;
        assert!(
            initiated.iter().all(|s| *s == 200),
            "run {run}: {initiated:?}"
        );
        // While they are pending, another process changes the schema under the node's
        // cached statements.
        add_columns(&mut outside(&config.standalone_db_path()).await, run).await;
        // Every session expires (the sweep) and its webhook is delivered, some only on a
        // retry (the dispatcher).
        let db = node.db.clone();
        let delivered = eventually(Duration::from_secs(30), || {
            let (db, company) = (db.clone(), company.clone());
            async move {
                let done = deliveries::list(&db, &company, Some(DeliveryStatus::Succeeded), 100)
                    .await
                    .ok()?;
                (done.len() == SESSIONS).then_some(done)
            }
        })
        .await;
        assert!(
            delivered.iter().any(|d| d.attempts > 1),
            "run {run}: some deliveries went out on a retry"
        );
        node.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&config.data_dir);
        assert_eq!(
            DATABASE_WORKER_PANICS.load(Ordering::SeqCst),
            0,
            "run {run}: a SQLite worker thread panicked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pool_connection_starts_with_an_older_schema() {
    for _ in 0..10 {
        let (db, path) = fresh_database(4).await;
        let pool = db.get_sqlite_connection_pool().clone();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            // sqlx's prepare reports the columns SQLite sees before any step: a connection
            // that read the schema during the migrations sees fewer.
            let statement = conn
                .prepare(sqlx::AssertSqlSafe("SELECT * FROM verification_sessions").into_sql_str())
                .await
                .unwrap();
            assert_eq!(
                sqlx::Statement::columns(&statement).len(),
                <truenumber_entities::verification_session::Column as sea_orm::Iterable>::iter()
                    .count()
            );
        }
        drop(held);
        db.close().await.unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

/// Rounds of every statement the standalone loops run, and how often another process
/// changes the schema meanwhile.
const ROUNDS: usize = 2000;
const SCHEMA_CHANGE_EVERY: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loop_statement_holds_over_thousands_of_rounds_and_schema_changes() {
    count_database_worker_panics();
    let (db, path) = fresh_database(4).await;
    let created =
        companies::create_company(&db, "loops", "L Ltd", Some("https://hooks.example.com/t"))
            .await
            .unwrap();
    let queue = InProcessQueue::new(db.clone(), Duration::from_secs(60));
    let mut receiver = queue.take_receiver().await.unwrap();
    let handed = tokio::spawn(async move {
        let mut n = 0usize;
        while receiver.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let publish_to = Queue::InProcess(queue.clone());
    let number = parse_mobile_number("+447911123456").unwrap();
    let mut outside = outside(&path).await;
    let mut totals = [0usize; 6];
    for round in 0..ROUNDS {
        if round % SCHEMA_CHANGE_EVERY == SCHEMA_CHANGE_EVERY / 2 {
            add_columns(&mut outside, round).await;
        }
        let request_id = format!("r{round}");
        // Initiate with no lifetime: due for the sweep at once.
        verification::initiate(
            &db,
            verification::NewSession {
                company_id: "loops",
                livemode: true,
                request_id: &request_id,
                mobile_number: &number,
                number_matching: false,
                deny_cooldown: Duration::from_secs(86_400),
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
        // The sweep: the update of due sessions and their events.
        let expired = expiry::expire_due_sessions(&db, 500).await.unwrap();
        totals[0] += expired.len();
        // The relay: claims, publishes (event target, delivery row, claim), marks.
        totals[1] += events::relay_unpublished(&db, &publish_to, Duration::ZERO, 200)
            .await
            .unwrap();
        // Retries: the attempt and the delivery's state, then the dispatcher's claim.
        for event_id in &expired {
            let delivery =
                deliveries::get_or_create(&db, event_id, "loops", "https://hooks.example.com/t")
                    .await
                    .unwrap();
            deliveries::record_attempt(
                &db,
                delivery.id,
                &AttemptRecord {
                    attempt: delivery.attempts + 1,
                    url: delivery.url.clone(),
                    status_code: Some(500),
                    latency_ms: 1,
                    error: None,
                    next: NextStep::RetryAt(chrono::Utc::now()),
                },
            )
            .await
            .unwrap();
            totals[2] += 1;
        }
        totals[3] += publish_to_dispatch(&queue).await;
        // The last-used note (a new minute each round, so it writes every time).
        let later = truenumber_core::storage::sql::now()
            + chrono::Duration::minutes(i64::try_from(round).unwrap() * 2);
        totals[4] += usize::try_from(
            api_keys::note_key_use(&db, &created.key_lookup_id, later)
                .await
                .unwrap(),
        )
        .unwrap();
        // Retention: the round's session, backdated, goes with its event and delivery.
        db.execute_raw(Statement::from_string(
            DbBackend::Sqlite,
            "UPDATE verification_sessions SET completed_at = '2000-01-01T00:00:00+00:00' \
             WHERE completed_at IS NOT NULL",
        ))
        .await
        .unwrap();
        totals[5] += usize::try_from(
            retention::apply_retention(&db, 1, 500)
                .await
                .unwrap()
                .sessions,
        )
        .unwrap();
    }
    assert_eq!(DATABASE_WORKER_PANICS.load(Ordering::SeqCst), 0);
    assert_eq!(
        totals, [ROUNDS; 6],
        "expired, relayed, attempts, dispatched, noted, deleted"
    );
    drop(queue);
    drop(publish_to);
    db.close().await.unwrap();
    let _ = handed.await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// One pass of the standalone dispatcher; how many it handed over.
async fn publish_to_dispatch(queue: &InProcessQueue) -> usize {
    queue
        .dispatch_due(200, Duration::from_secs(1))
        .await
        .unwrap()
}

/// The sqlx worker thread of a connection crashes inside a write transaction, and the next
/// statement is sent while the thread is still unwinding (made certain here by a panic hook
/// that takes its time): sqlx queues it for a thread that never reads it, so without a bound
/// the transaction waits forever and its dead connection keeps SQLite's write lock. Bounded,
/// the transaction is abandoned, the connection discarded, and the lock released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crash_inside_a_transaction_does_not_keep_the_write_lock() {
    db::report_sqlite_worker_crashes();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("sqlx-sqlite-worker"))
        {
            DATABASE_WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(500));
        }
        previous(info);
    }));
    let (migrated, path) = fresh_database(1).await;
    migrated.close().await.unwrap();
    // One connection, so the statement cached below is the one the transaction runs.
    let db = db::connect_sqlite(&path, 1).await.unwrap();
    companies::create_company(&db, "crash", "C Ltd", None)
        .await
        .unwrap();
    // A statement that names no columns, cached; then the schema changes underneath it.
    let star = || {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT * FROM companies WHERE company_id = $1",
            ["crash".into()],
        )
    };
    db.query_all_raw(star()).await.unwrap();
    add_columns(&mut outside(&path).await, 0).await;

    let started = std::time::Instant::now();
    let limit = Duration::from_secs(3);
    let result: Result<(), sea_orm::DbErr> = db::within(limit, async {
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_string(
            DbBackend::Sqlite,
            "UPDATE companies SET name = 'Crashed Ltd'",
        ))
        .await?;
        // The write lock is held; this statement crashes the connection's thread.
        txn.query_all_raw(star()).await?;
        txn.commit().await
    })
    .await;
    assert!(
        result.is_err(),
        "the transaction cannot commit on a dead connection"
    );
    assert!(started.elapsed() < limit + Duration::from_secs(1));
    assert_eq!(DATABASE_WORKER_PANICS.load(Ordering::SeqCst), 1);

    // The lock is free again (the dead connection was closed, which rolled back its write),
    // and the pool serves writes on a new connection.
    let mut other = outside(&path).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while other
        .execute(sqlx::AssertSqlSafe("BEGIN IMMEDIATE").into_sql_str())
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the write lock is still held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other
        .execute(sqlx::AssertSqlSafe("ROLLBACK").into_sql_str())
        .await
        .unwrap();
    let renamed = db
        .execute_raw(Statement::from_string(
            DbBackend::Sqlite,
            "UPDATE companies SET name = 'Recovered Ltd' WHERE name = 'C Ltd'",
        ))
        .await
        .unwrap();
    assert_eq!(
        renamed.rows_affected(),
        1,
        "the crashed transaction was rolled back"
    );
    db.close().await.unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
