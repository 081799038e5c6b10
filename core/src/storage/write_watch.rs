//! Standalone mode's watch on its database's write lock: is the SQLite file writable?
//!
//! SQLite has one writer at a time. A connection that keeps the write lock (a transaction
//! left open by a crashed connection, or another process holding `BEGIN IMMEDIATE`) makes
//! every write wait [`crate::storage::db::SQLITE_BUSY_TIMEOUT`] and fail with `SQLITE_BUSY`, while
//! reads, and so `SELECT 1` health checks, still succeed. The watch makes that visible:
//!
//! - Every [`PROBE_INTERVAL`] a connection of its own (outside the pool, so it never waits
//!   for one) takes the write lock and gives it back at once (`BEGIN IMMEDIATE; ROLLBACK`),
//!   waiting at most [`PROBE_BUSY_TIMEOUT`] for it. Nothing is written.
//! - The database counts as unwritable from the start of the first probe that did not get
//!   the lock, for as long as none does (a lock held for less than the bound is never
//!   reported; one held longer is seen within the bound and a probe).
//! - Unwritable for `SQLITE_BUSY_UNHEALTHY_SECONDS`: `/health` and `/health/ready` answer
//!   503 with the reason ([`WriteWatch::trouble`]).
//! - Unwritable for `SQLITE_UNWRITABLE_EXIT_SECONDS`: the watch logs one error line and
//!   reports it through [`WriteWatch::fatal`], and standalone mode exits non-zero, so that a
//!   supervisor restarts it (a restart closes every connection of this process, and with
//!   them any lock they held).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sea_orm::sqlx::{
    self, ConnectOptions as _, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode},
};
use tokio::sync::watch;

/// How often the watch probes the write lock.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe waits for the write lock before it counts as refused.
pub const PROBE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// The most one probe may take in all (a probe that hangs counts as failed, and its
/// connection is replaced).
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// How long the database may stay unwritable before health says so, and before the process
/// exits (`SQLITE_BUSY_UNHEALTHY_SECONDS`, `SQLITE_UNWRITABLE_EXIT_SECONDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBounds {
    /// `/health` and `/health/ready` answer 503 past this.
    pub unhealthy_after: Duration,
    /// Standalone mode exits past this.
    pub exit_after: Duration,
}

/// Why the last probe did not get the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRefusal {
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`: another connection holds the write lock.
    Locked,
    /// Anything else (the file cannot be opened, an I/O error, a probe that hung).
    Failed,
}

impl WriteRefusal {
    fn describe(self) -> &'static str {
        match self {
            Self::Locked => "another connection holds its write lock (SQLITE_BUSY)",
            Self::Failed => "taking its write lock fails",
        }
    }
}

/// The database has not been writable for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTrouble {
    /// Since the last time it was.
    pub for_how_long: Duration,
    /// Why the latest probe failed.
    pub refusal: WriteRefusal,
}

impl std::fmt::Display for WriteTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database has not been writable for {} s: {}",
            self.for_how_long.as_secs(),
            self.refusal.describe()
        )
    }
}

/// The latest probes' verdict: since when, and why, none got the write lock (`None` while
/// the latest did).
type State = Option<(Instant, WriteRefusal)>;

/// The watch of one database file; cheap to clone. Started by [`WriteWatch::start`].
#[derive(Debug, Clone)]
pub struct WriteWatch {
    state: Arc<Mutex<State>>,
    bounds: WriteBounds,
    fatal: watch::Receiver<Option<String>>,
}

impl WriteWatch {
    /// Starts probing `path` until `stop` turns true.
    pub fn start(
        path: &Path,
        bounds: WriteBounds,
        stop: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let state = Arc::new(Mutex::new(None));
        let (fatal_tx, fatal) = watch::channel(None);
        let task = tokio::spawn(probe_loop(
            path.to_owned(),
            Arc::clone(&state),
            bounds,
            fatal_tx,
            stop,
        ));
        (
            Self {
                state,
                bounds,
                fatal,
            },
            task,
        )
    }

    /// How long the database has been unwritable, if the latest probe failed.
    pub fn unwritable(&self) -> Option<WriteTrouble> {
        let state = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.map(|(since, refusal)| WriteTrouble {
            for_how_long: since.elapsed(),
            refusal,
        })
    }

    /// The trouble health reports: unwritable for at least `SQLITE_BUSY_UNHEALTHY_SECONDS`.
    pub fn trouble(&self) -> Option<WriteTrouble> {
        self.unwritable()
            .filter(|t| t.for_how_long >= self.bounds.unhealthy_after)
    }

    /// Resolves with the reason once the database has been unwritable for
    /// `SQLITE_UNWRITABLE_EXIT_SECONDS` (never, if the watch stops first).
    pub async fn fatal(&self) -> String {
        let mut fatal = self.fatal.clone();
        match fatal.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

async fn probe_loop(
    path: PathBuf,
    state: Arc<Mutex<State>>,
    bounds: WriteBounds,
    fatal: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<SqliteConnection> = None;
    loop {
        let started = Instant::now();
        let refused = match tokio::time::timeout(PROBE_LIMIT, probe(&path, &mut conn)).await {
            Ok(result) => result.err(),
            Err(_) => {
                // Dropping the connection closes it (and rolls back whatever it held).
                conn = None;
                Some(WriteRefusal::Failed)
            }
        };
        let trouble = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            *s = refused.map(|refusal| (s.map_or(started, |(since, _)| since), refusal));
            s.map(|(since, refusal)| WriteTrouble {
                for_how_long: since.elapsed(),
                refusal,
            })
        };
        match trouble {
            Some(t) if t.for_how_long >= bounds.exit_after => {
                let reason = format!(
                    "{t} (the limit is SQLITE_UNWRITABLE_EXIT_SECONDS={}); exiting so that a \
                     supervisor restarts TrueNumber",
                    bounds.exit_after.as_secs()
                );
                tracing::error!(file = %path.display(), "{reason}");
                let _ = fatal.send(Some(reason));
                return;
            }
            Some(t) if t.for_how_long >= bounds.unhealthy_after => {
                tracing::warn!(file = %path.display(), "{t}");
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Takes the write lock and gives it back, on `conn` (opened on first use, dropped after an
/// error so the next probe opens a new one).
async fn probe(path: &Path, conn: &mut Option<SqliteConnection>) -> Result<(), WriteRefusal> {
    let result = async {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(
                SqliteConnectOptions::new()
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(PROBE_BUSY_TIMEOUT)
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe("BEGIN IMMEDIATE"))
            .execute(&mut *c)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe("ROLLBACK"))
            .execute(&mut *c)
            .await?;
        Ok::<(), sqlx::Error>(())
    }
    .await;
    result.map_err(|e| {
        *conn = None;
        let locked = matches!(
            &e,
            sqlx::Error::Database(d)
                if matches!(d.code().as_deref(), Some("5" | "6" | "261" | "262" | "517"))
        );
        if locked {
            WriteRefusal::Locked
        } else {
            tracing::debug!(error = %e, "database write probe failed");
            WriteRefusal::Failed
        }
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::sqlx::Executor as _;

    use super::*;

    const BOUNDS: WriteBounds = WriteBounds {
        unhealthy_after: Duration::from_secs(1),
        exit_after: Duration::from_secs(3),
    };

    fn temp_db() -> PathBuf {
        std::env::temp_dir().join(format!("tn-write-watch-{}.db", uuid::Uuid::new_v4()))
    }

    async fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ok() {
            assert!(Instant::now() < deadline, "not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_held_write_lock_is_reported_after_the_bound_and_cleared_when_released() {
        let path = temp_db();
        let mut holder = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await
            .unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (watch, _task) = WriteWatch::start(&path, BOUNDS, stop);
        wait_until(Duration::from_secs(5), || watch.unwritable().is_none()).await;
        holder
            .execute(sqlx::AssertSqlSafe("BEGIN IMMEDIATE"))
            .await
            .unwrap();
        let taken = Instant::now();
        wait_until(Duration::from_secs(5), || watch.trouble().is_some()).await;
        assert!(taken.elapsed() >= BOUNDS.unhealthy_after);
        let trouble = watch.trouble().unwrap();
        assert_eq!(trouble.refusal, WriteRefusal::Locked);
        assert!(
            trouble
                .to_string()
                .ends_with("another connection holds its write lock (SQLITE_BUSY)")
        );
        holder
            .execute(sqlx::AssertSqlSafe("ROLLBACK"))
            .await
            .unwrap();
        wait_until(Duration::from_secs(5), || watch.unwritable().is_none()).await;
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_ends_in_the_fatal_reason() {
        let path = std::env::temp_dir()
            .join(format!("tn-no-such-dir-{}", uuid::Uuid::new_v4()))
            .join("truenumber.db");
        let (_stop_tx, stop) = watch::channel(false);
        let (watch, task) = WriteWatch::start(&path, BOUNDS, stop);
        let reason = tokio::time::timeout(Duration::from_secs(10), watch.fatal())
            .await
            .unwrap();
        assert!(reason.contains("taking its write lock fails"), "{reason}");
        assert!(
            reason.contains("SQLITE_UNWRITABLE_EXIT_SECONDS=3"),
            "{reason}"
        );
        task.await.unwrap();
        assert_eq!(watch.trouble().unwrap().refusal, WriteRefusal::Failed);
    }

    #[tokio::test]
    async fn the_watch_stops_when_asked() {
        let path = temp_db();
        let (stop_tx, stop) = watch::channel(false);
        let (_watch, task) = WriteWatch::start(&path, BOUNDS, stop);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
