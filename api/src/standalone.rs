//! `truenumber-api standalone`: the whole product in one process on SQLite in `DATA_DIR`,
//! with the in-process rate limiter and queue, and the worker's loops (delivery with
//! retries, due-delivery dispatch, relay, expiry sweep) beside the HTTP API.
//!
//! `DATA_DIR` holds three files: `truenumber.db` (SQLite, WAL; with its `-wal`/`-shm`),
//! `jwt-secret` (generated on first start when `JWT_SECRET` is unset; mode 0600) and
//! `truenumber.lock`, locked for as long as a standalone process runs, so a second one on the
//! same directory stops with a clear message instead of sharing the database's queue.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use base64::Engine as _;
use tokio::sync::watch;
use truenumber_core::{
    config::{Config, ConfigError, Mode, STANDALONE_DB_FILE},
    storage::db,
    storage::lanes::ApiConnections,
    storage::write_watch::WriteWatch,
};

use crate::state::AppState;

/// The file in `DATA_DIR` that keeps the generated app-token secret.
pub const JWT_SECRET_FILE: &str = "jwt-secret";
/// The lock file in `DATA_DIR`.
pub const LOCK_FILE: &str = "truenumber.lock";

/// `DATA_DIR` from a lookup (default `./truenumber-data`).
pub fn data_dir(lookup: &impl Fn(&str) -> Option<String>) -> PathBuf {
    PathBuf::from(
        lookup("DATA_DIR")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "./truenumber-data".to_owned()),
    )
}

/// Whether operator commands should use the standalone data: `DATABASE_URL` unset and
/// `DATA_DIR/truenumber.db` present (docs/OPERATIONS.md, "Operator commands").
pub fn operator_uses_standalone(lookup: &impl Fn(&str) -> Option<String>) -> bool {
    let url_unset = lookup("DATABASE_URL").is_none_or(|v| v.trim().is_empty());
    url_unset && data_dir(lookup).join(STANDALONE_DB_FILE).is_file()
}

/// Creates `DATA_DIR` (owner-only) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create DATA_DIR {}", dir.display()))
}

/// The app-token secret kept in `DATA_DIR`: read if present, else generated (32 random bytes,
/// base64url) and written with mode 0600. Two processes starting at once end with the same
/// secret: each writes its own temporary file and links it into place only if none is there.
pub fn stored_jwt_secret(dir: &Path, generate: bool) -> anyhow::Result<Option<String>> {
    let path = dir.join(JWT_SECRET_FILE);
    if !path.exists() {
        if !generate {
            return Ok(None);
        }
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let tmp = dir.join(format!(
            ".{JWT_SECRET_FILE}.{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut f| f.write_all(secret.as_bytes()).and_then(|()| f.sync_all()));
        let linked = written.and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => tracing::info!(file = %path.display(), "generated JWT_SECRET"),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot write {}", path.display()));
            }
        }
    }
    let secret = fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned();
    if secret.len() < 32 {
        anyhow::bail!(
            "{} holds fewer than 32 bytes; delete it to have a new secret generated (app tokens \
             signed with the old one stop working)",
            path.display()
        );
    }
    Ok(Some(secret))
}

/// Standalone configuration from a lookup (the environment): `JWT_SECRET` from the lookup,
/// else the one kept in `DATA_DIR` (generated when `generate` and missing).
pub fn config_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    generate: bool,
) -> anyhow::Result<Config> {
    let dir = data_dir(&lookup);
    let from_env = lookup("JWT_SECRET").filter(|v| !v.trim().is_empty());
    let secret = match from_env {
        Some(s) => Some(s),
        None => {
            if generate {
                ensure_data_dir(&dir)?;
            }
            stored_jwt_secret(&dir, generate)?
        }
    };
    let config = Config::standalone_from_lookup(|name| {
        if name == "JWT_SECRET" {
            secret.clone()
        } else {
            lookup(name)
        }
    })
    .map_err(|e: ConfigError| anyhow::anyhow!(e))?;
    Ok(config)
}

/// The exclusive lock on a data directory, held while the process runs.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Locks `DATA_DIR` for this process, or says which directory another process holds.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    ensure_data_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another TrueNumber standalone process is using DATA_DIR {} (it holds {}); stop it \
             first, or give this one its own DATA_DIR",
            dir.display(),
            LOCK_FILE
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A standalone node that is running: its address, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The database (for tests and tools in the same process).
    pub db: sea_orm::DatabaseConnection,
    /// The watch on the database's write lock.
    pub write_watch: WriteWatch,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    _lock: DataDirLock,
}

/// How long a node that must exit because its database stays unwritable waits for its
/// requests and loops to finish before it exits anyway (its writes fail by then).
const UNWRITABLE_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Stops serving and the loops, lets in-flight work finish, and releases `DATA_DIR`.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let served = self.server.await;
        for l in self.loops {
            let _ = l.await;
        }
        let _ = self.db.close().await;
        served.context("the server task failed")??;
        Ok(())
    }

    /// Runs until `shutdown`, then stops the server and the loops. If the database stays
    /// unwritable past `SQLITE_UNWRITABLE_EXIT_SECONDS` first, stops (waiting at most
    /// [`UNWRITABLE_STOP_GRACE`]) and returns the reason as an error, so the process exits
    /// non-zero and a supervisor restarts it.
    pub async fn wait(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let watch = self.write_watch.clone();
        tokio::select! {
            () = shutdown => self.stop().await,
            reason = watch.fatal() => {
                let _ = tokio::time::timeout(UNWRITABLE_STOP_GRACE, self.stop()).await;
                Err(anyhow::anyhow!(reason))
            }
        }
    }
}

/// Starts a standalone node on `addr`: binds the port (before anything is created), locks
/// `DATA_DIR`, opens and migrates the database, starts the worker loops and serves the API.
pub async fn start(config: Config, addr: SocketAddr) -> anyhow::Result<Running> {
    anyhow::ensure!(
        config.mode == Mode::Standalone,
        "standalone needs a standalone configuration"
    );
    // The port first: a node that cannot listen creates and migrates nothing.
    let bound = crate::bind(addr, &config)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let lock = lock_data_dir(&config.data_dir)?;
    db::report_sqlite_worker_crashes();
    let db_path = config.standalone_db_path();
    // Migrates on a connection of its own before the pool opens (see `db::open_sqlite`).
    let pool = db::open_sqlite(&db_path, config.database_max_connections)
        .await
        .with_context(|| format!("cannot open and migrate {}", db_path.display()))?;
    truenumber_core::phone::warm_up();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (write_watch, watch_task) =
        WriteWatch::start(&db_path, config.sqlite_write_bounds, stop_rx.clone());
    let state = AppState::standalone(config.clone(), ApiConnections::sqlite(pool.clone()))
        .with_write_watch(write_watch.clone());
    let mut loops = truenumber_core::background::spawn_standalone(
        &config,
        pool.clone(),
        state.in_process_queue()?,
        state.publisher.clone(),
        Arc::clone(&state.metrics),
        stop_rx.clone(),
    )
    .await?;
    loops.push(watch_task);
    let local = bound.local_addr;
    let scheme = if config.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        mode = "standalone",
        data_file = %db_path.display(),
        addr = %local,
        "TrueNumber standalone (single node): data in {}, listening on {scheme}://{local}; \
         the API and its document at {scheme}://{local}/docs, the company console at \
         {scheme}://{local}/console (sign in with `company console-link`); {}",
        db_path.display(),
        crate::private_webhooks_line(&config)
    );
    let mut stop_server = stop_rx;
    let server = tokio::spawn(bound.serve(state, async move {
        let _ = stop_server.wait_for(|s| *s).await;
    }));
    Ok(Running {
        addr: local,
        db: pool,
        write_watch,
        stop: stop_tx,
        server,
        loops,
        _lock: lock,
    })
}

/// `truenumber-api standalone`: runs until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let running = start(config, addr).await?;
    running.wait(shutdown).await?;
    tracing::info!("truenumber-api standalone stopped");
    Ok(())
}
