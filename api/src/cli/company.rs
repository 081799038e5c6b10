//! `truenumber-api company …`: companies, their keys, webhook URL, limits and retention.

use std::io::Write;

use clap::Subcommand;
use serde_json::json;
use truenumber_core::companies;

use super::print;

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
        /// Initiations per number (and mode) in the per-number window.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        initiate_per_number: Option<u32>,
        /// The per-number window, in seconds.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=604_800))]
        initiate_per_number_window_seconds: Option<u32>,
        /// After a "not me", how long the company may not initiate for that number (seconds;
        /// 0: no cooldown).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=31_536_000))]
        deny_cooldown_seconds: Option<u32>,
    },
    /// Set the countries whose numbers a company verifies (ISO 3166-1 alpha-2, as
    /// libphonenumber assigns them: JE, GG and IM are not GB, CA is not US), or --all.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["countries", "all"])))]
    SetCountries {
        /// The company.
        #[arg(long)]
        company_id: String,
        /// The codes, comma-separated (e.g. GB,JE,GG,IM).
        #[arg(long, value_delimiter = ',')]
        countries: Vec<String>,
        /// Every region (the default).
        #[arg(long)]
        all: bool,
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
    /// Print a single-use sign-in link to the company's console (valid 10 minutes), under
    /// `API_BASE_URL`: `{"companyId","url","expiresAt"}`.
    ConsoleLink {
        /// The company.
        #[arg(long)]
        company_id: String,
    },
}

pub(super) async fn run(
    command: CompanyCommand,
    config: &truenumber_core::config::Config,
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
        CompanyCommand::ConsoleLink { company_id } => {
            if companies::find_company(db, &company_id).await?.is_none() {
                anyhow::bail!("no company `{company_id}`; `company list` shows them");
            }
            let link = truenumber_core::companies::console::create_link(db, &company_id).await?;
            print(
                out,
                &json!({
                    "companyId": company_id,
                    "url": crate::console::sign_in_url(&config.api_base_url, &link.token),
                    "expiresAt": link.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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
            initiate_per_number,
            initiate_per_number_window_seconds,
            deny_cooldown_seconds,
        } => {
            companies::set_rate_limits(db, &company_id, initiate_per_hour, status_per_hour).await?;
            companies::set_abuse_limits(
                db,
                &company_id,
                companies::AbuseLimits {
                    initiate_per_number,
                    initiate_per_number_window_seconds,
                    deny_cooldown_seconds,
                },
            )
            .await?;
            print(
                out,
                &json!({
                    "companyId": company_id,
                    "rateLimitInitiatePerHour": initiate_per_hour,
                    "rateLimitStatusPerHour": status_per_hour,
                    "rateLimitInitiatePerNumber": initiate_per_number,
                    "rateLimitInitiatePerNumberWindowSeconds": initiate_per_number_window_seconds,
                    "denyCooldownSeconds": deny_cooldown_seconds,
                }),
            )
        }
        CompanyCommand::SetCountries {
            company_id,
            countries,
            all: _,
        } => {
            let codes = truenumber_core::abuse::countries::parse_codes(&countries)?;
            companies::set_allowed_countries(db, &company_id, &codes).await?;
            print(
                out,
                &json!({"companyId": company_id, "allowedCountries": codes}),
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
