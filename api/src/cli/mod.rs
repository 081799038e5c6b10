//! The `truenumber-api` command line: `serve` (default), `standalone`, `migrate`, `openapi`,
//! `company …`, `deliveries …`, `app-token`, and standalone's `backup` and `restore`. Operator output is JSON on stdout; logs go to stderr for every command but
//! `serve`, so the output can be piped.

use std::{io::Write, net::SocketAddr};

use anyhow::Context;
use clap::{Parser, Subcommand};
use truenumber_core::{
    companies::app_tokens::AppTokenKeys,
    config::Config,
    phone::parse_mobile_number,
    storage::{backup, db, lanes::ApiConnections},
};

pub use self::{company::CompanyCommand, deliveries::DeliveriesCommand};
use crate::state::AppState;

mod company;
mod deliveries;

/// TrueNumber API node and operator commands.
#[derive(Debug, Parser)]
#[command(name = "truenumber-api", version, about)]
pub struct Cli {
    /// What to do (default: `serve`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (applies pending migrations first unless MIGRATE_ON_START=false).
    Serve,
    /// The whole product in one process on SQLite in DATA_DIR: the API, webhook delivery with
    /// retries, the expiry sweep, an in-process rate limiter and queue. A single node.
    Standalone,
    /// Apply pending migrations and exit.
    Migrate,
    /// Print the OpenAPI document (needs no database and no JWT_SECRET).
    Openapi,
    /// Probe this node's `/health/live` (for container HEALTHCHECKs); exit 0 when it answers.
    HealthCheck {
        /// The URL to probe (default: this node's port on loopback).
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage companies and their API keys.
    Company {
        /// The company command.
        #[command(subcommand)]
        command: CompanyCommand,
    },
    /// Inspect and redeliver webhook deliveries.
    Deliveries {
        /// The deliveries command.
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Standalone: write a consistent copy of DATA_DIR's database to a new file, while the
    /// node serves (SQLite's VACUUM INTO), and check it. Production backs up PostgreSQL with
    /// its own tools (pg_dump, base backups with WAL archiving).
    Backup {
        /// The file to write (it must not exist; written with mode 0600).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Standalone: replace DATA_DIR's database with a backup, after checking it. Refused while
    /// a node runs on DATA_DIR; the database it replaces is kept beside it.
    Restore {
        /// The backup to restore.
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Print an app token (JWT) for the TrueNumber app: bound to the number the user proved
    /// (`--phone`), as the app's identity provider would issue it, or (`--unbound`, development
    /// only) bound to none.
    #[command(group(clap::ArgGroup::new("binding").required(true).args(["phone", "unbound"])))]
    AppToken {
        /// The app user id (`sub`); submit requires the same `appUserId`.
        #[arg(long)]
        app_user_id: String,
        /// The number the token is bound to (E.164; formatting as for initiate): it may
        /// confirm, deny and see that number's sessions only. The token says the number was
        /// verified now (`phone_number_verified`, `auth_time`).
        #[arg(long)]
        phone: Option<String>,
        /// No number: accepted only by a server with `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`
        /// (development), which reports such sessions with `numberBinding: "none"`.
        #[arg(long)]
        unbound: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=2_592_000))]
        ttl_seconds: i64,
    },
}

impl Command {
    /// Whether logs should go to stdout (only the server's).
    pub fn logs_to_stdout(&self) -> bool {
        matches!(self, Command::Serve | Command::Standalone)
    }
}

/// The configuration `command` runs with: `standalone` reads DATA_DIR (generating its
/// JWT secret on first start); operator commands (`company`, `deliveries`, `app-token`,
/// `migrate`) use the standalone data when `DATABASE_URL` is unset and
/// `DATA_DIR/truenumber.db` exists; everything else is production mode.
pub fn config_for(
    command: &Command,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Config> {
    match command {
        Command::Openapi | Command::HealthCheck { .. } => Ok(openapi_config()?),
        Command::Standalone => crate::standalone::config_from_lookup(lookup, true),
        Command::Backup { .. } | Command::Restore { .. } => backup_config(lookup),
        Command::Company { .. }
        | Command::Deliveries { .. }
        | Command::AppToken { .. }
        | Command::Migrate
            if crate::standalone::operator_uses_standalone(&lookup) =>
        {
            crate::standalone::config_from_lookup(lookup, false)
        }
        _ => Ok(Config::from_lookup(lookup)?),
    }
}

/// Configuration for `backup` and `restore`: standalone's, with DATA_DIR only (they use no
/// secret). With `DATABASE_URL` set (production), the answer is PostgreSQL's own tools.
fn backup_config(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
    anyhow::ensure!(
        lookup("DATABASE_URL").is_none_or(|v| v.trim().is_empty()),
        "backup and restore are standalone's (SQLite in DATA_DIR); with DATABASE_URL set, back \
         up PostgreSQL with its own tools: pg_dump for a logical copy, or base backups with WAL \
         archiving for point-in-time recovery (docs/OPERATIONS.md)"
    );
    Ok(Config::standalone_from_lookup(|name| {
        if name == "JWT_SECRET" {
            Some("backup-and-restore-use-no-secret-0000000".to_owned())
        } else {
            lookup(name)
        }
    })?)
}

/// Configuration for `openapi`: the environment, with a placeholder JWT secret when none is
/// set (the document does not depend on it).
pub fn openapi_config() -> Result<Config, truenumber_core::config::ConfigError> {
    Config::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            (name == "JWT_SECRET").then(|| "openapi-generation-needs-no-real-secret".to_owned())
        })
    })
}

pub(crate) fn print(out: &mut (dyn Write + Send), value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Runs one command. `serve` returns when SIGTERM or SIGINT arrives.
pub async fn execute(
    command: Command,
    config: Config,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config, shutdown_signal()).await,
        Command::Standalone => crate::standalone::run(config, shutdown_signal()).await,
        Command::Migrate => {
            db::migrate(&config).await.context("migration failed")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Backup { to } => {
            let info = backup::backup(&config.standalone_db_path(), &to).await?;
            print(out, &serde_json::to_value(info)?)
        }
        Command::Restore { from } => {
            // The node's own lock: held by a running node, so a restore never runs under one.
            let _lock = crate::standalone::lock_data_dir(&config.data_dir)?;
            let restored = backup::restore(&from, &config.standalone_db_path()).await?;
            print(out, &serde_json::to_value(restored)?)
        }
        Command::HealthCheck { url } => {
            let scheme = if config.tls_cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            let url =
                url.unwrap_or_else(|| format!("{scheme}://127.0.0.1:{}/health/live", config.port));
            truenumber_core::observability::probe::probe(&url, std::time::Duration::from_secs(3))
                .await
                .map_err(|e| anyhow::anyhow!("unhealthy: {e}"))?;
            writeln!(out, "ok")?;
            Ok(())
        }
        Command::Openapi => {
            let connections = ApiConnections::unopened(&config);
            let state = AppState::new(config, connections)?;
            writeln!(out, "{}", crate::openapi_json(state))?;
            Ok(())
        }
        Command::AppToken {
            app_user_id,
            phone,
            unbound: _,
            ttl_seconds,
        } => {
            let phone = phone
                .map(|p| parse_mobile_number(&p).map(|m| m.into_string()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--phone {e}"))?;
            // With APP_TOKEN_ISSUER/AUDIENCE set, the token carries them, so this configuration
            // accepts it.
            let token = AppTokenKeys::from_config(&config).mint(
                &app_user_id,
                phone.as_deref(),
                ttl_seconds,
            )?;
            writeln!(out, "{token}")?;
            Ok(())
        }
        Command::Company { command } => {
            let db = db::connect(&config)
                .await
                .context("cannot reach the database")?;
            company::run(command, &config, &db, out).await
        }
        Command::Deliveries { command } => {
            let db = db::connect(&config)
                .await
                .context("cannot reach the database")?;
            deliveries::run(command, &config, &db, out).await
        }
    }
}

/// Binds the port, migrates (unless disabled), connects, and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // The port first: a node that cannot listen migrates nothing.
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let bound = crate::bind(addr, &config)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    if config.migrate_on_start {
        db::migrate(&config).await.context("migration failed")?;
    }
    let connections = ApiConnections::open(&config)
        .await
        .context("cannot reach the database")?;
    let db = connections.pool.clone();
    truenumber_core::phone::warm_up();
    tracing::info!(
        addr = %bound.local_addr,
        "truenumber-api listening on {}; the API and its document at /docs, the company \
         console at /console (sign in with `company console-link`); {}",
        bound.local_addr,
        crate::private_webhooks_line(&config)
    );
    if !config.rate_limits_enabled {
        tracing::warn!("RATE_LIMITS_ENABLED=false: no rate limit is enforced on this node");
    }
    let state = AppState::new(config, connections)?;
    // Connect to Redis before traffic arrives; a failure here is not fatal (see rate_limit).
    if let Err(e) = state.limiter.ping().await {
        tracing::warn!(error = %e, "Redis is not reachable yet; initiate will answer 503 until it is");
    }
    bound.serve(state, shutdown).await?;
    let _ = db.close().await;
    tracing::info!("truenumber-api stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
