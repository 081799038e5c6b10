//! Standalone's backup and restore (production's are PostgreSQL's own tools: `pg_dump`, base
//! backups with WAL archiving).
//!
//! - [`backup`] takes a consistent copy while a node serves: `VACUUM INTO` reads the database
//!   in one read transaction (WAL lets the node's writes go on meanwhile) and writes a new,
//!   compact database file. Copying the live file instead can tear: the last transactions
//!   may sit in `-wal`, and a copy taken mid-checkpoint mixes two states.
//! - [`inspect`] opens a copy read-only and checks it: SQLite's `integrity_check`, a
//!   TrueNumber schema, and the migration it was taken at.
//! - [`restore`] checks the copy first, then puts it in place of the database, keeping the
//!   database it replaces beside it (nothing is lost by a restore). The caller must hold the
//!   data directory's lock, so no node runs on it.
//!
//! Files are written owner-only (0600): they hold numbers and key digests.

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use sqlx::{
    ConnectOptions,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};
use truenumber_migration::{Migrator, MigratorTrait};

use super::db;

/// What a backup file holds.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    /// The file.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The last migration applied to it.
    pub migration: String,
    /// Verification sessions in it.
    pub sessions: i64,
    /// Companies in it.
    pub companies: i64,
}

/// Why a backup or restore was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// There is no database to back up.
    #[error("there is no standalone database at {0}: nothing to back up")]
    NoDatabase(PathBuf),
    /// The target exists: a backup never overwrites.
    #[error("{0} exists: a backup never overwrites a file; choose a new name")]
    Exists(PathBuf),
    /// The file to restore is not a sound TrueNumber database.
    #[error("{file} is not a TrueNumber backup that can be restored: {why}")]
    NotABackup {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The backup was taken by a newer release.
    #[error(
        "{file} was taken at migration {migration}, which this release does not know: \
         restore it with the release that took it (or a newer one)"
    )]
    NewerSchema {
        /// The file.
        file: PathBuf,
        /// Its last migration.
        migration: String,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A name beside `path` for a file being written, unique to this process.
fn partial(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn owner_only(path: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict", path))?;
    }
    Ok(())
}

/// Writes a consistent copy of the database at `db_path` to `to` (which must not exist), and
/// checks the copy.
pub async fn backup(db_path: &Path, to: &Path) -> Result<BackupInfo, BackupError> {
    if !db_path.is_file() {
        return Err(BackupError::NoDatabase(db_path.to_owned()));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    let partial = partial(to);
    let _ = std::fs::remove_file(&partial);
    let db = db::connect_sqlite(db_path, 1).await?;
    let copied = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "VACUUM INTO $1",
            [partial.to_string_lossy().into_owned().into()],
        ))
        .await;
    let _ = db.close().await;
    let result = async {
        copied?;
        owner_only(&partial)?;
        inspect(&partial).await?;
        // Into place without overwriting: a link fails if `to` appeared meanwhile.
        std::fs::hard_link(&partial, to).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::Exists(to.to_owned()),
            _ => io("cannot write", to)(e),
        })
    }
    .await;
    let _ = std::fs::remove_file(&partial);
    result?;
    inspect(to).await
}

/// Opens `file` read-only and checks that it is a sound TrueNumber database.
pub async fn inspect(file: &Path) -> Result<BackupInfo, BackupError> {
    let not_a_backup = |why: String| BackupError::NotABackup {
        file: file.to_owned(),
        why,
    };
    if !file.is_file() {
        return Err(not_a_backup("no such file".into()));
    }
    let bytes = std::fs::metadata(file)
        .map_err(io("cannot read", file))?
        .len();
    let opts = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    let db = sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
    let info = read_info(&db, file, bytes).await;
    let _ = db.close().await;
    info.map_err(|e| match e {
        BackupError::Db(db) => not_a_backup(db.to_string()),
        other => other,
    })
}

async fn read_info(
    db: &DatabaseConnection,
    file: &Path,
    bytes: u64,
) -> Result<BackupInfo, BackupError> {
    let text = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?
            .map(|row| row.try_get_by_index::<String>(0))
            .transpose()
    };
    let count = |sql: &'static str| async move {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?
            .map(|row| row.try_get_by_index::<i64>(0))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let integrity = text("PRAGMA integrity_check").await?.unwrap_or_default();
    if integrity != "ok" {
        return Err(BackupError::NotABackup {
            file: file.to_owned(),
            why: format!("integrity_check says {integrity}"),
        });
    }
    let migration = text("SELECT version FROM seaql_migrations ORDER BY version DESC LIMIT 1")
        .await?
        .ok_or_else(|| BackupError::NotABackup {
            file: file.to_owned(),
            why: "no migration was ever applied to it".into(),
        })?;
    Ok(BackupInfo {
        file: file.to_owned(),
        bytes,
        migration,
        sessions: count("SELECT COUNT(*) FROM verification_sessions").await?,
        companies: count("SELECT COUNT(*) FROM companies").await?,
    })
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// The backup that is now the database.
    pub restored: BackupInfo,
    /// Where the database it replaced was moved (`None` when there was none).
    pub replaced_database_kept_at: Option<PathBuf>,
}

/// Puts the backup `from` in place of the database at `db_path`. The caller holds the data
/// directory's lock (no node runs on it). The backup is checked first; the database it
/// replaces, with its `-wal` and `-shm` files, is moved beside it under a dated name.
pub async fn restore(from: &Path, db_path: &Path) -> Result<Restored, BackupError> {
    let info = inspect(from).await?;
    let known = Migrator::migrations()
        .iter()
        .any(|m| m.name() == info.migration);
    if !known {
        return Err(BackupError::NewerSchema {
            file: from.to_owned(),
            migration: info.migration,
        });
    }
    let partial = partial(db_path);
    std::fs::copy(from, &partial).map_err(io("cannot copy the backup to", &partial))?;
    let synced = std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync", &partial));
    if let Err(e) = synced.and_then(|()| owner_only(&partial)) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let kept = if db_path.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let kept = db_path.with_extension(format!("db.replaced-{stamp}"));
        for suffix in ["", "-wal", "-shm"] {
            let old = PathBuf::from(format!("{}{suffix}", db_path.display()));
            if old.exists() {
                let to = PathBuf::from(format!("{}{suffix}", kept.display()));
                std::fs::rename(&old, &to).map_err(io("cannot move aside", &old))?;
            }
        }
        Some(kept)
    } else {
        None
    };
    std::fs::rename(&partial, db_path).map_err(io("cannot put the backup in place at", db_path))?;
    Ok(Restored {
        restored: BackupInfo {
            file: from.to_owned(),
            ..info
        },
        replaced_database_kept_at: kept,
    })
}
