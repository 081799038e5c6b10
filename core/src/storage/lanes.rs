//! Dedicated connections for the statements of API requests.
//!
//! sqlx's pool pings every connection it takes back (a `Sync`, then a wait for
//! `ReadyForQuery`), unconditionally: a one-statement request costs two round trips and twice
//! the database's wake-ups. Measured under the status load, that ping was a third of the
//! API's and nearly half of PostgreSQL's CPU per request (docs/PERFORMANCE.md).
//!
//! Instead, a request's statement goes to one of N **lanes**: a task that owns one connection
//! for good and runs statements one at a time, in arrival order, each to completion. Because a
//! lane finishes what it starts, a request dropped halfway (its client went away) can never
//! leave a connection mid-protocol — the very reason the pool pings. The rest of the pool's
//! guarantees are kept: a connection idle for a while is pinged before use; a lane whose
//! connection broke reconnects for its next statement, and while the database is unreachable
//! it fails statements at once instead of queueing them behind connect attempts.
//!
//! **Every wait is bounded.** A caller waits for a lane at most the queue timeout (the pool's
//! acquire timeout, 5 s); then it is refused (`ConnectionAcquire`, a 503) and its statement is
//! marked refused, so the lane that reaches it later drops it unrun — a job is either started
//! by a lane or refused, never both (one compare-and-swap decides). A started statement is
//! ended by the server at [`STATEMENT_TIMEOUT`] (`statement_timeout`, sent in the startup
//! packet: a query error, a 500, and the connection stays); a server that does not even answer
//! that is given up a little later (the connection is dropped: a 503). Pings and connects are
//! bounded too, so no caller waits longer than the queue timeout plus a lane's run limit.
//!
//! **One connection budget.** [`ApiConnections::open`] opens a node's pool and its lanes
//! together from `DATABASE_MAX_CONNECTIONS` ([`api_split`]): the two add up to the budget,
//! never more (serve, the tests and the load test all start nodes through it).
//!
//! [`ConnectionLanes`] implements sea-orm's [`ConnectionTrait`], so repository functions run on
//! it unchanged. Statements run in autocommit; transactions stay on the pool
//! ([`RequestConnection`] says where one may begin).
//!
//! # Why the lanes stay, and not deadpool-postgres (measured 2026-11-23, issue 12)
//!
//! `deadpool-postgres` with `RecyclingMethod::Fast` over `tokio-postgres` also avoids the
//! ping and is just as safe against dropped requests (a tokio-postgres connection task reads
//! every reply, whoever stopped waiting). `scripts/dbbench` ran the hot statements through
//! each, same run, 8 connections, 64 concurrent callers, 3 × 10 s per cell, on the shared
//! 2-core machine (load average 8–9 from other builds, so ±10% between rounds):
//!
//! | statement | lanes | deadpool raw | deadpool + row conversion | sqlx pool |
//! |---|---|---|---|---|
//! | status SELECT, per s | 12 800 | 12 545 | 11 091 | 6 094 |
//! | status p50 / p99 ms | 4.00 / 14.4 | 4.04 / 14.1 | 4.77 / 16.5 | 9.98 / 23.2 |
//! | initiate INSERT, per s | 1 670 | 1 652 | 1 620 | 1 626 |
//!
//! (An earlier run, less loaded: status 14 690 lanes, 15 501 deadpool, 9 159 sqlx pool.)
//! The crate, called raw, matches the lanes — within noise, never clearly ahead; the INSERT
//! is bound by PostgreSQL's commit and shows no difference at all. But the API cannot call it
//! raw: its repositories take sea-orm's `ConnectionTrait`, and sea-orm has no tokio-postgres
//! backend. The adapter would go through sea-orm's `proxy` hook, converting every parameter
//! and every row to `sea_orm::Value` maps by hand for every column type — the conversion
//! alone (the "row conversion" column) costs 12% of status throughput, and the mapping is
//! home-made code again, with silent type mistakes as its failure mode. It
//! would also put a second PostgreSQL driver and TLS stack (`tokio-postgres-rustls`) beside
//! sqlx, which the pool, the worker and migrations keep needing. So the lanes stay, with
//! their waits bounded. Revisit when sea-orm gains a tokio-postgres backend, or if the lanes
//! ever need pipelining or transactions.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult,
    RuntimeErr, Statement,
};
use sea_query_sqlx::SqlxValues;
use sqlx::{
    ConnectOptions as _, Connection as _,
    postgres::{PgConnectOptions, PgConnection, PgQueryResult, PgRow},
};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::Config;

/// After a failed connect, a lane fails statements at once for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// The most time one connect attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Statements queued per lane before callers wait to enqueue.
const QUEUE_PER_LANE: usize = 256;
/// The server cancels a lane's statement that runs longer than this (`statement_timeout`, set
/// when the connection starts, so it costs no round trip). The API's statements take
/// milliseconds; one that runs for seconds holds a lane the requests behind it need.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the statement timeout a lane waits for the server's answer before it
/// gives the connection up: the server's cancellation arrives within milliseconds, so only a
/// silent server (a dead host, a cut network) ever uses this.
const STATEMENT_GRACE: Duration = Duration::from_secs(2);

/// A job's claim: exactly one of the lane (which starts it) and the caller or the lane (which
/// refuse it) moves it out of `QUEUED`, so a refused statement can never run later.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const REFUSED: u8 = 2;

/// What a statement is run for.
#[derive(Debug, Clone, Copy)]
enum Work {
    One,
    All,
    Exec,
    Unprepared,
}

enum Output {
    Rows(Vec<PgRow>),
    Done(PgQueryResult),
}

struct Job {
    stmt: Statement,
    work: Work,
    enqueued: Instant,
    claim: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<Output, DbErr>>,
}

impl Job {
    /// Moves the claim from `QUEUED` to `to`; false when someone else moved it first.
    fn claim(&self, to: u8) -> bool {
        claim(&self.claim, to)
    }
}

fn claim(state: &AtomicU8, to: u8) -> bool {
    state
        .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// N dedicated connections fed from one queue; cheap to clone.
#[derive(Clone)]
pub struct ConnectionLanes {
    jobs: mpsc::Sender<Job>,
    lanes: usize,
    queue_timeout: Duration,
    /// The longest a started statement can keep a lane (see [`LaneSettings::run_limit`]).
    run_limit: Duration,
}

impl std::fmt::Debug for ConnectionLanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLanes")
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}

/// How many lanes, and how they treat waiting statements and idle connections.
#[derive(Debug, Clone, Copy)]
pub struct LaneOptions {
    /// Lanes (connections); at least one.
    pub lanes: usize,
    /// The longest a statement may wait for a lane before it is refused unrun.
    pub queue_timeout: Duration,
    /// A connection idle longer than this is pinged before its next statement, so one that
    /// died while idle (a database restart) is replaced instead of failing a request.
    pub ping_if_idle_for: Duration,
    /// The server cancels a statement that runs longer (`statement_timeout` of the lanes'
    /// connections); the caller gets a query error (a 500), and the connection stays.
    pub statement_timeout: Duration,
}

impl LaneOptions {
    /// `lanes` lanes with the pool's policies: statements wait up to
    /// [`crate::storage::db::ACQUIRE_TIMEOUT`]; connections idle over 30 s are pinged first; statements
    /// run for at most [`STATEMENT_TIMEOUT`].
    pub fn new(lanes: usize) -> Self {
        Self {
            lanes,
            queue_timeout: crate::storage::db::ACQUIRE_TIMEOUT,
            ping_if_idle_for: Duration::from_secs(30),
            statement_timeout: STATEMENT_TIMEOUT,
        }
    }
}

/// How a lane connects, and its options.
#[derive(Clone)]
struct LaneSettings {
    options: Option<PgConnectOptions>,
    queue_timeout: Duration,
    ping_if_idle_for: Duration,
    statement_timeout: Duration,
}

impl LaneSettings {
    /// The longest the lane waits for the server's answer to one statement.
    fn answer_limit(&self) -> Duration {
        self.statement_timeout + STATEMENT_GRACE
    }

    /// The longest a started job can keep its lane: a ping of an idle connection, a
    /// reconnect, and the statement, each bounded.
    fn run_limit(&self) -> Duration {
        CONNECT_TIMEOUT + CONNECT_TIMEOUT + self.answer_limit()
    }
}

impl ConnectionLanes {
    /// Starts the lanes on `DATABASE_URL`; they connect on their first statement, so a node
    /// starts while the database is down.
    pub fn start(config: &Config, lane_options: LaneOptions) -> Self {
        let lanes = lane_options.lanes.max(1);
        // An unparseable URL cannot happen past `Config` validation and `db::connect`; if it
        // did, every statement fails with the parse error instead of the process panicking.
        let statement_timeout_ms = lane_options.statement_timeout.as_millis().max(1);
        let options = PgConnectOptions::from_str(config.database_url.expose())
            .map(|o| {
                o.application_name("truenumber-api")
                    // Sent in the startup packet: no extra round trip per connection.
                    .options([("statement_timeout", statement_timeout_ms)])
                    .disable_statement_logging()
            })
            .ok();
        let settings = LaneSettings {
            options,
            queue_timeout: lane_options.queue_timeout,
            ping_if_idle_for: lane_options.ping_if_idle_for,
            statement_timeout: lane_options.statement_timeout,
        };
        let (tx, rx) = mpsc::channel(lanes * QUEUE_PER_LANE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..lanes {
            tokio::spawn(lane(rx.clone(), settings.clone()));
        }
        Self {
            jobs: tx,
            lanes,
            queue_timeout: settings.queue_timeout,
            run_limit: settings.run_limit(),
        }
    }

    /// How many lanes (connections) there are.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// Queues a statement and waits for its result, never longer than the queue timeout
    /// (while it waits for a lane) plus the run limit (once a lane has started it).
    async fn run(&self, stmt: Statement, work: Work) -> Result<Output, DbErr> {
        let closed = || DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed);
        let enqueued = Instant::now();
        let deadline = tokio::time::Instant::from_std(enqueued + self.queue_timeout);
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            stmt,
            work,
            enqueued,
            claim: state.clone(),
            reply,
        };
        match tokio::time::timeout_at(deadline, self.jobs.send(job)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(closed()),
            // Every queue was full for the whole wait: refused, and never queued.
            Err(_) => return Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        }
        if let Ok(result) = tokio::time::timeout_at(deadline, &mut answer).await {
            return result.map_err(|_| closed())?;
        }
        // No lane took it in time. Refuse it unless a lane has just started it; a refused job
        // stays in the queue, and the lane that reaches it drops it unrun.
        if claim(&state, REFUSED) {
            return Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        }
        // Started (or refused by the lane, whose answer is already on its way): a lane bounds
        // every step of a job, so this limit is a backstop that is never reached in practice.
        match tokio::time::timeout(self.run_limit, answer).await {
            Ok(result) => result.map_err(|_| closed())?,
            Err(_) => Err(DbErr::Conn(RuntimeErr::Internal(format!(
                "no answer from a connection lane within {:?}",
                self.run_limit
            )))),
        }
    }
}

/// One lane: takes the next statement, makes sure it has a live connection, runs it.
async fn lane(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, settings: LaneSettings) {
    let mut conn: Option<PgConnection> = None;
    let mut last_used = Instant::now();
    let mut unreachable_until: Option<(Instant, String)> = None;
    loop {
        // One lane at a time waits on the queue; the others wait for the lock, in order.
        let next = jobs.lock().await.recv().await;
        let Some(job) = next else {
            break; // every sender is gone: the node is shutting down
        };
        if job.reply.is_closed() {
            continue; // the request was dropped before its statement started
        }
        if job.enqueued.elapsed() > settings.queue_timeout {
            // Its caller is about to give up too (or already has, and then this claim fails).
            if job.claim(REFUSED) {
                let _ = job
                    .reply
                    .send(Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
            }
            continue;
        }
        if !job.claim(STARTED) {
            continue; // its caller refused it at the queue timeout: it must never run
        }
        if conn.is_some() && last_used.elapsed() > settings.ping_if_idle_for {
            let alive = match conn.as_mut() {
                Some(c) => matches!(
                    tokio::time::timeout(CONNECT_TIMEOUT, c.ping()).await,
                    Ok(Ok(()))
                ),
                None => false,
            };
            if !alive {
                conn = None;
            }
        }
        if conn.is_none() {
            if let Some((until, cause)) = &unreachable_until
                && Instant::now() < *until
            {
                let _ = job.reply.send(Err(unreachable(cause)));
                continue;
            }
            match connect(&settings).await {
                Ok(c) => {
                    conn = Some(c);
                    unreachable_until = None;
                }
                Err(cause) => {
                    let _ = job.reply.send(Err(unreachable(&cause)));
                    unreachable_until = Some((Instant::now() + RECONNECT_BACKOFF, cause));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let limit = settings.answer_limit();
        let Ok(result) = tokio::time::timeout(limit, execute(c, job.stmt, job.work)).await else {
            // The server did not even cancel the statement: it, or the network, is gone. The
            // connection is mid-protocol and cannot be reused.
            conn = None;
            let _ = job.reply.send(Err(DbErr::Conn(RuntimeErr::Internal(format!(
                "no answer from the database within {limit:?}"
            )))));
            continue;
        };
        last_used = Instant::now();
        let result = result.map_err(|e| {
            if breaks_connection(&e) {
                conn = None;
                DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e)))
            } else if matches!(job.work, Work::Exec | Work::Unprepared) {
                DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
            } else {
                DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
            }
        });
        let _ = job.reply.send(result);
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

fn unreachable(cause: &str) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!(
        "database unreachable: {cause}"
    )))
}

async fn connect(settings: &LaneSettings) -> Result<PgConnection, String> {
    let options = settings
        .options
        .as_ref()
        .ok_or_else(|| "DATABASE_URL is not a valid PostgreSQL URL".to_owned())?;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

/// Runs one statement, moving its values into the query (the lane owns the job).
async fn execute(conn: &mut PgConnection, stmt: Statement, work: Work) -> sqlx::Result<Output> {
    let Statement { sql, values, .. } = stmt;
    let sql = sqlx::AssertSqlSafe(sql.as_str());
    if let Work::Unprepared = work {
        return Ok(Output::Done(sqlx::raw_sql(sql).execute(&mut *conn).await?));
    }
    let query = sqlx::query_with(
        sql,
        SqlxValues(values.unwrap_or(sea_orm::Values(Vec::new()))),
    );
    Ok(match work {
        Work::One => Output::Rows(
            query
                .fetch_optional(&mut *conn)
                .await?
                .into_iter()
                .collect(),
        ),
        Work::All => Output::Rows(query.fetch_all(&mut *conn).await?),
        Work::Exec | Work::Unprepared => Output::Done(query.execute(&mut *conn).await?),
    })
}

/// Whether an error leaves the connection unusable (I/O, TLS, protocol, or an error the server
/// ends the session with: severity FATAL or PANIC, e.g. `57P01` when a backend is terminated),
/// as opposed to an error about the statement (a constraint, a type), after which the
/// connection is fine.
fn breaks_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let fatal = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some_and(|pg| {
                    matches!(
                        pg.severity(),
                        sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                    )
                });
            // Class 08 (connection exception) and 57P (operator intervention) end sessions.
            let code = db.code();
            fatal || code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

fn unexpected(what: &str) -> DbErr {
    DbErr::Custom(format!("connection lane returned no {what}"))
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for ConnectionLanes {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.run(stmt, Work::Exec).await? {
            Output::Done(r) => Ok(r.into()),
            Output::Rows(_) => Err(unexpected("result")),
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(DbBackend::Postgres, sql);
        match self.run(stmt, Work::Unprepared).await? {
            Output::Done(r) => Ok(r.into()),
            Output::Rows(_) => Err(unexpected("result")),
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.run(stmt, Work::One).await? {
            Output::Rows(rows) => Ok(rows.into_iter().next().map(Into::into)),
            Output::Done(_) => Err(unexpected("rows")),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.run(stmt, Work::All).await? {
            Output::Rows(rows) => Ok(rows.into_iter().map(Into::into).collect()),
            Output::Done(_) => Err(unexpected("rows")),
        }
    }
}

/// Where an API node runs the statements of requests: its lanes on PostgreSQL (production),
/// or straight on the pool on SQLite (standalone: the database is a file in the same process,
/// so there is no round trip, and no ping, to save). Cheap to clone.
#[derive(Clone, Debug)]
pub enum RequestDb {
    /// Production mode.
    Lanes(ConnectionLanes),
    /// Standalone mode.
    Pool(DatabaseConnection),
}

/// `match` over both kinds of [`RequestDb`], binding the connection as `$c`: each forwarded
/// method is one line.
macro_rules! on_either {
    ($db:expr, $c:ident => $call:expr) => {
        match $db {
            RequestDb::Lanes($c) => $call,
            RequestDb::Pool($c) => $call,
        }
    };
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for RequestDb {
    fn get_database_backend(&self) -> DbBackend {
        on_either!(self, c => c.get_database_backend())
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        on_either!(self, c => c.execute_raw(stmt).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        on_either!(self, c => c.execute_unprepared(sql).await)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        on_either!(self, c => c.query_one_raw(stmt).await)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        on_either!(self, c => c.query_all_raw(stmt).await)
    }

    fn support_returning(&self) -> bool {
        on_either!(self, c => c.support_returning())
    }
}

/// Where a request's statements run, and where a transaction may begin: PostgreSQL's
/// transitions are one statement each and never begin one (so they run on the lanes, which
/// speak autocommit only); SQLite's are a short transaction, begun on the pool.
pub trait RequestConnection: ConnectionTrait {
    /// The pool to begin a transaction on; `None` for the lanes.
    fn transactions(&self) -> Option<&DatabaseConnection>;
}

impl RequestConnection for DatabaseConnection {
    fn transactions(&self) -> Option<&DatabaseConnection> {
        Some(self)
    }
}

impl RequestConnection for RequestDb {
    fn transactions(&self) -> Option<&DatabaseConnection> {
        match self {
            Self::Lanes(_) => None,
            Self::Pool(p) => Some(p),
        }
    }
}

/// How an API node divides `DATABASE_MAX_CONNECTIONS`: a quarter (at least one) for its pool
/// (authentication misses, the outbox, health), the rest (at least one) for request lanes.
/// The two add up to `total` for every `total` of at least [`API_MIN_CONNECTIONS`];
/// [`ApiConnections::open`] refuses smaller budgets.
pub fn api_split(total: u32) -> (u32, usize) {
    let pool = (total / 4).max(1);
    let lanes = usize::try_from(total.saturating_sub(pool).max(1)).unwrap_or(1);
    (pool, lanes)
}

/// The smallest connection budget an API node runs on: one pooled connection and one lane.
pub const API_MIN_CONNECTIONS: u32 = 2;

/// An API node's database connections, both sized from one budget,
/// `DATABASE_MAX_CONNECTIONS`, by [`api_split`]: the pool and the lanes together never hold
/// more. This is the one place an API node's connections are opened.
#[derive(Clone, Debug)]
pub struct ApiConnections {
    /// The pool: authentication misses, the outbox, health, transactions.
    pub pool: DatabaseConnection,
    /// The statements of requests (initiate, submit, status): lanes on PostgreSQL.
    pub lanes: RequestDb,
}

impl ApiConnections {
    /// Opens the pool (creating the database if it is missing) and starts the lanes, which
    /// connect on their first statements.
    pub async fn open(config: &Config) -> Result<Self, DbErr> {
        let total = config.database_max_connections;
        if total < API_MIN_CONNECTIONS {
            return Err(DbErr::Custom(format!(
                "DATABASE_MAX_CONNECTIONS={total} is below an API node's minimum of \
                 {API_MIN_CONNECTIONS} (one pooled connection and one request lane)"
            )));
        }
        let (pool_size, lanes) = api_split(total);
        let pool = crate::storage::db::connect_sized(config, pool_size).await?;
        Ok(Self {
            pool,
            lanes: RequestDb::Lanes(ConnectionLanes::start(config, LaneOptions::new(lanes))),
        })
    }

    /// Standalone mode: one SQLite pool serves everything.
    pub fn sqlite(pool: DatabaseConnection) -> Self {
        Self {
            lanes: RequestDb::Pool(pool.clone()),
            pool,
        }
    }

    /// Connections that are never opened: a disconnected pool and one lane that would
    /// connect only if a statement came (for commands that need an API's state but no
    /// database, such as printing the OpenAPI document).
    pub fn unopened(config: &Config) -> Self {
        Self {
            pool: DatabaseConnection::default(),
            lanes: RequestDb::Lanes(ConnectionLanes::start(config, LaneOptions::new(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_split_between_pool_and_lanes() {
        assert_eq!(api_split(10), (2, 8));
        assert_eq!(api_split(40), (10, 30));
        assert_eq!(api_split(4), (1, 3));
        for total in API_MIN_CONNECTIONS..=200 {
            let (pool, lanes) = api_split(total);
            assert!(pool >= 1 && lanes >= 1, "{total}");
            assert_eq!(u64::from(pool) + lanes as u64, u64::from(total), "{total}");
        }
    }

    #[test]
    fn only_transport_failures_break_a_connection() {
        assert!(breaks_connection(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(breaks_connection(&sqlx::Error::Protocol("garbage".into())));
        assert!(!breaks_connection(&sqlx::Error::RowNotFound));
        assert!(!breaks_connection(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
