//! `truenumber-dbbench`: the API's two hot statements — the status `SELECT`
//! ([`FIND_FOR_COMPANY_SQL`]) and the initiate `INSERT` ([`INITIATE_SQL`]) — run through three
//! executors in one run, on one machine, at the same connection count and concurrency:
//!
//! - **lanes**: the API's own [`ConnectionLanes`], through sea-orm's `ConnectionTrait` (the
//!   path the API takes);
//! - **deadpool**: `deadpool-postgres` with `RecyclingMethod::Fast` (no query when a
//!   connection goes back) over `tokio-postgres`, with its per-connection statement cache,
//!   called directly — its best case: no adapter to sea-orm, no row conversion;
//! - **deadpool+rows**: the same, plus the least an adapter to sea-orm's `ConnectionTrait`
//!   must do (sea-orm has no tokio-postgres backend; its `proxy` hook takes rows as maps of
//!   `sea_orm::Value`): the sea-orm `Statement` as the API builds it, its values converted to
//!   tokio-postgres parameters, each returned row converted to a column → `Value` map;
//! - **sqlx-pool**: the sqlx pool behind sea-orm, configured as the API's pool
//!   (`db::connect_sized`), which pings each connection it takes back.
//!
//! It makes a database on the server (migrated, 100 000 sessions, analysed, as
//! `scripts/loadtest` does for pgbench), runs `--rounds` rounds of every statement through
//! every executor (the order rotates per round; one warm-up second each), prints throughput,
//! p50 and p99 per statement and executor, and drops the database. All three use the same URL
//! with `sslmode=disable`: TLS costs each of them the same per round trip and is not what is
//! compared. `scripts/dbbench` runs it; docs/PERFORMANCE.md has a run.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use deadpool_postgres::{
    Manager, ManagerConfig, Pool, RecyclingMethod,
    tokio_postgres::{self, NoTls, types::ToSql},
};
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use truenumber_core::{
    config::Config,
    storage::db,
    storage::lanes::{ConnectionLanes, LaneOptions},
    verification::{FIND_FOR_COMPANY_SQL, INITIATE_SQL},
};

/// Lanes vs deadpool-postgres vs the sqlx pool on TrueNumber's hot statements.
#[derive(Debug, Parser)]
#[command(name = "truenumber-dbbench", version, about)]
struct Args {
    /// The PostgreSQL server, without a database name; a fresh database is made there and
    /// dropped afterwards.
    #[arg(long, default_value = "postgresql://postgres@127.0.0.1:5432")]
    server: String,
    /// Connections per executor (the API's lanes for `DATABASE_MAX_CONNECTIONS=10`).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Concurrent callers (tasks) per measurement.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// Seconds per statement, executor and round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds; each runs every statement through every executor.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Sessions made before measuring (status reads random ones).
    #[arg(long, default_value_t = 100_000)]
    sessions: u32,
}

/// The statements measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Hot {
    Status,
    Initiate,
}

impl Hot {
    fn name(self) -> &'static str {
        match self {
            Hot::Status => "status SELECT",
            Hot::Initiate => "initiate INSERT",
        }
    }
}

/// What runs a statement.
#[derive(Clone)]
enum Executor {
    Lanes(ConnectionLanes),
    Deadpool(Pool),
    DeadpoolRows(Pool),
    SqlxPool(DatabaseConnection),
}

impl Executor {
    fn name(&self) -> &'static str {
        match self {
            Executor::Lanes(_) => "lanes",
            Executor::Deadpool(_) => "deadpool",
            Executor::DeadpoolRows(_) => "deadpool+rows",
            Executor::SqlxPool(_) => "sqlx-pool",
        }
    }

    /// A short name for the ids it makes.
    fn tag(&self) -> &'static str {
        match self {
            Executor::Lanes(_) => "la",
            Executor::Deadpool(_) => "dp",
            Executor::DeadpoolRows(_) => "dr",
            Executor::SqlxPool(_) => "sq",
        }
    }

    /// Runs `hot` once with the values of call `n` of caller `caller`; the rows it returned.
    async fn run(&self, hot: Hot, tag: &str, n: u64, sessions: u32) -> anyhow::Result<usize> {
        // Status reads a pseudo-random existing session; initiate makes a new one each time.
        let (id, request) = match hot {
            Hot::Status => {
                let k = n.wrapping_mul(2_654_435_761) % u64::from(sessions.max(1)) + 1;
                (format!("ver_{k}"), String::new())
            }
            Hot::Initiate => (format!("vb_{tag}_{n}"), format!("rb_{tag}_{n}")),
        };
        match self {
            Executor::DeadpoolRows(pool) => {
                let Statement { sql, values, .. } = statement(hot, id, request);
                let params = values
                    .map(|v| v.0)
                    .unwrap_or_default()
                    .into_iter()
                    .map(param)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let client = pool.get().await?;
                let stmt = client.prepare_cached(&sql).await?;
                let rows = client.query(&stmt, &refs).await?;
                let maps = rows
                    .iter()
                    .map(row_values)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(maps.len())
            }
            Executor::Lanes(lanes) => one_row(lanes, hot, id, request).await,
            Executor::SqlxPool(pool) => one_row(pool, hot, id, request).await,
            Executor::Deadpool(pool) => {
                let client = pool.get().await?;
                let rows = match hot {
                    Hot::Status => {
                        let stmt = client.prepare_cached(FIND_FOR_COMPANY_SQL).await?;
                        client.query_opt(&stmt, &[&id]).await?
                    }
                    Hot::Initiate => {
                        let stmt = client.prepare_cached(INITIATE_SQL).await?;
                        let ttl = 600.0f64;
                        let (livemode, match_code) = (true, None::<&str>);
                        client
                            .query_opt(
                                &stmt,
                                &[
                                    &id,
                                    &NUMBER,
                                    &"bench",
                                    &request,
                                    &ttl,
                                    &livemode,
                                    &match_code,
                                ],
                            )
                            .await?
                    }
                };
                Ok(usize::from(rows.is_some()))
            }
        }
    }
}

const NUMBER: &str = "+447911123456";

/// The statement as the API builds it.
fn statement(hot: Hot, id: String, request: String) -> Statement {
    match hot {
        Hot::Status => Statement::from_sql_and_values(
            DbBackend::Postgres,
            FIND_FOR_COMPANY_SQL,
            [Value::from(id)],
        ),
        Hot::Initiate => Statement::from_sql_and_values(
            DbBackend::Postgres,
            INITIATE_SQL,
            [
                Value::from(id),
                NUMBER.into(),
                "bench".into(),
                request.into(),
                600.0f64.into(),
                true.into(),
                Option::<String>::None.into(),
            ],
        ),
    }
}

/// The statement through sea-orm's connection trait (the API's path).
async fn one_row(
    db: &impl ConnectionTrait,
    hot: Hot,
    id: String,
    request: String,
) -> anyhow::Result<usize> {
    let stmt = statement(hot, id, request);
    Ok(usize::from(db.query_one_raw(stmt).await?.is_some()))
}

/// A sea-orm value as a tokio-postgres parameter (the kinds these statements bind).
fn param(v: Value) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    Ok(match v {
        Value::String(s) => Box::new(s),
        Value::Double(d) => Box::new(d),
        other => anyhow::bail!("no parameter mapping for {other:?}"),
    })
}

/// A tokio-postgres row as the column → value map sea-orm's proxy rows are made of (the
/// column types of `verification_sessions`).
fn row_values(row: &tokio_postgres::Row) -> anyhow::Result<BTreeMap<String, Value>> {
    use tokio_postgres::types::Type;
    let mut map = BTreeMap::new();
    for (i, col) in row.columns().iter().enumerate() {
        let value = match *col.type_() {
            Type::UUID => Value::from(row.try_get::<_, Option<uuid::Uuid>>(i)?),
            Type::TIMESTAMPTZ => Value::from(row.try_get::<_, Option<DateTime<Utc>>>(i)?),
            Type::VARCHAR | Type::TEXT => Value::from(row.try_get::<_, Option<String>>(i)?),
            ref other => anyhow::bail!("no mapping for column type {other}"),
        };
        map.insert(col.name().to_owned(), value);
    }
    Ok(map)
}

/// One statement through one executor, over all rounds.
struct Cell {
    hot: Hot,
    executor: &'static str,
    latency: Histogram<u64>,
    seconds: f64,
    per_round: Vec<f64>,
}

/// A latency histogram in microseconds.
#[allow(clippy::expect_used)] // 3 significant figures is within the allowed 0..=5: cannot fail.
fn new_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is valid")
}

/// `callers` tasks run `hot` through `exec` until `until`; their latencies, merged.
async fn measure(
    exec: &Executor,
    hot: Hot,
    args: &Args,
    tag: &str,
    duration: Duration,
) -> anyhow::Result<(Histogram<u64>, f64)> {
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..args.callers)
        .map(|caller| {
            let exec = exec.clone();
            let tag = format!("{tag}_{caller}");
            let sessions = args.sessions;
            tokio::spawn(async move {
                let mut h = new_histogram();
                let mut n = caller as u64;
                while Instant::now() < until {
                    let t = Instant::now();
                    let rows = exec.run(hot, &tag, n, sessions).await?;
                    anyhow::ensure!(rows == 1, "{} returned {rows} rows", hot.name());
                    let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = h.record(micros.max(1));
                    n += 1;
                }
                anyhow::Ok(h)
            })
        })
        .collect();
    let mut total = new_histogram();
    for t in futures::future::join_all(tasks).await {
        total.add(t??)?;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

fn main() -> anyhow::Result<()> {
    truenumber_core::observability::telemetry::run_named("tn-dbbench", run())?
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let name = format!("tn_dbbench_{}", uuid::Uuid::new_v4().simple());
    let server = args.server.trim_end_matches('/');
    let url = format!("{server}/{name}?sslmode=disable");
    let result = bench(&args, &url).await;
    // Best effort: the measurement's outcome matters more than the clean-up's.
    if let Err(e) = drop_database(server, &name).await {
        eprintln!("could not drop database {name}: {e:#}");
    }
    result
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<()> {
    let total = u32::try_from(args.connections)?;
    let config = Config::from_map(&HashMap::from([
        ("DATABASE_URL".to_owned(), url.to_owned()),
        ("DATABASE_MAX_CONNECTIONS".to_owned(), total.to_string()),
        (
            "JWT_SECRET".to_owned(),
            "dbbench-secret-dbbench-secret-dbbench".to_owned(),
        ),
    ]))?;
    eprintln!(
        "making the database: migrations, {} sessions",
        args.sessions
    );
    db::migrate(&config).await.context("migrate")?;
    let sqlx_pool = db::connect_sized(&config, total).await?;
    sqlx_pool
        .execute_unprepared(&format!(
            "INSERT INTO companies (company_id, name, webhook_secret) \
               VALUES ('bench', 'Bench', 'whsec_bench'); \
             INSERT INTO verification_sessions \
               (verification_id, mobile_number, company_id, request_id, expires_at) \
               SELECT 'ver_' || g, '{NUMBER}', 'bench', 'req_' || g, now() + interval '1 day' \
               FROM generate_series(1, {}) g; \
             ANALYZE",
            args.sessions
        ))
        .await?;
    let lanes = ConnectionLanes::start(&config, LaneOptions::new(args.connections));
    let manager = Manager::from_config(
        tokio_postgres::Config::from_str(url)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let deadpool = Pool::builder(manager).max_size(args.connections).build()?;
    let executors = [
        Executor::Lanes(lanes),
        Executor::Deadpool(deadpool.clone()),
        Executor::DeadpoolRows(deadpool.clone()),
        Executor::SqlxPool(sqlx_pool.clone()),
    ];

    eprintln!(
        "{} connections per executor, {} callers, {} s per measurement, {} rounds",
        args.connections, args.callers, args.seconds, args.rounds
    );
    let mut cells: Vec<Cell> = Vec::new();
    for hot in [Hot::Status, Hot::Initiate] {
        for e in &executors {
            cells.push(Cell {
                hot,
                executor: e.name(),
                latency: new_histogram(),
                seconds: 0.0,
                per_round: Vec::new(),
            });
        }
    }
    for round in 0..args.rounds {
        for hot in [Hot::Status, Hot::Initiate] {
            for i in 0..executors.len() {
                let exec = &executors[(i + round) % executors.len()];
                let tag = format!("{}{round}", exec.tag());
                measure(exec, hot, args, &format!("w{tag}"), Duration::from_secs(1)).await?;
                let (h, secs) =
                    measure(exec, hot, args, &tag, Duration::from_secs(args.seconds)).await?;
                let rps = h.len() as f64 / secs;
                eprintln!(
                    "round {} {:<16} {:<14} {rps:>8.0}/s",
                    round + 1,
                    hot.name(),
                    exec.name()
                );
                if let Some(c) = cells
                    .iter_mut()
                    .find(|c| c.hot == hot && c.executor == exec.name())
                {
                    c.latency.add(&h)?;
                    c.seconds += secs;
                    c.per_round.push(rps);
                }
            }
        }
    }

    println!(
        "\n{} connections per executor, {} concurrent callers, {} x {} s per cell",
        args.connections, args.callers, args.rounds, args.seconds
    );
    println!(
        "{:<16} {:<14} {:>9} {:>9} {:>9}   per round (/s)",
        "statement", "executor", "per s", "p50 ms", "p99 ms"
    );
    for c in &cells {
        let per_round: Vec<String> = c.per_round.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<16} {:<14} {:>9.0} {:>9.2} {:>9.2}   {}",
            c.hot.name(),
            c.executor,
            c.latency.len() as f64 / c.seconds,
            c.latency.value_at_quantile(0.50) as f64 / 1000.0,
            c.latency.value_at_quantile(0.99) as f64 / 1000.0,
            per_round.join(" ")
        );
    }
    deadpool.close();
    sqlx_pool.close().await?;
    Ok(())
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres?sslmode=disable"), NoTls).await?;
    let conn = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_apis_lanes_at_64_callers() {
        let args = Args::parse_from(["truenumber-dbbench"]);
        assert_eq!(
            args.connections,
            truenumber_core::storage::lanes::api_split(10).1,
            "the API's lanes for DATABASE_MAX_CONNECTIONS=10"
        );
        assert_eq!(args.callers, 64);
    }
}
