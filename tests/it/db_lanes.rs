//! The API's dedicated request connections (`core/src/storage/lanes.rs`) against the real
//! PostgreSQL: what the pool's release ping protected against still cannot happen.

use std::time::{Duration, Instant};

use sea_orm::{ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use truenumber_core::{
    config::Config,
    storage::db,
    storage::lanes::{ApiConnections, ConnectionLanes, LaneOptions, STATEMENT_TIMEOUT, api_split},
};

use crate::helpers::base_env;

async fn setup_with(options: LaneOptions) -> (ConnectionLanes, DatabaseConnection) {
    let config = Config::from_map(&base_env()).unwrap();
    let admin = db::connect(&config).await.unwrap(); // also creates the database
    (ConnectionLanes::start(&config, options), admin)
}

async fn setup(lanes: usize, queue_timeout: Duration) -> (ConnectionLanes, DatabaseConnection) {
    setup_with(LaneOptions {
        queue_timeout,
        ..LaneOptions::new(lanes)
    })
    .await
}

/// Terminates every connection of the lanes (as an operator or a failover would); how many.
async fn kill_lane_connections(admin: &DatabaseConnection) -> i64 {
    scalar(
        admin,
        "SELECT count(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'truenumber-api'",
    )
    .await
    .unwrap()
}

/// The one `int8` a statement returns, through lanes or the pool alike.
async fn scalar(db: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .expect("one row");
    Ok(row.try_get_by_index::<i64>(0).unwrap())
}

/// The server process behind the (single) lane: the same pid means the same connection.
async fn backend_pid(lanes: &ConnectionLanes) -> i64 {
    scalar(lanes, "SELECT pg_backend_pid()::int8")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dropped_request_leaves_its_lane_usable_and_in_order() {
    let (lanes, _admin) = setup(1, Duration::from_secs(5)).await;
    let pid = backend_pid(&lanes).await;
    // The caller gives up while its statement runs; the lane finishes it regardless.
    let slow = tokio::time::timeout(
        Duration::from_millis(50),
        scalar(&lanes, "SELECT 7::int8 FROM pg_sleep(0.3)"),
    )
    .await;
    assert!(slow.is_err(), "the slow statement should still be running");
    // The next statement gets its own answer, not the abandoned one's, on the same connection.
    assert_eq!(scalar(&lanes, "SELECT 42::int8").await.unwrap(), 42);
    assert_eq!(backend_pid(&lanes).await, pid);
}

#[tokio::test]
async fn a_statement_error_keeps_the_connection() {
    let (lanes, _admin) = setup(1, Duration::from_secs(5)).await;
    let pid = backend_pid(&lanes).await;
    let err = scalar(&lanes, "SELECT (1 / 0)::int8").await.unwrap_err();
    assert!(matches!(err, DbErr::Query(_)), "{err:?}");
    assert!(err.to_string().contains("division by zero"), "{err}");
    assert_eq!(backend_pid(&lanes).await, pid);
}

#[tokio::test]
async fn killed_connections_are_replaced() {
    let (lanes, admin) = setup(2, Duration::from_secs(5)).await;
    for _ in 0..4 {
        assert_eq!(scalar(&lanes, "SELECT 1::int8").await.unwrap(), 1);
    }
    assert_eq!(
        kill_lane_connections(&admin).await,
        2,
        "both lanes had their own connection"
    );
    // Each lane fails at most its next statement (a connection error: a 503), then reconnects.
    let mut failures = 0;
    let mut successes = 0;
    while successes < 4 {
        match scalar(&lanes, "SELECT 1::int8").await {
            Ok(1) => successes += 1,
            Ok(other) => panic!("wrong answer {other}"),
            Err(e) => {
                assert!(matches!(e, DbErr::Conn(_)), "{e:?}");
                failures += 1;
                assert!(failures <= 2, "a lane failed twice: {e}");
            }
        }
    }
}

#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_use() {
    let (lanes, admin) = setup_with(LaneOptions {
        ping_if_idle_for: Duration::from_millis(200),
        ..LaneOptions::new(1)
    })
    .await;
    let pid = backend_pid(&lanes).await;
    assert_eq!(kill_lane_connections(&admin).await, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Idle past the threshold: the lane pings, finds the connection dead, reconnects, and
    // the request never sees the failure.
    let new_pid = backend_pid(&lanes).await;
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn every_kind_of_statement_runs_through_the_connection_trait() {
    let (lanes, _admin) = setup(2, Duration::from_secs(5)).await;
    lanes
        .execute_unprepared("CREATE TABLE lane_items (n int8 PRIMARY KEY)")
        .await
        .unwrap();
    let inserted = lanes
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO lane_items SELECT generate_series(1, $1)",
            [3i64.into()],
        ))
        .await
        .unwrap();
    assert_eq!(inserted.rows_affected(), 3);
    let rows = lanes
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT n FROM lane_items ORDER BY n",
        ))
        .await
        .unwrap();
    let ns: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0).unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3]);
    let none = lanes
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT n FROM lane_items WHERE n > 10",
        ))
        .await
        .unwrap();
    assert!(none.is_none());
    // A constraint violation is a statement error (the connection lives on), not a 503.
    let dup = lanes
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "INSERT INTO lane_items VALUES (1)",
        ))
        .await
        .unwrap_err();
    assert!(matches!(dup, DbErr::Exec(_)), "{dup:?}");
    assert_eq!(lanes.lanes(), 2);
}

#[tokio::test]
async fn statements_that_waited_too_long_are_refused_unrun() {
    let (lanes, admin) = setup(1, Duration::from_millis(100)).await;
    admin
        .execute_unprepared("CREATE TABLE lane_marks (n int)")
        .await
        .unwrap();
    let busy = {
        let lanes = lanes.clone();
        tokio::spawn(async move { scalar(&lanes, "SELECT 1::int8 FROM pg_sleep(0.5)").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = lanes
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "INSERT INTO lane_marks VALUES (1)",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        "{err:?}"
    );
    assert_eq!(busy.await.unwrap().unwrap(), 1);
    // One lane runs in arrival order: once a later statement answers, the refused one is past.
    assert_eq!(scalar(&lanes, "SELECT 2::int8").await.unwrap(), 2);
    let marks = scalar(&admin, "SELECT count(*)::int8 FROM lane_marks")
        .await
        .unwrap();
    assert_eq!(marks, 0, "a refused statement must not have run");
}

#[tokio::test]
async fn a_caller_behind_a_long_statement_is_refused_at_the_queue_timeout_not_after_it() {
    let (lanes, admin) = setup(1, Duration::from_millis(200)).await;
    admin
        .execute_unprepared("CREATE TABLE lane_marks (n int)")
        .await
        .unwrap();
    backend_pid(&lanes).await; // connected, so the wait below is all queueing
    let blocking = {
        let lanes = lanes.clone();
        tokio::spawn(async move { scalar(&lanes, "SELECT 1::int8 FROM pg_sleep(3)").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let err = lanes
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "INSERT INTO lane_marks VALUES (1)",
        ))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        "{err:?}"
    );
    // The refusal comes while the 3 s statement still holds the only lane: the caller's wait
    // is bounded by the queue timeout, not by whatever runs ahead of it.
    assert!(
        !blocking.is_finished(),
        "refused only after the blocking statement ended ({waited:?})"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert_eq!(blocking.await.unwrap().unwrap(), 1);
    // The refused statement stayed queued behind the long one; it must never run later.
    assert_eq!(scalar(&lanes, "SELECT 2::int8").await.unwrap(), 2);
    let marks = scalar(&admin, "SELECT count(*)::int8 FROM lane_marks")
        .await
        .unwrap();
    assert_eq!(marks, 0, "a refused statement ran after its refusal");
}

#[tokio::test]
async fn callers_beyond_a_full_queue_are_refused_at_the_queue_timeout_too() {
    let (lanes, _admin) = setup(1, Duration::from_millis(300)).await;
    backend_pid(&lanes).await;
    let blocking = {
        let lanes = lanes.clone();
        tokio::spawn(async move { scalar(&lanes, "SELECT 1::int8 FROM pg_sleep(3)").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // More callers than one lane's queue holds (256): the last ones wait to enqueue at all.
    let callers: Vec<_> = (0..400)
        .map(|_| {
            let lanes = lanes.clone();
            tokio::spawn(async move { scalar(&lanes, "SELECT 3::int8").await })
        })
        .collect();
    for caller in callers {
        let err = caller.await.unwrap().unwrap_err();
        assert!(
            matches!(err, DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            "{err:?}"
        );
    }
    assert!(
        !blocking.is_finished(),
        "a caller was answered only after the blocking statement ended"
    );
    assert_eq!(blocking.await.unwrap().unwrap(), 1);
    assert_eq!(scalar(&lanes, "SELECT 2::int8").await.unwrap(), 2);
}

/// The lane's `statement_timeout` setting, as the server reports it.
async fn statement_timeout_setting(lanes: &ConnectionLanes) -> String {
    let row = lanes
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('statement_timeout')",
        ))
        .await
        .unwrap()
        .expect("one row");
    row.try_get_by_index::<String>(0).unwrap()
}

#[tokio::test]
async fn statement_timeout_cuts_a_long_statement_and_keeps_the_connection() {
    let (lanes, _admin) = setup_with(LaneOptions {
        statement_timeout: Duration::from_millis(300),
        ..LaneOptions::new(1)
    })
    .await;
    let pid = backend_pid(&lanes).await;
    assert_eq!(statement_timeout_setting(&lanes).await, "300ms");
    let started = Instant::now();
    let err = scalar(&lanes, "SELECT 1::int8 FROM pg_sleep(10)")
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A statement error (SQLSTATE 57014; a 500 like any failed statement), not a lost
    // connection: the lane keeps its connection.
    assert!(matches!(err, DbErr::Query(_)), "{err:?}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert_eq!(backend_pid(&lanes).await, pid);
}

#[tokio::test]
async fn lanes_run_with_the_documented_statement_timeout_by_default() {
    let (lanes, _admin) = setup(1, Duration::from_secs(5)).await;
    assert_eq!(STATEMENT_TIMEOUT, Duration::from_secs(5));
    assert_eq!(statement_timeout_setting(&lanes).await, "5s");
}

#[tokio::test]
async fn an_api_node_never_holds_more_connections_than_its_budget() {
    const BUDGET: u32 = 5;
    let mut env = base_env();
    env.insert("DATABASE_MAX_CONNECTIONS".into(), BUDGET.to_string());
    let config = Config::from_map(&env).unwrap();
    let node = ApiConnections::open(&config).await.unwrap();
    let (pool_size, lanes) = api_split(BUDGET);
    assert_eq!((pool_size, lanes), (1, 4));
    // A connection of its own to count from (excluded from the count by its pid).
    let mut opts = sea_orm::ConnectOptions::new(config.database_url.expose().to_owned());
    opts.max_connections(1).sqlx_logging(false);
    let counter = sea_orm::Database::connect(opts).await.unwrap();
    let count_sql = "SELECT count(*)::int8 FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()";

    // Let the connection that created the database finish closing, so only the node's count.
    for _ in 0..100 {
        if scalar(&counter, count_sql).await.unwrap() <= i64::from(pool_size) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // More work than connections, on both sides at once: every lane and the whole pool busy.
    let mut work = Vec::new();
    for _ in 0..12 {
        let lanes = node.lanes.clone();
        work.push(tokio::spawn(async move {
            scalar(&lanes, "SELECT 1::int8 FROM pg_sleep(0.3)").await
        }));
    }
    for _ in 0..3 {
        let pool = node.pool.clone();
        work.push(tokio::spawn(async move {
            scalar(&pool, "SELECT 1::int8 FROM pg_sleep(0.3)").await
        }));
    }
    let mut peak = 0;
    while !work.iter().all(|w| w.is_finished()) {
        peak = peak.max(scalar(&counter, count_sql).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in work {
        assert_eq!(w.await.unwrap().unwrap(), 1);
    }
    assert!(
        peak <= i64::from(BUDGET),
        "{peak} connections for a budget of {BUDGET}"
    );
    // Saturated, the node does use its whole budget (so the count above saw its connections).
    assert_eq!(peak, i64::from(BUDGET));

    // A budget too small to hold one pooled connection and one lane is refused.
    env.insert("DATABASE_MAX_CONNECTIONS".into(), "1".into());
    let err = ApiConnections::open(&Config::from_map(&env).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("DATABASE_MAX_CONNECTIONS=1"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_as_a_connection_error() {
    let mut env = base_env();
    env.insert(
        "DATABASE_URL".into(),
        "postgresql://postgres@127.0.0.1:1/nothing".into(),
    );
    let config = Config::from_map(&env).unwrap();
    let lanes = ConnectionLanes::start(&config, LaneOptions::new(2));
    for _ in 0..5 {
        let started = Instant::now();
        let err = scalar(&lanes, "SELECT 1::int8").await.unwrap_err();
        assert!(matches!(err, DbErr::Conn(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}
