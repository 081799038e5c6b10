//! The `truenumber-api` command line: `serve` (default), `migrate`, `openapi`, `company …`,
//! `app-token`. Operator output is JSON on stdout; logs go to stderr for every command but
//! `serve`, so the output can be piped.

use std::{io::Write, net::SocketAddr};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use truenumber_core::{
    companies,
    companies::app_tokens::AppTokenKeys,
    config::{Config, Mode},
    phone::parse_mobile_number,
    queue::Queue,
    storage::db,
    storage::lanes::ApiConnections,
    webhooks::{self, deliveries},
};

use crate::state::AppState;

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

/// `company …` commands.
#[derive(Debug, Subcommand)]
pub enum CompanyCommand {
    /// Create a company; prints `{"companyId","apiKey","testApiKey","webhookSecret"}` (keys
    /// and secret are shown only once).
    Create {
        /// Public company id (letters, digits, `_`, `-`, `.`).
        #[arg(long)]
        company_id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Webhook target (http or https).
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// List companies and their keys (never secrets).
    List,
    /// Issue a new API key (printed once); old keys stay valid unless --revoke-existing.
    RotateKey {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// Revoke every existing key in the same transaction.
        #[arg(long)]
        revoke_existing: bool,
    },
    /// Revoke one API key by its key id (the part after `tn_`, shown by `list`).
    RevokeKey {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// The key id.
        #[arg(long)]
        key_id: String,
    },
    /// Set or clear the webhook URL.
    SetWebhook {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// The new URL.
        #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
        url: Option<String>,
        /// Remove the webhook.
        #[arg(long)]
        clear: bool,
    },
    /// Set or clear per-company rate limits (per hour); omit a flag to clear that override.
    SetRateLimits {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// Initiate calls per hour.
        #[arg(long)]
        initiate_per_hour: Option<u32>,
        /// Status calls per hour.
        #[arg(long)]
        status_per_hour: Option<u32>,
    },
    /// Set a company's own retention window (1-3650 days), or omit --days to use
    /// DATA_RETENTION_DAYS again.
    SetRetention {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// Completed sessions older than this many days are deleted.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: Option<u32>,
    },
    /// Deactivate a company: its keys are refused with COMPANY_INACTIVE.
    Deactivate {
        /// The company.
        #[arg(long)]
        company_id: String,
    },
    /// Reactivate a company.
    Activate {
        /// The company.
        #[arg(long)]
        company_id: String,
    },
}

/// A delivery status on the command line, spelt as stored.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeliveryStatusArg {
    /// More attempts to come.
    Pending,
    /// Delivered.
    Succeeded,
    /// Given up; redeliverable.
    Failed,
}

impl From<DeliveryStatusArg> for deliveries::DeliveryStatus {
    fn from(s: DeliveryStatusArg) -> Self {
        match s {
            DeliveryStatusArg::Pending => Self::Pending,
            DeliveryStatusArg::Succeeded => Self::Succeeded,
            DeliveryStatusArg::Failed => Self::Failed,
        }
    }
}

/// `deliveries …` commands.
#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List a company's webhook deliveries (newest first) with their attempts.
    List {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// Only this status.
        #[arg(long, value_enum)]
        status: Option<DeliveryStatusArg>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// Redeliver failed deliveries (one, or all of a company) with a fresh retry schedule.
    Redeliver {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// One delivery.
        #[arg(
            long,
            conflicts_with = "all_failed",
            required_unless_present = "all_failed"
        )]
        delivery_id: Option<uuid::Uuid>,
        /// Every failed delivery of the company.
        #[arg(long)]
        all_failed: bool,
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

/// Configuration for `openapi`: the environment, with a placeholder JWT secret when none is
/// set (the document does not depend on it).
pub fn openapi_config() -> Result<Config, truenumber_core::config::ConfigError> {
    Config::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            (name == "JWT_SECRET").then(|| "openapi-generation-needs-no-real-secret".to_owned())
        })
    })
}

fn print(out: &mut (dyn Write + Send), value: &serde_json::Value) -> anyhow::Result<()> {
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
            company(command, &db, out).await
        }
        Command::Deliveries { command } => {
            let db = db::connect(&config)
                .await
                .context("cannot reach the database")?;
            deliveries_command(command, &config, &db, out).await
        }
    }
}

async fn deliveries_command(
    command: DeliveriesCommand,
    config: &Config,
    db: &sea_orm::DatabaseConnection,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List {
            company_id,
            status,
            limit,
        } => {
            let mut rows = Vec::new();
            for d in deliveries::list(db, &company_id, status.map(Into::into), limit).await? {
                let attempts = deliveries::attempts(db, d.id).await?;
                let mut v = serde_json::to_value(&d)?;
                v["attemptLog"] = serde_json::to_value(attempts)?;
                rows.push(v);
            }
            print(out, &serde_json::Value::Array(rows))
        }
        DeliveriesCommand::Redeliver {
            company_id,
            delivery_id,
            all_failed: _,
        } => {
            let reopened = deliveries::reopen_failed(db, &company_id, delivery_id).await?;
            if delivery_id.is_some() && reopened.is_empty() {
                anyhow::bail!("no failed delivery with that id for company {company_id}");
            }
            if config.mode == Mode::Standalone {
                // Reopened deliveries are due now; the standalone process's dispatcher (if it
                // runs, else at its next start) sends them within a fraction of a second.
                return print(
                    out,
                    &json!({"companyId": company_id, "redelivered": reopened.len(), "published": reopened.len()}),
                );
            }
            let queue = Queue::from_config(config, db);
            let failed = webhooks::publish_attempts(&queue, &reopened).await;
            for (event_id, e) in &failed {
                // The delivery is pending and due; a worker's overdue sweep sends it.
                tracing::warn!(%event_id, error = %e, "redelivery not published now");
            }
            let published = reopened.len() - failed.len();
            print(
                out,
                &json!({"companyId": company_id, "redelivered": reopened.len(), "published": published}),
            )
        }
    }
}

async fn company(
    command: CompanyCommand,
    db: &sea_orm::DatabaseConnection,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        CompanyCommand::Create {
            company_id,
            name,
            webhook_url,
        } => {
            let created =
                match companies::create_company(db, &company_id, &name, webhook_url.as_deref())
                    .await
                {
                    Err(companies::CompanyError::AlreadyExists(id)) => anyhow::bail!(
                        "company `{id}` already exists; its keys are unchanged. For a new key, \
                         run `company rotate-key --company-id {id}`"
                    ),
                    other => other?,
                };
            print(
                out,
                &json!({
                    "companyId": created.company.company_id,
                    "apiKey": created.api_key.expose(),
                    "testApiKey": created.test_api_key.expose(),
                    "webhookSecret": created.company.webhook_secret,
                }),
            )
        }
        CompanyCommand::List => print(
            out,
            &serde_json::to_value(companies::list_companies(db).await?)?,
        ),
        CompanyCommand::RotateKey {
            company_id,
            revoke_existing,
        } => {
            let (key, key_id) = companies::rotate_key(db, &company_id, revoke_existing).await?;
            print(
                out,
                &json!({"companyId": company_id, "apiKey": key.expose(), "keyId": key_id}),
            )
        }
        CompanyCommand::RevokeKey { company_id, key_id } => {
            companies::revoke_key(db, &company_id, &key_id).await?;
            print(
                out,
                &json!({"companyId": company_id, "keyId": key_id, "revoked": true}),
            )
        }
        CompanyCommand::SetWebhook {
            company_id,
            url,
            clear: _,
        } => {
            companies::set_webhook(db, &company_id, url.as_deref()).await?;
            print(out, &json!({"companyId": company_id, "webhookUrl": url}))
        }
        CompanyCommand::SetRateLimits {
            company_id,
            initiate_per_hour,
            status_per_hour,
        } => {
            companies::set_rate_limits(db, &company_id, initiate_per_hour, status_per_hour).await?;
            print(
                out,
                &json!({
                    "companyId": company_id,
                    "rateLimitInitiatePerHour": initiate_per_hour,
                    "rateLimitStatusPerHour": status_per_hour,
                }),
            )
        }
        CompanyCommand::SetRetention { company_id, days } => {
            companies::set_retention_days(db, &company_id, days).await?;
            print(
                out,
                &json!({"companyId": company_id, "dataRetentionDays": days}),
            )
        }
        CompanyCommand::Deactivate { company_id } => {
            companies::set_active(db, &company_id, false).await?;
            print(out, &json!({"companyId": company_id, "isActive": false}))
        }
        CompanyCommand::Activate { company_id } => {
            companies::set_active(db, &company_id, true).await?;
            print(out, &json!({"companyId": company_id, "isActive": true}))
        }
    }
}

/// Migrates (unless disabled), connects, and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    if config.migrate_on_start {
        db::migrate(&config).await.context("migration failed")?;
    }
    let connections = ApiConnections::open(&config)
        .await
        .context("cannot reach the database")?;
    let db = connections.pool.clone();
    truenumber_core::phone::warm_up();
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let bound = crate::bind(addr, &config)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %bound.local_addr, "truenumber-api listening");
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

#[cfg(test)]
mod tests {
    use clap::ValueEnum;
    use sea_orm::ActiveEnum;

    use super::*;

    #[test]
    fn delivery_status_args_are_spelt_as_stored() {
        for a in DeliveryStatusArg::value_variants() {
            let name = a
                .to_possible_value()
                .expect("visible")
                .get_name()
                .to_owned();
            assert_eq!(name, deliveries::DeliveryStatus::from(*a).to_value());
        }
    }
}
