//! The PostgreSQL pool, database creation, and migrations under an advisory lock; and the
//! SQLite pool and migrations of standalone mode.

use std::{path::Path, time::Duration};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use sqlx::{
    ConnectOptions as _, Connection,
    postgres::{PgConnectOptions, PgConnection},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use truenumber_migration::{Migrator, MigratorTrait};

use crate::config::{Config, Mode};

/// Any fixed number works; it only has to be the same for every node of TrueNumber.
const MIGRATION_LOCK_KEY: i64 = 0x0074_7275_656e_756d;

/// How long a statement may wait for a connection before the request gets a 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the pool (`DATABASE_MAX_CONNECTIONS` connections): PostgreSQL in production mode,
/// creating the database first if it does not exist and the role may create it; the SQLite
/// file in `DATA_DIR` in standalone mode.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    match config.mode {
        Mode::Production => connect_sized(config, config.database_max_connections).await,
        Mode::Standalone => {
            connect_sqlite(
                &config.standalone_db_path(),
                config.database_max_connections,
            )
            .await
        }
    }
}

/// Opens a pool of `max_connections` (an API node keeps most of its budget for its request
/// lanes: [`crate::storage::lanes::ApiConnections::open`] sizes both).
pub async fn connect_sized(
    config: &Config,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let url = config.database_url.expose();
    ensure_database_exists(url).await?;
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        // Pinging on every checkout doubled the round trips of a status call; ping only
        // connections idle long enough to have been dropped (docs/PERFORMANCE.md).
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        // Statement logging would put numbers and ids in logs at info level; we log per request.
        .sqlx_logging(false);
    Database::connect(opts).await
}

/// Creates the database named in `url` if it is missing (SQLSTATE 3D000), tolerating a
/// concurrent creator.
pub async fn ensure_database_exists(url: &str) -> Result<(), DbErr> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbErr::Custom(format!("DATABASE_URL: {e}")))?;
    let opts = opts.disable_statement_logging();
    match PgConnection::connect_with(&opts).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string()))),
    }
    let name = opts
        .get_database()
        .ok_or_else(|| DbErr::Custom("DATABASE_URL names no database".into()))?
        .to_owned();
    let mut admin = PgConnection::connect_with(&opts.clone().database("postgres"))
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    let created = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created the database");
            Ok(())
        }
        // 42P04 duplicate_database, 23505 a concurrent CREATE won the race on pg_database.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {
            Ok(())
        }
        Err(e) => Err(DbErr::Custom(format!(
            "could not create database {name}: {e}"
        ))),
    }
}

/// Applies pending migrations while holding a session-level advisory lock, on one dedicated
/// connection, so concurrent starters wait for each other instead of racing.
pub async fn migrate(config: &Config) -> Result<(), DbErr> {
    if config.mode == Mode::Standalone {
        return migrate_sqlite_alone(&config.standalone_db_path()).await;
    }
    let url = config.database_url.expose();
    ensure_database_exists(url).await?;
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(120))
        .sqlx_logging(false);
    let conn = Database::connect(opts).await?;
    // The migrator's `CREATE TABLE IF NOT EXISTS` draws a NOTICE on every start ("relation
    // seaql_migrations already exists"), which sqlx logs at INFO: not news, so not sent.
    conn.execute_unprepared("SET client_min_messages = warning")
        .await?;
    conn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await?;
    let result = Migrator::up(&conn, None).await;
    let unlocked = conn
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await;
    let _ = conn.close().await;
    result?;
    unlocked?;
    Ok(())
}

/// How long a SQLite statement waits for another connection's write lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a standalone (SQLite) transaction may run, from `BEGIN` to `COMMIT`, before it
/// is abandoned: its first statement may wait [`SQLITE_BUSY_TIMEOUT`] for the write lock, and
/// what follows takes milliseconds; three times that is never reached by a live transaction.
/// Only a statement sent to a connection whose worker thread is dying never answers (sqlx
/// keeps it queued for a thread that will never read it); abandoning the transaction drops
/// that connection, and closing it rolls back and releases the write lock.
pub const SQLITE_TRANSACTION_LIMIT: Duration = Duration::from_secs(15);

/// Opens standalone mode's database at `path`: applies pending migrations on a connection of
/// their own, closes it, and only then opens the pool of `max_connections`.
///
/// A pool connection that read the schema while another one migrated keeps that old schema
/// until its next statement; SQLite prepares that statement against the old schema and
/// re-prepares it on its first step, so `SELECT *`/`RETURNING *` would return more columns
/// than sqlx recorded at prepare time, which crashes sqlx-sqlite's worker thread (issue 23).
/// Opening the pool after migrating means no connection ever saw an older schema.
pub async fn open_sqlite(path: &Path, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    migrate_sqlite_alone(path).await?;
    connect_sqlite(path, max_connections).await
}

/// Migrates the database at `path` on a pool of one connection, closed afterwards.
async fn migrate_sqlite_alone(path: &Path) -> Result<(), DbErr> {
    let db = connect_sqlite(path, 1).await?;
    let result = migrate_sqlite(&db).await;
    let _ = db.close().await;
    result
}

/// Runs `work`, a whole transaction (begin to commit), within `limit`; past it, `work` is
/// dropped (its transaction rolled back, its connection returned or, if its worker died,
/// discarded) and an error says so.
pub async fn within<T, E: From<DbErr>>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(E::from(DbErr::Custom(format!(
            "a database transaction did not finish within {} s and was abandoned",
            limit.as_secs_f64()
        )))),
    }
}

/// [`within`] [`SQLITE_TRANSACTION_LIMIT`] on SQLite; on PostgreSQL `work` runs unbounded,
/// as before (its statements fail on their own when the server or the network does).
pub async fn within_transaction_limit<T, E: From<DbErr>>(
    backend: sea_orm::DbBackend,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if backend == sea_orm::DbBackend::Sqlite {
        within(SQLITE_TRANSACTION_LIMIT, work).await
    } else {
        work.await
    }
}

/// The name sqlx gives the thread of each SQLite connection (`sqlx-sqlite-worker-N`).
const SQLITE_WORKER_THREAD: &str = "sqlx-sqlite-worker";

/// Makes a crash of a SQLite connection's worker thread loud: a panic on such a thread is
/// logged at error level, as one structured line, before the usual panic report. The
/// connection's statements then fail with "attempted to communicate with a crashed
/// background worker", and the pool discards it. Installed once per process; other threads'
/// panics are reported as before.
pub fn report_sqlite_worker_crashes() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(name) = thread
                .name()
                .filter(|n| n.starts_with(SQLITE_WORKER_THREAD))
            {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(
                    thread = name,
                    panic = %message,
                    location = %info.location().map(ToString::to_string).unwrap_or_default(),
                    "a SQLite connection's worker thread crashed; the connection is discarded"
                );
            }
            previous(info);
        }));
    });
}

/// Opens (creating it if missing) the SQLite database of standalone mode at `path`, with a
/// pool of `max_connections`.
///
/// - **WAL**: readers never block the writer nor the writer readers; one writer at a time,
///   and a writer waits up to 5 s (`busy_timeout`) for another's lock.
/// - **`synchronous = NORMAL`**: in WAL mode a commit is durable across a crash of the
///   process (the standalone guarantee: nothing is lost across a restart); only a power loss
///   or OS crash may roll back the last transactions before a checkpoint. `FULL` would fsync
///   every commit for a guarantee standalone does not promise.
/// - **Foreign keys on** (SQLite's default is off), so the schema's references hold as on
///   PostgreSQL.
pub async fn connect_sqlite(
    path: &Path,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        // As for PostgreSQL: statements would put numbers and ids in logs.
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::Internal(e.to_string())))?;
    Ok(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Applies pending migrations to a SQLite database (standalone mode), on `db` itself.
///
/// No lock of its own: [`migrate`]'s advisory lock lets several nodes start at once on
/// PostgreSQL, whereas standalone mode is one process that holds a lock file on its data
/// directory, so nothing else migrates this database concurrently. (SQLite would serialize
/// two migrators' writes anyway, but not their "which migrations are pending" reads.)
///
/// Other connections of `db`'s pool keep the schema they last read until their next
/// statement: a serving pool is opened after migrating ([`open_sqlite`]), never migrated.
pub async fn migrate_sqlite(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Err(DbErr::Custom(
            "migrate_sqlite needs a SQLite connection; PostgreSQL migrates with `migrate`".into(),
        ));
    }
    Migrator::up(db, None).await
}

/// Round-trips `SELECT 1` (on either engine); used by health checks.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
